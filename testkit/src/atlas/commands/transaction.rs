//! `commitTransaction` and `abortTransaction`: a transaction's writes reach the store together,
//! on a copy first, so a failing write leaves the store as it was.

use bson::{Bson, Document};

use super::{RETRYABLE, TRANSIENT};
use crate::atlas::cluster::{Cluster, lock};
use crate::atlas::reply::{CommandReply, error};

pub(super) fn session_key(command: &Document) -> Option<Vec<u8>> {
    command
        .get_document("lsid")
        .ok()
        .and_then(|l| l.to_vec().ok())
}

pub(super) fn txn_number(command: &Document) -> Option<i64> {
    match command.get("txnNumber")? {
        Bson::Int64(v) => Some(*v),
        Bson::Int32(v) => Some(i64::from(*v)),
        _ => None,
    }
}

pub(super) fn finish_transaction(
    cluster: &Cluster,
    member: usize,
    name: &str,
    command: &Document,
) -> CommandReply {
    // Not primary: commit and abort are retryable writes, so the server labels the error
    // RetryableWriteError and never TransientTransactionError (mongodb/mongo
    // src/mongo/db/error_labels.cpp: commit/abort are not transient unless NoSuchTransaction).
    if !cluster.is_writable(member) {
        return error(10107, "NotWritablePrimary", "not primary", &[RETRYABLE]);
    }
    let (Some(key), Some(n)) = (session_key(command), txn_number(command)) else {
        return error(
            50768,
            "InvalidOptions",
            &format!("{name} requires lsid and txnNumber"),
            &[],
        );
    };
    let mut sessions = lock(&cluster.sessions);
    if name == "abortTransaction" {
        return if sessions.abort(&key, n) {
            CommandReply::ok(Document::new())
        } else {
            no_such_transaction(n)
        };
    }
    if sessions.was_committed(&key, n) {
        return CommandReply::ok(Document::new());
    }
    let Some(txn) = sessions.take_for_commit(&key, n) else {
        return no_such_transaction(n);
    };
    // Lock order as in `data_command`: sessions, then store. The sessions lock stays held until
    // the commit is recorded, so a concurrent retry of this commit sees it committed.
    let mut store = lock(&cluster.store);
    // Apply on a copy so a failing write leaves the store as it was.
    let mut applied = store.clone();
    let mut changes = Vec::new();
    for (db, write) in &txn.writes {
        let (result, mut changed) = cluster.changes.execute(&mut applied, db, write);
        changes.append(&mut changed);
        if let Err(e) = result {
            return error(
                112,
                "WriteConflict",
                &format!("transaction could not be applied: {e}"),
                &[TRANSIENT],
            );
        }
    }
    *store = applied;
    cluster.changes.publish(cluster, changes);
    sessions.record_commit(key, n);
    CommandReply::ok(Document::new())
}

/// The error for a statement or commit of transaction `n` that is no longer open: the driver
/// runs the transaction again from the start.
pub(super) fn no_such_transaction(n: i64) -> CommandReply {
    error(
        251,
        "NoSuchTransaction",
        &format!("Transaction with {{ txnNumber: {n} }} has been aborted."),
        &[TRANSIENT],
    )
}
