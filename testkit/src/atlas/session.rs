//! Server-side sessions: remembered results of retryable writes (so a retry is not applied
//! twice) and multi-statement transactions (writes buffered in a snapshot, applied on commit,
//! dropped on abort).

use std::collections::HashMap;

use bson::Document;

use crate::store::Store;

/// A session's key: the bytes of its `lsid` document.
pub type SessionKey = Vec<u8>;

/// An open transaction.
#[derive(Debug)]
pub struct Transaction {
    /// `txnNumber`.
    pub txn_number: i64,
    /// The store as the transaction sees it (its own writes included).
    pub snapshot: Store,
    /// The writes to apply on commit, in order, with their database.
    pub writes: Vec<(String, Document)>,
}

/// The state of every session.
#[derive(Debug, Default)]
pub struct Sessions {
    retryable: HashMap<(SessionKey, i64), Document>,
    transactions: HashMap<SessionKey, Transaction>,
    committed: HashMap<SessionKey, i64>,
}

/// Remembered retryable-write results beyond this are forgotten (oldest first is not tracked;
/// the map is simply cleared), which real servers do after the session expires.
const MAX_REMEMBERED: usize = 1_000_000;

impl Sessions {
    /// The stored reply of a retryable write already applied.
    pub fn retry_result(&self, session: &SessionKey, txn_number: i64) -> Option<Document> {
        self.retryable.get(&(session.clone(), txn_number)).cloned()
    }

    /// Remembers the reply of an applied retryable write.
    pub fn remember(&mut self, session: SessionKey, txn_number: i64, reply: Document) {
        if self.retryable.len() >= MAX_REMEMBERED {
            self.retryable.clear();
        }
        self.retryable.insert((session, txn_number), reply);
    }

    /// Starts a transaction on a snapshot of `store`, replacing an older one of the session.
    pub fn start(&mut self, session: SessionKey, txn_number: i64, store: &Store) {
        self.transactions.insert(
            session,
            Transaction {
                txn_number,
                snapshot: store.clone(),
                writes: Vec::new(),
            },
        );
    }

    /// The open transaction `txn_number` of the session.
    pub fn transaction(
        &mut self,
        session: &SessionKey,
        txn_number: i64,
    ) -> Option<&mut Transaction> {
        self.transactions
            .get_mut(session)
            .filter(|t| t.txn_number == txn_number)
    }

    /// Takes the transaction out for commit; [`Sessions::record_commit`] records it once its
    /// writes are applied.
    pub fn take_for_commit(
        &mut self,
        session: &SessionKey,
        txn_number: i64,
    ) -> Option<Transaction> {
        let txn = self.transactions.remove(session)?;
        if txn.txn_number != txn_number {
            self.transactions.insert(session.clone(), txn);
            return None;
        }
        Some(txn)
    }

    /// Remembers that `txn_number` of the session committed: a server keeps this per `lsid`
    /// (in `config.transactions`), so a retried `commitTransaction` answers ok, on any member
    /// after a failover too (transactions spec, "Retrying commitTransaction").
    pub fn record_commit(&mut self, session: SessionKey, txn_number: i64) {
        self.committed.insert(session, txn_number);
    }

    /// Aborts every open transaction, as a primary that steps down does (it kills the
    /// operations and drops the unprepared transactions it holds). Returns how many.
    pub fn abort_all(&mut self) -> usize {
        let n = self.transactions.len();
        self.transactions.clear();
        n
    }

    /// Whether `txn_number` of the session was committed (a commit retry succeeds).
    pub fn was_committed(&self, session: &SessionKey, txn_number: i64) -> bool {
        self.committed.get(session) == Some(&txn_number)
    }

    /// Drops the transaction; whether it was open.
    pub fn abort(&mut self, session: &SessionKey, txn_number: i64) -> bool {
        match self.transactions.get(session) {
            Some(t) if t.txn_number == txn_number => {
                self.transactions.remove(session);
                true
            }
            _ => false,
        }
    }
}
