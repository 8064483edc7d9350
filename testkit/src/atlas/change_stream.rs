//! Change streams, minimal but shaped as a server's: `aggregate` with `$changeStream` first
//! (then `$match` stages) on a collection or a database opens a tailable cursor; its `getMore`
//! waits up to `maxTimeMS` (awaitData) and returns the inserts, updates, replaces and deletes
//! that arrived, each with its resume token as `_id`, and every batch carries
//! `postBatchResumeToken`. `resumeAfter`, `startAfter` and `startAtOperationTime` pick where a
//! stream starts. Event fields follow the change-streams spec (change-streams.md, "Response
//! Format"): `_id`, `operationType`, `clusterTime`, `wallTime`, `ns`, `documentKey`,
//! `fullDocument` (insert, replace, and update with `fullDocument: "updateLookup"`),
//! `updateDescription` (update; top-level fields only: a nested change reports its whole
//! top-level field).
//!
//! Changes are recorded once the first change stream opens (there can be no resume token from
//! before), by comparing a collection before and after each applied write; a transaction's
//! changes are recorded when it commits. Every member shares the one log, as every member of a
//! replica set replicates the same oplog. Catalog changes (drop, rename) are not events here.
//!
//! Resume tokens are `{_data: "82<16 hex digits>"}`: the position in the log. Drivers treat
//! them as opaque, as the spec requires.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bson::{Bson, Document, Timestamp, doc};
use tokio::sync::watch;

use super::cluster::{Cluster, lock};
use super::reply::{CommandReply, error};
use crate::store::{CommandError, Matcher, Outcome, Store};

/// How long a change stream `getMore` without `maxTimeMS` waits for events (a server's
/// default await time for awaitData cursors).
const DEFAULT_AWAIT: Duration = Duration::from_secs(1);
/// Events in a batch when the command names no `batchSize`.
const DEFAULT_BATCH: usize = 101;
/// Events kept; a stream resuming from before the oldest kept gets ChangeStreamHistoryLost.
const MAX_EVENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Replace,
    Delete,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Replace => "replace",
            Kind::Delete => "delete",
        }
    }
}

/// One change to one document, before it is given its place in the log.
#[derive(Debug, Clone)]
pub struct Change {
    kind: Kind,
    db: String,
    coll: String,
    id: Bson,
    /// The document after the change (insert, update, replace).
    after: Option<Document>,
    /// `updateDescription` of an update.
    update_description: Option<Document>,
}

#[derive(Debug, Clone)]
struct Event {
    seq: u64,
    cluster_time: Timestamp,
    wall_time: bson::DateTime,
    change: Change,
}

#[derive(Debug, Default)]
struct Log {
    /// `events[i].seq == first_seq + i`.
    events: VecDeque<Event>,
    /// The seq of `events[0]` (1 at start).
    first_seq: u64,
    /// The last seq given out (0: none yet).
    last_seq: u64,
}

/// The cluster's change log and whether it is recording.
#[derive(Debug)]
pub struct ChangeLog {
    recording: AtomicBool,
    log: Mutex<Log>,
    head: watch::Sender<u64>,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog {
            recording: AtomicBool::new(false),
            log: Mutex::new(Log {
                first_seq: 1,
                ..Log::default()
            }),
            head: watch::channel(0).0,
        }
    }
}

fn token(seq: u64) -> Document {
    doc! { "_data": format!("82{seq:016X}") }
}

fn parse_token(value: &Bson) -> Result<u64, CommandError> {
    let bad = || CommandError::bad_value(format!("invalid resume token: {value}"));
    let data = match value {
        Bson::Document(d) => d.get_str("_data").map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    data.strip_prefix("82")
        .filter(|hex| hex.len() == 16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(bad)
}

fn id_key(id: &Bson) -> Vec<u8> {
    doc! { "_id": id.clone() }.to_vec().unwrap_or_default()
}

/// Whether a write command replaces whole documents rather than updating fields.
fn is_replacement(command: &Document) -> bool {
    let is_replacement_doc = |u: &Bson| match u {
        Bson::Document(d) => d.keys().next().is_some_and(|k| !k.starts_with('$')),
        _ => false,
    };
    if let Ok(updates) = command.get_array("updates") {
        return !updates.is_empty()
            && updates.iter().all(|u| match u {
                Bson::Document(s) => s.get("u").is_some_and(is_replacement_doc),
                _ => false,
            });
    }
    command.get("update").is_some_and(is_replacement_doc)
}

fn update_description(before: &Document, after: &Document) -> Document {
    let mut updated = Document::new();
    for (key, value) in after {
        if key != "_id" && before.get(key) != Some(value) {
            updated.insert(key.clone(), value.clone());
        }
    }
    let removed: Vec<Bson> = before
        .keys()
        .filter(|k| !after.contains_key(k.as_str()))
        .map(|k| Bson::String(k.clone()))
        .collect();
    doc! {
        "updatedFields": updated,
        "removedFields": removed,
        "truncatedArrays": [],
    }
}

/// The collection a document write command names, if it is one.
fn written_collection(command: &Document) -> Option<String> {
    let (name, value) = command.iter().next()?;
    match name.as_str() {
        "insert" | "update" | "delete" | "findAndModify" | "findandmodify" => {
            value.as_str().map(str::to_owned)
        }
        _ => None,
    }
}

/// The changes between a collection's documents before and after a write.
fn diff(
    db: &str,
    coll: &str,
    replace: bool,
    before: &[Document],
    after: &[Document],
) -> Vec<Change> {
    let before_by_id: HashMap<Vec<u8>, &Document> = before
        .iter()
        .filter_map(|d| d.get("_id").map(|id| (id_key(id), d)))
        .collect();
    let after_ids: std::collections::HashSet<Vec<u8>> = after
        .iter()
        .filter_map(|d| d.get("_id").map(id_key))
        .collect();
    let mut changes = Vec::new();
    for old in before {
        if let Some(id) = old.get("_id")
            && !after_ids.contains(&id_key(id))
        {
            changes.push(Change {
                kind: Kind::Delete,
                db: db.to_owned(),
                coll: coll.to_owned(),
                id: id.clone(),
                after: None,
                update_description: None,
            });
        }
    }
    for new in after {
        let Some(id) = new.get("_id") else { continue };
        let change = match before_by_id.get(&id_key(id)) {
            None => (Kind::Insert, None),
            Some(old) if *old == new => continue,
            Some(_) if replace => (Kind::Replace, None),
            Some(old) => (Kind::Update, Some(update_description(old, new))),
        };
        changes.push(Change {
            kind: change.0,
            db: db.to_owned(),
            coll: coll.to_owned(),
            id: id.clone(),
            after: Some(new.clone()),
            update_description: change.1,
        });
    }
    changes
}

impl ChangeLog {
    /// Runs `command` on `store`, returning its changes too (none until a stream has opened).
    pub fn execute(
        &self,
        store: &mut Store,
        db: &str,
        command: &Document,
    ) -> (Result<Outcome, CommandError>, Vec<Change>) {
        let coll = match written_collection(command) {
            Some(coll) if self.recording.load(Ordering::Acquire) => coll,
            _ => return (store.execute(db, command), Vec::new()),
        };
        let before = store.collection_documents(db, &coll).to_vec();
        let result = store.execute(db, command);
        let changes = match &result {
            Ok(_) => diff(
                db,
                &coll,
                is_replacement(command),
                &before,
                store.collection_documents(db, &coll),
            ),
            Err(_) => Vec::new(),
        };
        (result, changes)
    }

    /// Appends applied changes to the log and wakes the streams waiting for them.
    pub fn publish(&self, cluster: &Cluster, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let last = {
            let mut log = lock(&self.log);
            for change in changes {
                log.last_seq += 1;
                let seq = log.last_seq;
                log.events.push_back(Event {
                    seq,
                    cluster_time: cluster.cluster_time(),
                    wall_time: bson::DateTime::now(),
                    change,
                });
            }
            while log.events.len() > MAX_EVENTS {
                log.events.pop_front();
                log.first_seq += 1;
            }
            log.last_seq
        };
        self.head.send_replace(last);
    }

    fn start_recording(&self) {
        self.recording.store(true, Ordering::Release);
    }

    /// The events after `position` that `stream` wants (at most `limit`), and the position
    /// scanned to.
    fn scan(&self, stream: &StreamCursor, position: u64, limit: usize) -> (Vec<Event>, u64) {
        let log = lock(&self.log);
        let mut out = Vec::new();
        let mut scanned = position.max(log.first_seq.saturating_sub(1));
        let start = usize::try_from(scanned + 1 - log.first_seq).unwrap_or(usize::MAX);
        for event in log.events.iter().skip(start) {
            if limit != 0 && out.len() >= limit {
                break;
            }
            scanned = event.seq;
            if stream.wants(event) {
                out.push(event.clone());
            }
        }
        (out, scanned)
    }
}

/// What `fullDocument` the stream asked for on updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FullDocument {
    Default,
    UpdateLookup,
}

/// The state of one open change stream cursor.
#[derive(Debug, Clone)]
pub struct StreamCursor {
    /// The cursor namespace: `db.coll`, or `db.$cmd.aggregate` for a database stream.
    pub ns: String,
    db: String,
    coll: Option<String>,
    position: u64,
    filters: Vec<Matcher>,
    full_document: FullDocument,
    last_used: Instant,
}

impl StreamCursor {
    fn wants(&self, event: &Event) -> bool {
        let c = &event.change;
        if c.db != self.db || self.coll.as_ref().is_some_and(|coll| *coll != c.coll) {
            return false;
        }
        if self.filters.is_empty() {
            return true;
        }
        let rendered = render(event, self.full_document, None);
        self.filters.iter().all(|f| f.matches(&rendered))
    }

    /// Whether the cursor has been idle longer than a server keeps cursors.
    pub fn expired(&self) -> bool {
        self.last_used.elapsed() >= super::cursors::IDLE_TIMEOUT
    }
}

fn render(event: &Event, full_document: FullDocument, store: Option<&Store>) -> Document {
    let c = &event.change;
    let mut out = doc! {
        "_id": token(event.seq),
        "operationType": c.kind.name(),
        "clusterTime": event.cluster_time,
        "wallTime": event.wall_time,
        "ns": { "db": c.db.clone(), "coll": c.coll.clone() },
        "documentKey": { "_id": c.id.clone() },
    };
    match c.kind {
        Kind::Insert | Kind::Replace => {
            if let Some(after) = &c.after {
                out.insert("fullDocument", after.clone());
            }
        }
        Kind::Update => {
            if let Some(desc) = &c.update_description {
                out.insert("updateDescription", desc.clone());
            }
            if full_document == FullDocument::UpdateLookup {
                // The document as it is now (null if deleted since), as updateLookup does.
                let now = store.and_then(|s| {
                    s.collection_documents(&c.db, &c.coll)
                        .iter()
                        .find(|d| d.get("_id") == Some(&c.id))
                        .cloned()
                });
                out.insert("fullDocument", now.map_or(Bson::Null, Bson::Document));
            }
        }
        Kind::Delete => {}
    }
    out
}

/// Whether an `aggregate` opens a change stream (its first stage is `$changeStream`).
pub fn is_change_stream(command: &Document) -> bool {
    command
        .get_array("pipeline")
        .ok()
        .and_then(|p| p.first())
        .and_then(Bson::as_document)
        .is_some_and(|stage| stage.contains_key("$changeStream"))
}

fn bad(msg: impl Into<String>) -> CommandReply {
    CommandError::bad_value(msg.into()).into()
}

/// Opens a change stream on member `member` for an `aggregate` whose first stage is
/// `$changeStream`: the first batch holds the events already there after the start point.
pub fn open(cluster: &Cluster, member: usize, db: &str, command: &Document) -> CommandReply {
    let changes = &cluster.changes;
    changes.start_recording();
    let coll = match command.get("aggregate") {
        Some(Bson::String(coll)) => Some(coll.clone()),
        Some(Bson::Int32(1)) | Some(Bson::Int64(1)) => None,
        _ => return bad("aggregate takes a collection name or 1"),
    };
    let pipeline = command.get_array("pipeline").cloned().unwrap_or_default();
    let Some(Bson::Document(stage)) = pipeline.first() else {
        return bad("$changeStream must be the first stage");
    };
    let Ok(options) = stage.get_document("$changeStream") else {
        return bad("$changeStream takes a document of options");
    };
    let full_document = match options.get_str("fullDocument") {
        Err(_) | Ok("default") => FullDocument::Default,
        Ok("updateLookup") | Ok("whenAvailable") | Ok("required") => FullDocument::UpdateLookup,
        Ok(other) => return bad(format!("unknown fullDocument mode: {other}")),
    };
    let mut filters = Vec::new();
    for stage in pipeline.iter().skip(1) {
        let Some(stage) = stage.as_document() else {
            return bad("each pipeline stage must be a document");
        };
        match stage.get_document("$match") {
            Ok(filter) => match Matcher::parse(filter) {
                Ok(m) => filters.push(m),
                Err(e) => return e.into(),
            },
            Err(_) => {
                return bad(format!(
                    "atlas-sim's change streams take only $match after $changeStream, not {:?}",
                    stage.keys().next()
                ));
            }
        }
    }
    let position = match (
        options
            .get("resumeAfter")
            .or_else(|| options.get("startAfter")),
        options.get_timestamp("startAtOperationTime"),
    ) {
        (Some(t), _) => match parse_token(t) {
            Ok(seq) => seq,
            Err(e) => return e.into(),
        },
        (None, Ok(at)) => {
            let log = lock(&changes.log);
            log.events
                .iter()
                .take_while(|e| {
                    (e.cluster_time.time, e.cluster_time.increment) < (at.time, at.increment)
                })
                .last()
                .map_or(log.first_seq.saturating_sub(1), |e| e.seq)
        }
        (None, Err(_)) => lock(&changes.log).last_seq,
    };
    {
        let log = lock(&changes.log);
        if position + 1 < log.first_seq {
            return error(
                286,
                "ChangeStreamHistoryLost",
                "the resume point is older than the change log atlas-sim keeps",
                &[],
            );
        }
    }
    let ns = match &coll {
        Some(coll) => format!("{db}.{coll}"),
        None => format!("{db}.$cmd.aggregate"),
    };
    let mut stream = StreamCursor {
        ns: ns.clone(),
        db: db.to_owned(),
        coll,
        position,
        filters,
        full_document,
        last_used: Instant::now(),
    };
    let batch_size = command
        .get_document("cursor")
        .ok()
        .and_then(|c| super::commands::positive(c.get("batchSize")))
        .unwrap_or(DEFAULT_BATCH);
    let (events, scanned) = if batch_size == 0 {
        (Vec::new(), position)
    } else {
        changes.scan(&stream, position, batch_size)
    };
    stream.position = scanned;
    let batch = render_all(cluster, &events, full_document);
    let id = lock(&cluster.members[member].cursors).open_stream(stream);
    CommandReply::ok(doc! {
        "cursor": {
            "firstBatch": batch,
            "postBatchResumeToken": token(scanned),
            "id": id,
            "ns": ns,
        }
    })
}

fn render_all(cluster: &Cluster, events: &[Event], full_document: FullDocument) -> Vec<Document> {
    if events.is_empty() {
        return Vec::new();
    }
    let store = (full_document == FullDocument::UpdateLookup).then(|| lock(&cluster.store));
    events
        .iter()
        .map(|e| render(e, full_document, store.as_deref()))
        .collect()
}

/// `getMore` on a change stream cursor: the events after its position, waiting up to
/// `await_time` for the first one.
pub async fn get_more(
    cluster: &Cluster,
    member: usize,
    id: i64,
    mut stream: StreamCursor,
    batch_size: usize,
    await_time: Option<Duration>,
) -> CommandReply {
    let changes = &cluster.changes;
    let deadline = tokio::time::Instant::now() + await_time.unwrap_or(DEFAULT_AWAIT);
    let mut head = changes.head.subscribe();
    let limit = if batch_size == 0 {
        DEFAULT_BATCH
    } else {
        batch_size
    };
    let (events, scanned) = loop {
        head.borrow_and_update();
        let (events, scanned) = changes.scan(&stream, stream.position, limit);
        stream.position = scanned;
        if !events.is_empty() {
            break (events, scanned);
        }
        match tokio::time::timeout_at(deadline, head.changed()).await {
            Ok(Ok(())) => continue,
            _ => break (events, scanned),
        }
    };
    let batch = render_all(cluster, &events, stream.full_document);
    let ns = stream.ns.clone();
    stream.last_used = Instant::now();
    lock(&cluster.members[member].cursors).update_stream(id, stream);
    CommandReply::ok(doc! {
        "cursor": {
            "nextBatch": batch,
            "postBatchResumeToken": token(scanned),
            "id": id,
            "ns": ns,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_token(&Bson::Document(token(42))).ok(), Some(42));
        assert!(parse_token(&Bson::Document(doc! { "_data": "zz" })).is_err());
        assert!(parse_token(&Bson::Int32(1)).is_err());
    }

    #[test]
    fn diff_sees_insert_update_replace_and_delete() {
        let before = vec![doc! { "_id": 1, "a": 1, "gone": true }, doc! { "_id": 2 }];
        let after = vec![doc! { "_id": 1, "a": 2 }, doc! { "_id": 3 }];
        let kinds: Vec<Kind> = diff("d", "c", false, &before, &after)
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(kinds, vec![Kind::Delete, Kind::Update, Kind::Insert]);
        let update = &diff("d", "c", false, &before, &after)[1];
        assert_eq!(
            update.update_description,
            Some(
                doc! { "updatedFields": { "a": 2 }, "removedFields": ["gone"], "truncatedArrays": [] }
            )
        );
        assert_eq!(diff("d", "c", true, &before, &after)[1].kind, Kind::Replace);
    }

    #[test]
    fn replacement_is_told_from_operator_updates() {
        assert!(is_replacement(
            &doc! { "update": "c", "updates": [{ "q": {}, "u": { "a": 1 } }] }
        ));
        assert!(!is_replacement(
            &doc! { "update": "c", "updates": [{ "q": {}, "u": { "$set": { "a": 1 } } }] }
        ));
        assert!(is_replacement(
            &doc! { "findAndModify": "c", "update": { "a": 1 } }
        ));
    }
}
