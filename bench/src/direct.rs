//! The baseline's handler: the notes API of `sample-function` (same events, same JSON
//! responses, shared through its public parsing and response shaping) on the official
//! `mongodb` driver, which connects and authenticates (MONGODB-AWS) to Atlas by itself.

use bson::{Document, doc};
use lambda_runtime::LambdaEvent;
use mongodb::options::ReplaceOptions;
use mongodb::{Client, Collection, Database};
use sample_function::{
    Config, DbTimer, Failure, Note, Request, db_error, get_response, list_response, list_sort,
    parse, ping_response, put_response, respond,
};
use serde_json::Value;

/// The variable holding the connection string `direct-function` hands to the driver, e.g.
/// `mongodb+srv://cluster0.example.mongodb.net/?authMechanism=MONGODB-AWS&authSource=%24external`.
/// The AWS credentials come from the driver's usual chain (in Lambda: the execution role's
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
pub const URI_ENV: &str = "NOTES_MONGODB_URI";

/// The handler's state: one driver client (created once, outside the handler), shared by
/// every invocation.
#[derive(Debug, Clone)]
pub struct DirectNotes {
    notes: Collection<Note>,
    db: Database,
}

impl DirectNotes {
    /// The notes collection of `config` through `client`.
    pub fn new(client: &Client, config: &Config) -> DirectNotes {
        let db = client.database(&config.db);
        DirectNotes {
            notes: db.collection::<Note>(&config.collection),
            db,
        }
    }
}

async fn run(notes: &DirectNotes, request: Request, timer: &mut DbTimer) -> Result<Value, Failure> {
    match request {
        Request::Put { id, body } => {
            let note = Note::new(id.clone(), body);
            let upsert = ReplaceOptions::builder().upsert(true).build();
            let result = timer
                .time(
                    notes
                        .notes
                        .replace_one(doc! {"_id": &id}, &note)
                        .with_options(upsert),
                )
                .await
                .map_err(|e| db_error(&e))?;
            Ok(put_response(&id, result.upserted_id.is_some()))
        }
        Request::Get { id } => {
            let note = timer
                .time(notes.notes.find_one(doc! {"_id": &id}))
                .await
                .map_err(|e| db_error(&e))?;
            Ok(get_response(note.as_ref()))
        }
        Request::List { limit } => {
            let limit = i64::try_from(limit).unwrap_or(1);
            let found = timer
                .time(async {
                    let mut cursor = notes
                        .notes
                        .find(doc! {})
                        .sort(list_sort())
                        .limit(limit)
                        .await?;
                    let mut found = Vec::new();
                    while cursor.advance().await? {
                        found.push(cursor.deserialize_current()?);
                    }
                    Ok::<_, mongodb::error::Error>(found)
                })
                .await
                .map_err(|e| db_error(&e))?;
            Ok(list_response(&found))
        }
        Request::Ping => {
            let ping: Document = doc! {"ping": 1};
            timer
                .time(notes.db.run_command(ping))
                .await
                .map_err(|e| db_error(&e))?;
            Ok(ping_response())
        }
    }
}

/// The Lambda handler, answering exactly as `sample_function::handler` does.
///
/// # Errors
/// None in practice; the `Result` is what `lambda_runtime` expects.
pub async fn handler(
    notes: &DirectNotes,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let mut timer = DbTimer::default();
    let outcome = match parse(&event.payload) {
        Ok(request) => run(notes, request, &mut timer).await,
        Err(failure) => Err(failure),
    };
    Ok(respond(outcome, &timer, &event.context.request_id))
}
