//! Cursors a member owns: random non-zero 64-bit ids as real servers use, batches cut by count
//! and by the 16 MiB reply limit, idle expiry after 10 minutes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bson::Document;

use super::change_stream::StreamCursor;

/// A server's idle cursor timeout (`cursorTimeoutMillis`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Documents in a first batch when the command names no `batchSize`.
pub const DEFAULT_FIRST_BATCH: usize = 101;
/// A batch never exceeds this many bytes of documents (the reply must fit in 16 MiB).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;

/// One open cursor.
#[derive(Debug)]
pub struct Cursor {
    /// `db.collection`.
    pub ns: String,
    remaining: VecDeque<Document>,
    last_used: Instant,
}

/// The cursors of one member.
#[derive(Debug, Default)]
pub struct Cursors {
    open: HashMap<i64, Cursor>,
    streams: HashMap<i64, StreamCursor>,
}

/// Takes the next batch off `remaining`: at most `size` documents (0 = no count limit) and at
/// most the byte limit, but always at least one document if any remain.
pub fn next_batch(remaining: &mut VecDeque<Document>, size: usize) -> Vec<Document> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(doc) = remaining.front() {
        if size != 0 && batch.len() >= size {
            break;
        }
        let len = doc.to_vec().map(|v| v.len()).unwrap_or(0);
        if !batch.is_empty() && bytes + len > MAX_BATCH_BYTES {
            break;
        }
        bytes += len;
        if let Some(doc) = remaining.pop_front() {
            batch.push(doc);
        }
    }
    batch
}

impl Cursors {
    fn new_id(&self) -> i64 {
        loop {
            let id = rand::random::<i64>().wrapping_abs();
            if id != 0 && !self.open.contains_key(&id) && !self.streams.contains_key(&id) {
                break id;
            }
        }
    }

    /// Opens a change stream cursor; returns its id.
    pub fn open_stream(&mut self, stream: StreamCursor) -> i64 {
        self.expire();
        let id = self.new_id();
        self.streams.insert(id, stream);
        id
    }

    /// A copy of change stream cursor `id`, if this member has it.
    pub fn stream(&mut self, id: i64) -> Option<StreamCursor> {
        self.expire();
        self.streams.get(&id).cloned()
    }

    /// Stores where change stream `id` got to, unless it was killed meanwhile.
    pub fn update_stream(&mut self, id: i64, stream: StreamCursor) {
        if let Some(slot) = self.streams.get_mut(&id) {
            *slot = stream;
        }
    }

    /// Opens a cursor over what remains after the first batch; returns its id.
    pub fn open(&mut self, ns: String, remaining: VecDeque<Document>) -> i64 {
        self.expire();
        let id = self.new_id();
        self.open.insert(
            id,
            Cursor {
                ns,
                remaining,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// The next batch of cursor `id` and the id to report (0 once exhausted).
    /// `None` when this member has no such cursor (CursorNotFound); `Some(Err(ns))` when the
    /// cursor belongs to another namespace.
    pub fn get_more(
        &mut self,
        id: i64,
        ns: &str,
        size: usize,
    ) -> Option<Result<(Vec<Document>, i64), String>> {
        self.expire();
        let cursor = self.open.get_mut(&id)?;
        if cursor.ns != ns {
            return Some(Err(cursor.ns.clone()));
        }
        cursor.last_used = Instant::now();
        let batch = next_batch(&mut cursor.remaining, size);
        if cursor.remaining.is_empty() {
            self.open.remove(&id);
            Some(Ok((batch, 0)))
        } else {
            Some(Ok((batch, id)))
        }
    }

    /// Kills a cursor; whether it existed.
    pub fn kill(&mut self, id: i64) -> bool {
        self.open.remove(&id).is_some() || self.streams.remove(&id).is_some()
    }

    /// How many cursors are open (change streams included).
    pub fn len(&self) -> usize {
        self.open.len() + self.streams.len()
    }

    /// Whether no cursor is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&mut self) {
        self.open
            .retain(|_, c| c.last_used.elapsed() < IDLE_TIMEOUT);
        self.streams.retain(|_, s| !s.expired());
    }
}
