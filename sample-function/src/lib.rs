//! sample-function: a small "notes" API as a Rust Lambda handler that reaches Atlas through
//! the mongo-pool layer with [`mongo_pool_client`].
//!
//! # Events
//!
//! | event | effect |
//! | --- | --- |
//! | `{"action": "put", "id": "n1", "body": {...}}` | creates or replaces note `n1` (an upsert) |
//! | `{"action": "get", "id": "n1"}` | returns note `n1`, or `null` |
//! | `{"action": "list", "limit": 10}` | the most recently updated notes; `limit` defaults to [`DEFAULT_LIST_LIMIT`] and is capped at [`MAX_LIST_LIMIT`] |
//! | `{"action": "ping"}` | pings the database through mongo-pool |
//!
//! # Responses
//!
//! Every invocation succeeds from Lambda's point of view and returns a JSON object with
//! `ok` and `db_ms` (milliseconds spent in the client, as a float; 0 when the event was
//! rejected before any database call):
//!
//! - put: `{"ok": true, "id": "n1", "created": true, "db_ms": 1.7}` (`created` is false when
//!   the note existed and was replaced);
//! - get: `{"ok": true, "note": {"id": "n1", "body": {...}, "updated_at": "..."}, "db_ms": ...}`,
//!   with `"note": null` when there is no such note;
//! - list: `{"ok": true, "notes": [...], "count": 2, "db_ms": ...}`;
//! - ping: `{"ok": true, "pong": true, "db_ms": ...}`;
//! - any failure: `{"ok": false, "error": "...", "db_ms": ...}`: a bad event (unknown action,
//!   missing or empty `id`, a `body` that is not an object, a `limit` below 1) or a database
//!   error, e.g. "no mongo-pool socket at /tmp/mongo-pool.sock (...): is the mongo-pool layer
//!   attached to this function?".
//!
//! # Environment
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `NOTES_DB` | `notes` | the database |
//! | `NOTES_COLLECTION` | `notes` | the collection |
//! | `MONGO_POOL_SOCKET` | `/tmp/mongo-pool.sock` | mongo-pool's socket (read by the client) |
//! | `NOTES_INIT_DELAY_MS` | `0` | milliseconds `bootstrap` sleeps before anything else, standing for a heavier runtime's start (benchmarks) |
//!
//! # Reuse
//!
//! The event parsing ([`parse`]) and response shaping ([`respond`], [`put_response`],
//! [`get_response`], [`list_response`], [`ping_response`]) are public so that another
//! implementation of the same handler (the benchmarks' `direct-function`, on the official
//! driver) answers with exactly the same JSON.
#![forbid(unsafe_code)]

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use bson::{DateTime, Document, doc};
use lambda_runtime::LambdaEvent;
use mongo_pool_client::{Client, Collection, Database, FindOptions, UpdateOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The variable naming the database.
pub const NOTES_DB_ENV: &str = "NOTES_DB";
/// The variable naming the collection.
pub const NOTES_COLLECTION_ENV: &str = "NOTES_COLLECTION";
/// The database when [`NOTES_DB_ENV`] is unset.
pub const DEFAULT_DB: &str = "notes";
/// The collection when [`NOTES_COLLECTION_ENV`] is unset.
pub const DEFAULT_COLLECTION: &str = "notes";
/// `list` without a `limit`.
pub const DEFAULT_LIST_LIMIT: u64 = 20;
/// The largest `limit` a `list` gets.
pub const MAX_LIST_LIMIT: u64 = 100;
/// The longest note id accepted.
pub const MAX_ID_LEN: usize = 256;
/// The variable holding the init delay in milliseconds (see [`init_delay`]).
pub const INIT_DELAY_ENV: &str = "NOTES_INIT_DELAY_MS";

/// How long the function sleeps at start, before its runtime loop: [`INIT_DELAY_ENV`] in
/// milliseconds, zero when unset, empty or not a whole number.
pub fn init_delay(lookup: impl Fn(&str) -> Option<String>) -> Duration {
    lookup(INIT_DELAY_ENV)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

/// Where the notes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The database name.
    pub db: String,
    /// The collection name.
    pub collection: String,
}

impl Config {
    /// From a variable lookup (the process environment in `main`, a closure in tests); unset or
    /// empty variables take the defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let var = |name: &str, default: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Config {
            db: var(NOTES_DB_ENV, DEFAULT_DB),
            collection: var(NOTES_COLLECTION_ENV, DEFAULT_COLLECTION),
        }
    }
}

/// A note as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// The note's id.
    pub _id: String,
    /// What the `put` event carried.
    pub body: Document,
    /// When it was last written.
    pub updated_at: DateTime,
}

impl Note {
    /// A note `id` with `body`, written now.
    pub fn new(id: String, body: Document) -> Note {
        Note {
            _id: id,
            body,
            updated_at: DateTime::now(),
        }
    }

    /// The note as a response shows it (`id`, `body`, `updated_at` in RFC 3339).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self._id,
            "body": serde_json::to_value(&self.body).unwrap_or(Value::Null),
            "updated_at": self.updated_at.try_to_rfc3339_string().unwrap_or_default(),
        })
    }
}

/// The handler's state, built once per process and shared by every invocation.
#[derive(Debug, Clone)]
pub struct Notes {
    notes: Collection<Note>,
    db: Database,
}

impl Notes {
    /// The notes collection of `config` through `client`.
    pub fn new(client: &Client, config: &Config) -> Notes {
        let db = client.database(&config.db);
        Notes {
            notes: db.collection::<Note>(&config.collection),
            db,
        }
    }
}

/// A request, after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Create or replace note `id`.
    Put {
        /// The note's id.
        id: String,
        /// Its body.
        body: Document,
    },
    /// Read note `id`.
    Get {
        /// The note's id.
        id: String,
    },
    /// The `limit` most recently updated notes.
    List {
        /// How many, at most.
        limit: u64,
    },
    /// A database ping.
    Ping,
}

/// A rejected event, or a failed database call: the `error` of the response.
#[derive(Debug)]
pub struct Failure(pub String);

/// The sort of `list`: most recently updated first, then by id.
pub fn list_sort() -> Document {
    doc! {"updated_at": -1, "_id": 1}
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(format!("bad event: {}", message.into()))
}

fn id_of(event: &Value) -> Result<String, Failure> {
    match event.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_LEN => Ok(id.clone()),
        Some(Value::String(_)) => Err(bad(format!("`id` must be 1 to {MAX_ID_LEN} characters"))),
        Some(_) => Err(bad("`id` must be a string")),
        None => Err(bad("`id` is missing")),
    }
}

/// Validates an event into a [`Request`].
///
/// # Errors
/// A [`Failure`] starting with `bad event:` that says what is wrong.
pub fn parse(event: &Value) -> Result<Request, Failure> {
    if !event.is_object() {
        return Err(bad("the event must be a JSON object"));
    }
    let action = match event.get("action") {
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err(bad("`action` must be a string")),
        None => return Err(bad("`action` is missing (put, get, list or ping)")),
    };
    match action {
        "put" => {
            let id = id_of(event)?;
            let body = match event.get("body") {
                Some(body @ Value::Object(_)) => bson::serialize_to_document(body)
                    .map_err(|e| bad(format!("`body` cannot be stored: {e}")))?,
                Some(_) => return Err(bad("`body` must be a JSON object")),
                None => return Err(bad("`body` is missing")),
            };
            Ok(Request::Put { id, body })
        }
        "get" => Ok(Request::Get { id: id_of(event)? }),
        "list" => {
            let limit = match event.get("limit") {
                None | Some(Value::Null) => DEFAULT_LIST_LIMIT,
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(n) if n >= 1 => n.min(MAX_LIST_LIMIT),
                    _ => return Err(bad("`limit` must be a whole number of at least 1")),
                },
                Some(_) => return Err(bad("`limit` must be a number")),
            };
            Ok(Request::List { limit })
        }
        "ping" => Ok(Request::Ping),
        other => Err(bad(format!(
            "unknown action {other:?}; expected put, get, list or ping"
        ))),
    }
}

/// Times client calls: everything awaited through [`DbTimer::time`] counts towards `db_ms`.
#[derive(Debug, Default)]
pub struct DbTimer(Duration);

impl DbTimer {
    /// Awaits `call` (a future, or anything that turns into one, as the `mongodb` driver's
    /// actions do), adding the time it took.
    pub async fn time<T>(&mut self, call: impl IntoFuture<Output = T>) -> T {
        let start = Instant::now();
        let out = call.await;
        self.0 += start.elapsed();
        out
    }

    /// The total so far, in milliseconds.
    pub fn ms(&self) -> f64 {
        self.0.as_secs_f64() * 1000.0
    }
}

/// A failed database call, whatever the client.
pub fn db_error(err: &impl std::fmt::Display) -> Failure {
    Failure(format!("database error: {err}"))
}

/// The response of a `put` of note `id`.
pub fn put_response(id: &str, created: bool) -> Value {
    json!({"ok": true, "id": id, "created": created})
}

/// The response of a `get` (`note` is `None` when there is no such note).
pub fn get_response(note: Option<&Note>) -> Value {
    json!({"ok": true, "note": note.map(Note::to_json)})
}

/// The response of a `list`.
pub fn list_response(notes: &[Note]) -> Value {
    let list: Vec<Value> = notes.iter().map(Note::to_json).collect();
    json!({"ok": true, "count": list.len(), "notes": list})
}

/// The response of a `ping`.
pub fn ping_response() -> Value {
    json!({"ok": true, "pong": true})
}

/// The final response: `outcome`, or `{"ok": false, "error": ...}` (logged with
/// `request_id`), with `db_ms` from `timer` added.
pub fn respond(outcome: Result<Value, Failure>, timer: &DbTimer, request_id: &str) -> Value {
    let mut response = match outcome {
        Ok(response) => response,
        Err(Failure(error)) => {
            tracing::warn!(request_id = %request_id, error = %error, "request failed");
            json!({"ok": false, "error": error})
        }
    };
    if let Some(object) = response.as_object_mut() {
        object.insert("db_ms".into(), json!(timer.ms()));
    }
    response
}

async fn run(notes: &Notes, request: Request, timer: &mut DbTimer) -> Result<Value, Failure> {
    match request {
        Request::Put { id, body } => {
            let note = Note::new(id.clone(), body);
            let upsert = UpdateOptions::new().upsert(true);
            let result = timer
                .time(notes.notes.replace_one(doc! {"_id": &id}, &note, upsert))
                .await
                .map_err(|e| db_error(&e))?;
            Ok(put_response(&id, result.upserted_id.is_some()))
        }
        Request::Get { id } => {
            let note = timer
                .time(notes.notes.find_one(doc! {"_id": &id}, None))
                .await
                .map_err(|e| db_error(&e))?;
            Ok(get_response(note.as_ref()))
        }
        Request::List { limit } => {
            let options = FindOptions::new()
                .sort(list_sort())
                .limit(i64::try_from(limit).unwrap_or(1));
            let found = timer
                .time(async {
                    notes
                        .notes
                        .find(doc! {}, options)
                        .await?
                        .collect_all()
                        .await
                })
                .await
                .map_err(|e| db_error(&e))?;
            Ok(list_response(&found))
        }
        Request::Ping => {
            timer
                .time(notes.db.run_command(doc! {"ping": 1}))
                .await
                .map_err(|e| db_error(&e))?;
            Ok(ping_response())
        }
    }
}

/// The Lambda handler: one event in, one response out (see the crate docs for the shapes).
/// Never fails from Lambda's point of view: errors are `{"ok": false, "error": ...}`.
///
/// # Errors
/// None in practice; the `Result` is what `lambda_runtime` expects.
pub async fn handler(
    notes: &Notes,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let mut timer = DbTimer::default();
    let outcome = match parse(&event.payload) {
        Ok(request) => run(notes, request, &mut timer).await,
        Err(failure) => Err(failure),
    };
    Ok(respond(outcome, &timer, &event.context.request_id))
}

#[cfg(test)]
mod tests;
