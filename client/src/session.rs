//! Logical sessions: an `lsid` per session, `txnNumber`s for retryable writes and
//! transactions, and the transaction state machine.
//!
//! A [`ClientSession`] is a cheap, clonable handle. Every operation runs in one: the caller's
//! (explicit, via [`crate::Collection::with_session`]) or a fresh implicit one. Either takes a
//! server session (the `lsid`) from a small pool the first time it sends a command and gives it
//! back when the last handle drops, so `lsid`s are reused and no `endSessions` is sent per
//! operation (mongo-pool ends the sessions it saw when it shuts down).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bson::{Binary, Document, doc, spec::BinarySubtype};

use crate::client::ClientInner;
use crate::error::{Error, Result};

/// A server session: the `lsid` and the last `txnNumber` used with it.
#[derive(Debug)]
pub(crate) struct ServerSession {
    lsid: Document,
    txn_number: i64,
    last_use: Instant,
    /// A network error happened while it was in use: the server may hold state for it that
    /// this client does not know about, so it is not reused.
    dirty: bool,
}

impl ServerSession {
    fn new() -> ServerSession {
        let uuid = bson::Uuid::new();
        let id = Binary {
            subtype: BinarySubtype::Uuid,
            bytes: uuid.bytes().to_vec(),
        };
        ServerSession {
            lsid: doc! { "id": id },
            txn_number: 0,
            last_use: Instant::now(),
            dirty: false,
        }
    }
}

/// Idle server sessions, most recently used last.
#[derive(Debug, Default)]
pub(crate) struct SessionPool {
    idle: Mutex<Vec<ServerSession>>,
}

/// Keep at most this many idle server sessions.
const MAX_IDLE_SESSIONS: usize = 64;

impl SessionPool {
    /// The most recently used session that is not about to expire on the server, or a new one.
    fn acquire(&self, timeout: Duration) -> ServerSession {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Sessions within a minute of the server's timeout may expire mid-operation.
        let fresh_for = timeout.saturating_sub(Duration::from_secs(60));
        idle.retain(|s| s.last_use.elapsed() < fresh_for);
        idle.pop().unwrap_or_else(ServerSession::new)
    }

    fn release(&self, session: ServerSession) {
        if session.dirty {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Where a session's transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransactionState {
    None,
    /// `start_transaction` ran; no command was sent yet.
    Starting,
    InProgress,
    Committed,
    Aborted,
}

#[derive(Debug)]
pub(crate) struct SessionState {
    server: Option<ServerSession>,
    pub transaction: TransactionState,
}

#[derive(Debug)]
pub(crate) struct SessionInner {
    pub client: Arc<ClientInner>,
    pub state: Mutex<SessionState>,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = state.server.take() {
            if state.transaction == TransactionState::InProgress {
                // An abandoned transaction: the server aborts it when the session (or the
                // transaction lifetime) expires; do not reuse the lsid meanwhile.
                tracing::debug!("session dropped with a transaction in progress");
                return;
            }
            self.client.sessions.release(server);
        }
    }
}

/// A logical session: its commands share one `lsid`, and it may run a transaction.
///
/// Created by [`crate::Client::start_session`]; clones are handles to the same session.
/// Operations use it through [`crate::Collection::with_session`] and
/// [`crate::Database::with_session`]. Use one session from one task at a time.
#[derive(Debug, Clone)]
pub struct ClientSession {
    pub(crate) inner: Arc<SessionInner>,
}

/// What [`ClientSession::apply`] added to a command.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Applied {
    /// The command carries a `txnNumber` outside a transaction: it may be retried once.
    pub retryable_write: bool,
    /// The command belongs to a transaction.
    pub in_transaction: bool,
}

impl ClientSession {
    pub(crate) fn new(client: Arc<ClientInner>) -> ClientSession {
        ClientSession {
            inner: Arc::new(SessionInner {
                client,
                state: Mutex::new(SessionState {
                    server: None,
                    transaction: TransactionState::None,
                }),
            }),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This session's `lsid` document (`{id: UUID}`), once a command used it.
    pub fn lsid(&self) -> Option<Document> {
        self.lock().server.as_ref().map(|s| s.lsid.clone())
    }

    /// Whether a transaction is started and neither committed nor aborted.
    pub fn in_transaction(&self) -> bool {
        matches!(
            self.lock().transaction,
            TransactionState::Starting | TransactionState::InProgress
        )
    }

    /// Adds `lsid` and, for a retryable write or a transaction, `txnNumber` (and
    /// `autocommit`/`startTransaction`) to `body`. `timeout` is the server's
    /// `logicalSessionTimeoutMinutes`; `None` means sessions are unsupported and nothing is added.
    pub(crate) fn apply(
        &self,
        body: &mut Document,
        retryable_write: bool,
        timeout: Option<Duration>,
    ) -> Applied {
        let mut applied = Applied::default();
        let Some(timeout) = timeout else {
            return applied;
        };
        let mut state = self.lock();
        let transaction = state.transaction;
        let server = state
            .server
            .get_or_insert_with(|| self.inner.client.sessions.acquire(timeout));
        server.last_use = Instant::now();
        body.insert("lsid", server.lsid.clone());
        match transaction {
            TransactionState::Starting | TransactionState::InProgress => {
                body.insert("txnNumber", server.txn_number);
                if transaction == TransactionState::Starting {
                    body.insert("startTransaction", true);
                }
                body.insert("autocommit", false);
                state.transaction = TransactionState::InProgress;
                applied.in_transaction = true;
            }
            _ if retryable_write => {
                server.txn_number += 1;
                body.insert("txnNumber", server.txn_number);
                applied.retryable_write = true;
            }
            _ => {}
        }
        applied
    }

    /// Marks the server session as not reusable (after a network error).
    pub(crate) fn mark_dirty(&self) {
        if let Some(server) = self.lock().server.as_mut() {
            server.dirty = true;
        }
    }

    /// Starts a transaction: the next commands sent in this session belong to it.
    ///
    /// # Errors
    /// [`Error::Transaction`] when a transaction is already in progress.
    pub fn start_transaction(&self) -> Result<()> {
        let mut state = self.lock();
        if matches!(
            state.transaction,
            TransactionState::Starting | TransactionState::InProgress
        ) {
            return Err(Error::Transaction(
                "a transaction is already in progress".into(),
            ));
        }
        let timeout = self.inner.client.session_timeout();
        let server = state
            .server
            .get_or_insert_with(|| self.inner.client.sessions.acquire(timeout));
        server.txn_number += 1;
        state.transaction = TransactionState::Starting;
        Ok(())
    }

    /// The `lsid` and `txnNumber` of the current transaction, and whether commands were sent.
    pub(crate) fn transaction_fields(&self) -> Option<(Document, i64, TransactionState)> {
        let state = self.lock();
        let server = state.server.as_ref()?;
        Some((server.lsid.clone(), server.txn_number, state.transaction))
    }

    pub(crate) fn set_transaction_state(&self, to: TransactionState) {
        self.lock().transaction = to;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn lsid_is_a_uuid_binary_subtype_4() {
        let session = ServerSession::new();
        let id = session.lsid.get_binary_generic("id");
        assert!(id.is_err(), "subtype 0 would be generic");
        let bson::Bson::Binary(b) = session.lsid.get("id").unwrap() else {
            panic!("{:?}", session.lsid)
        };
        assert_eq!(b.subtype, BinarySubtype::Uuid);
        assert_eq!(b.bytes.len(), 16);
    }

    #[test]
    fn released_sessions_are_reused_and_dirty_ones_are_not() {
        let pool = SessionPool::default();
        let timeout = Duration::from_secs(30 * 60);
        let first = pool.acquire(timeout);
        let lsid = first.lsid.clone();
        pool.release(first);
        let again = pool.acquire(timeout);
        assert_eq!(again.lsid, lsid);
        let mut dirty = again;
        dirty.dirty = true;
        pool.release(dirty);
        assert_eq!(pool.idle_len(), 0);
        assert_ne!(pool.acquire(timeout).lsid, lsid);
    }

    #[test]
    fn sessions_close_to_expiry_are_not_reused() {
        let pool = SessionPool::default();
        let session = ServerSession::new();
        let lsid = session.lsid.clone();
        pool.release(session);
        // With a one-minute server timeout every idle session is within a minute of expiry.
        assert_ne!(pool.acquire(Duration::from_secs(60)).lsid, lsid);
        assert_eq!(pool.idle_len(), 0);
    }
}
