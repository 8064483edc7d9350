//! Where a forwarded request goes. Most requests go to a member picked by read preference
//! (primary when absent); a `getMore`/`killCursors` goes to the member that opened the cursor.
//! Transactions follow the transactions spec: on a replica set every statement, commit and abort
//! goes to the *current* primary, with no pin (a commit retried after a failover must reach the
//! new primary, which answers for a transaction that already committed); on a sharded cluster a
//! transaction is pinned to the mongos that started it. Both maps are bounded and expire (cursors
//! after the server's 10-minute idle timeout, transactions after
//! `transactionLifetimeLimitSeconds`), and so is the registry of logical sessions that SHUTDOWN
//! ends with `endSessions`.
//!
//! A session id comes from the downstream, so only one shaped as drivers make it (`{id: UUID}`,
//! [`SessionId`]) is kept: 16 bytes each, whatever a client sends. A session is remembered once
//! the server accepted a command in it (an `ok: 1` reply); any other `lsid` is forwarded
//! untouched and forgotten.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::spec::BinarySubtype;
use bson::{Binary, Document, RawBsonRef, RawDocument, doc};
use mongo_pool_wire::WireError;
use mongo_pool_wire::inspect::{Command, CommandKind, ReadPreferenceMode, Reply};

use crate::config::HostPort;

/// How long an idle cursor stays pinned (the server's `cursorTimeoutMillis`).
pub const CURSOR_TTL: Duration = Duration::from_secs(600);
/// How long a transaction stays pinned without a command (`transactionLifetimeLimitSeconds`).
pub const TRANSACTION_TTL: Duration = Duration::from_secs(60);
/// How long a session is remembered for `endSessions` (`logicalSessionTimeoutMinutes`).
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// The most cursors pinned at once; beyond it the oldest pin is dropped.
pub const MAX_CURSORS: usize = 100_000;
/// The most transactions pinned at once.
pub const MAX_TRANSACTIONS: usize = 10_000;
/// The most sessions remembered (one `endSessions` command's worth).
pub const MAX_SESSIONS: usize = 10_000;
/// The largest `lsid` looked at: a driver's `{id: UUID}` takes 30 bytes.
pub const MAX_LSID_SIZE: usize = 100;

/// A logical session id as drivers make them: `lsid: {id: <UUID, binary subtype 4>}`. Only these
/// are remembered (for `endSessions` at SHUTDOWN, and transaction pins); they are copied out of
/// the request as 16 bytes, so nothing a client sends in an `lsid` is kept or converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// The id of a driver-shaped `lsid`: at most [`MAX_LSID_SIZE`] bytes, one field `id`, a
    /// 16-byte UUID. `None` for anything else.
    pub fn from_lsid(lsid: &RawDocument) -> Option<SessionId> {
        if lsid.as_bytes().len() > MAX_LSID_SIZE {
            return None;
        }
        let mut fields = lsid.iter();
        let id = match fields.next()? {
            Ok((key, RawBsonRef::Binary(id)))
                if key.as_str() == "id" && id.subtype == BinarySubtype::Uuid =>
            {
                <[u8; 16]>::try_from(id.bytes).ok()?
            }
            _ => return None,
        };
        fields.next().is_none().then_some(SessionId(id))
    }

    /// The `lsid` document, for `endSessions`.
    pub fn to_document(self) -> Document {
        doc! { "id": Binary { subtype: BinarySubtype::Uuid, bytes: self.0.to_vec() } }
    }
}

/// What routing needs to know about a request, taken out of its body so the frame itself can
/// be moved into the upstream round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name.
    pub name: String,
    /// What the name says about routing.
    pub kind: CommandKind,
    /// `getMore`'s cursor id.
    pub get_more_cursor_id: Option<i64>,
    /// `killCursors`' cursor ids.
    pub kill_cursor_ids: Vec<i64>,
    /// The logical session, when its `lsid` is shaped as drivers make them.
    pub lsid: Option<SessionId>,
    /// `txnNumber`.
    pub txn_number: Option<i64>,
    /// `startTransaction: true`.
    pub start_transaction: bool,
    /// Part of a multi-statement transaction (or its commit/abort).
    pub in_transaction: bool,
    /// `$readPreference.mode`.
    pub read_preference: Option<ReadPreferenceMode>,
    /// `maxTimeMS`.
    pub max_time_ms: Option<i64>,
}

impl Request {
    /// Reads what routing needs from a command.
    ///
    /// # Errors
    /// [`WireError::FieldType`] for a malformed `$readPreference` or cursor list.
    pub fn from_command(command: &Command<'_>) -> Result<Request, WireError> {
        let kill_cursor_ids = if command.kind == CommandKind::KillCursors {
            command.kill_cursor_ids()?
        } else {
            Vec::new()
        };
        Ok(Request {
            name: command.name.to_owned(),
            kind: command.kind,
            get_more_cursor_id: command.get_more_cursor_id,
            kill_cursor_ids,
            lsid: command.lsid.and_then(SessionId::from_lsid),
            txn_number: command.txn_number,
            start_transaction: command.start_transaction,
            in_transaction: command.in_transaction()
                || matches!(
                    command.kind,
                    CommandKind::CommitTransaction | CommandKind::AbortTransaction
                ),
            read_preference: command.read_preference_mode()?,
            max_time_ms: command.max_time_ms,
        })
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// To this member (a cursor's or a transaction's).
    Pinned(HostPort),
    /// To a member picked for this read preference.
    Select(ReadPreferenceMode),
    /// Nowhere: the cursor is unknown (answer CursorNotFound).
    UnknownCursor(i64),
}

/// A bounded map whose entries expire; the oldest insertion goes first when it is full.
#[derive(Debug)]
struct ExpiringMap<K, V> {
    entries: HashMap<K, (V, Instant)>,
    order: VecDeque<K>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        ExpiringMap {
            entries: HashMap::new(),
            order: VecDeque::new(),
            ttl,
            capacity,
        }
    }

    fn insert(&mut self, key: K, value: V, now: Instant) {
        if self
            .entries
            .insert(key.clone(), (value, now + self.ttl))
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        // Keep the order queue from growing with keys already removed.
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// The value, refreshing its expiry; expired entries are dropped.
    fn touch<Q>(&mut self, key: &Q, now: Instant) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let expired = self.entries.get(key).is_some_and(|(_, at)| *at <= now);
        if expired {
            self.entries.remove(key);
            return None;
        }
        let ttl = self.ttl;
        self.entries.get_mut(key).map(|(v, at)| {
            *at = now + ttl;
            &*v
        })
    }

    fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key).map(|(v, _)| v)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .iter()
            .filter(move |(_, (_, at))| *at > now)
            .map(|(k, (v, _))| (k, v))
    }
}

#[derive(Debug)]
struct TransactionPin {
    txn_number: i64,
    address: HostPort,
}

/// The routing state shared by every downstream connection.
#[derive(Debug)]
pub struct Router {
    cursors: Mutex<ExpiringMap<i64, HostPort>>,
    transactions: Mutex<ExpiringMap<SessionId, TransactionPin>>,
    sessions: Mutex<ExpiringMap<SessionId, ()>>,
    /// The deployment is a sharded cluster: transactions are pinned to their mongos. Until the
    /// topology knows (and on a replica set), they are not pinned.
    sharded: AtomicBool,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            cursors: Mutex::new(ExpiringMap::new(CURSOR_TTL, MAX_CURSORS)),
            transactions: Mutex::new(ExpiringMap::new(TRANSACTION_TTL, MAX_TRANSACTIONS)),
            sessions: Mutex::new(ExpiringMap::new(SESSION_TTL, MAX_SESSIONS)),
            sharded: AtomicBool::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Router {
    /// Tells the router what the deployment is, as the topology last saw it: on a sharded
    /// cluster transactions are pinned to the mongos that started them, on a replica set they
    /// are not.
    pub fn set_sharded(&self, sharded: bool) {
        self.sharded.store(sharded, Ordering::Relaxed);
    }

    fn sharded(&self) -> bool {
        self.sharded.load(Ordering::Relaxed)
    }

    /// `killCursors` ids by the member that owns them, in the order first seen, and the ids no
    /// member is known to own. A command naming cursors of several members is split, one per
    /// member, so that every cursor is killed where it lives.
    pub fn kill_cursors_by_member(&self, ids: &[i64]) -> (Vec<(HostPort, Vec<i64>)>, Vec<i64>) {
        let now = Instant::now();
        let mut cursors = lock(&self.cursors);
        let mut groups: Vec<(HostPort, Vec<i64>)> = Vec::new();
        let mut unknown = Vec::new();
        for &id in ids {
            match cursors.touch(&id, now) {
                Some(address) => match groups.iter_mut().find(|(a, _)| a == address) {
                    Some((_, group)) => group.push(id),
                    None => groups.push((address.clone(), vec![id])),
                },
                None => unknown.push(id),
            }
        }
        (groups, unknown)
    }

    /// Forgets cursors a `killCursors` named.
    pub fn forget_cursors(&self, ids: &[i64]) {
        let mut cursors = lock(&self.cursors);
        for id in ids {
            cursors.remove(id);
        }
    }

    /// Where `request` goes.
    pub fn target(&self, request: &Request) -> Target {
        let now = Instant::now();
        match request.kind {
            CommandKind::GetMore => {
                let id = request.get_more_cursor_id.unwrap_or(0);
                return match lock(&self.cursors).touch(&id, now) {
                    Some(address) => Target::Pinned(address.clone()),
                    None => Target::UnknownCursor(id),
                };
            }
            CommandKind::KillCursors => {
                let cursors = &mut lock(&self.cursors);
                if let Some(address) = request
                    .kill_cursor_ids
                    .iter()
                    .find_map(|id| cursors.touch(id, now).cloned())
                {
                    return Target::Pinned(address);
                }
            }
            _ => {}
        }
        if request.in_transaction {
            if self.sharded()
                && let (Some(lsid), Some(txn), false) =
                    (&request.lsid, request.txn_number, request.start_transaction)
                && let Some(pin) = lock(&self.transactions).touch(lsid, now)
                && pin.txn_number == txn
            {
                return Target::Pinned(pin.address.clone());
            }
            // Transactions run on the current primary (or, to start, any mongos).
            return Target::Select(ReadPreferenceMode::Primary);
        }
        Target::Select(
            request
                .read_preference
                .unwrap_or(ReadPreferenceMode::Primary),
        )
    }

    /// Learns from a reply of `address` to `request`: cursors opened, exhausted or killed;
    /// transactions started or finished; the session, once the server accepted a command in it.
    pub fn learn(&self, request: &Request, reply: &Reply<'_>, address: &HostPort) {
        let now = Instant::now();
        if let (Some(lsid), true) = (request.lsid, reply.ok) {
            self.saw_session(lsid);
        }
        match request.kind {
            CommandKind::KillCursors => self.forget_cursors(&request.kill_cursor_ids),
            CommandKind::GetMore => {
                if (reply.cursor_id == Some(0) || reply.code == Some(43))
                    && let Some(id) = request.get_more_cursor_id
                {
                    lock(&self.cursors).remove(&id);
                }
            }
            _ => {
                if let Some(id) = reply.cursor_id.filter(|id| *id != 0) {
                    lock(&self.cursors).insert(id, address.clone(), now);
                }
            }
        }
        let (Some(lsid), Some(txn)) = (&request.lsid, request.txn_number) else {
            return;
        };
        match request.kind {
            CommandKind::CommitTransaction | CommandKind::AbortTransaction => {
                let mut transactions = lock(&self.transactions);
                if transactions
                    .touch(lsid, now)
                    .is_some_and(|p| p.txn_number == txn)
                {
                    transactions.remove(lsid);
                }
            }
            _ if request.start_transaction && reply.ok && self.sharded() => {
                let pin = TransactionPin {
                    txn_number: txn,
                    address: address.clone(),
                };
                lock(&self.transactions).insert(*lsid, pin, now);
            }
            _ if request.in_transaction && reply.code == Some(251) => {
                lock(&self.transactions).remove(lsid);
            }
            _ => {}
        }
    }

    /// Remembers a session id so SHUTDOWN can end it.
    pub fn saw_session(&self, lsid: SessionId) {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        if sessions.touch(&lsid, now).is_none() {
            sessions.insert(lsid, (), now);
        }
    }

    /// Forgets sessions the driver ended itself (`endSessions` from the function).
    pub fn ended_sessions(&self, ids: impl Iterator<Item = SessionId>) {
        let mut sessions = lock(&self.sessions);
        for id in ids {
            sessions.remove(&id);
        }
    }

    /// The sessions seen and not yet ended or expired.
    pub fn live_sessions(&self) -> Vec<SessionId> {
        let now = Instant::now();
        lock(&self.sessions).live(now).map(|(id, ())| *id).collect()
    }

    /// (cursors, transactions, sessions) tracked now.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            lock(&self.cursors).len(),
            lock(&self.transactions).len(),
            lock(&self.sessions).len(),
        )
    }
}

#[cfg(test)]
mod tests;
