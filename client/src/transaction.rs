//! Transactions on a [`ClientSession`]: commit, abort, and the `with_transaction` helper, as
//! the transactions and convenient-API specs describe them.

use std::future::Future;
use std::time::{Duration, Instant};

use bson::doc;

use crate::client::{Client, Operation, Retry};
use crate::error::{
    Error, RETRYABLE_WRITE_ERROR, Result, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use crate::session::{ClientSession, TransactionState};

/// How long [`ClientSession::with_transaction`] keeps retrying (the spec's 120 s).
pub const WITH_TRANSACTION_LIMIT: Duration = Duration::from_secs(120);

/// `UnknownReplWriteConcern` and `UnsatisfiableWriteConcern`: write concern failures that are
/// not an "unknown commit result".
const NOT_UNKNOWN_COMMIT_CODES: [i32; 2] = [79, 100];

impl ClientSession {
    fn client(&self) -> Client {
        Client {
            inner: std::sync::Arc::clone(&self.inner.client),
        }
    }

    /// Commits the transaction. A transaction in which no command ran commits without a
    /// round trip. The commit is retried once on a retryable error; a failure whose outcome is
    /// unknown carries [`UNKNOWN_TRANSACTION_COMMIT_RESULT`] and may be committed again.
    ///
    /// # Errors
    /// [`Error::Transaction`] when no transaction was started or it was aborted; the server's
    /// error otherwise.
    pub async fn commit_transaction(&self) -> Result<()> {
        let Some((lsid, txn_number, state)) = self.transaction_fields() else {
            return Err(Error::Transaction("no transaction started".into()));
        };
        match state {
            TransactionState::None => {
                return Err(Error::Transaction("no transaction started".into()));
            }
            TransactionState::Aborted => {
                return Err(Error::Transaction(
                    "cannot commit an aborted transaction".into(),
                ));
            }
            TransactionState::Starting => {
                self.set_transaction_state(TransactionState::Committed);
                return Ok(());
            }
            TransactionState::InProgress | TransactionState::Committed => {}
        }
        let retried_commit = state == TransactionState::Committed;
        self.set_transaction_state(TransactionState::Committed);
        let mut body = doc! {"commitTransaction": 1, "lsid": lsid, "txnNumber": txn_number,
        "autocommit": false};
        if retried_commit {
            // The spec: a commit sent again uses majority write concern.
            body.insert("writeConcern", doc! {"w": "majority", "wtimeout": 10_000});
        }
        let client = self.client();
        let result = match self.end_command(&client, body.clone()).await {
            Err(e) if is_retryable(&e) => {
                body.insert("writeConcern", doc! {"w": "majority", "wtimeout": 10_000});
                self.end_command(&client, body).await
            }
            other => other,
        };
        result.map_err(|mut e| {
            if is_unknown_commit_result(&e) {
                e.remove_label(TRANSIENT_TRANSACTION_ERROR);
                e.add_label(UNKNOWN_TRANSACTION_COMMIT_RESULT);
            }
            e
        })
    }

    /// Aborts the transaction. A transaction in which no command ran aborts without a round
    /// trip; errors from the server are ignored, as the spec asks (the server aborts an
    /// abandoned transaction by itself).
    ///
    /// # Errors
    /// [`Error::Transaction`] when no transaction is in progress.
    pub async fn abort_transaction(&self) -> Result<()> {
        let Some((lsid, txn_number, state)) = self.transaction_fields() else {
            return Err(Error::Transaction("no transaction started".into()));
        };
        match state {
            TransactionState::Starting => {
                self.set_transaction_state(TransactionState::Aborted);
                return Ok(());
            }
            TransactionState::InProgress => {}
            _ => {
                return Err(Error::Transaction("no transaction in progress".into()));
            }
        }
        self.set_transaction_state(TransactionState::Aborted);
        let body = doc! {"abortTransaction": 1, "lsid": lsid, "txnNumber": txn_number, "autocommit": false};
        let client = self.client();
        let result = match self.end_command(&client, body.clone()).await {
            Err(e) if is_retryable(&e) => self.end_command(&client, body).await,
            other => other,
        };
        if let Err(error) = result {
            tracing::debug!(error = %error, "abortTransaction failed; ignored");
        }
        Ok(())
    }

    /// Sends `commitTransaction`/`abortTransaction` (already carrying the session fields).
    async fn end_command(&self, client: &Client, body: bson::Document) -> Result<()> {
        // The session fields are in the body already.
        let op = Operation::new("admin", body, Retry::No);
        match client.inner.execute(op, None).await {
            Ok(_) => Ok(()),
            Err(mut e) => {
                if e.is_network() {
                    self.mark_dirty();
                    e.add_label(RETRYABLE_WRITE_ERROR);
                }
                Err(e)
            }
        }
    }

    /// Runs `body` in a transaction and commits it, retrying the whole transaction on
    /// `TransientTransactionError` and the commit on `UnknownTransactionCommitResult`, for at
    /// most [`WITH_TRANSACTION_LIMIT`]. `body` gets a handle to this session; bind collections
    /// to it with [`crate::Collection::with_session`].
    ///
    /// ```no_run
    /// # async fn demo(client: mongo_pool_client::Client) -> mongo_pool_client::Result<()> {
    /// use bson::{Document, doc};
    /// let accounts = client.database("bank").collection::<Document>("accounts");
    /// let session = client.start_session();
    /// session
    ///     .with_transaction(|s| {
    ///         let accounts = accounts.with_session(&s);
    ///         async move {
    ///             accounts.update_one(doc! {"_id": "a"}, doc! {"$inc": {"n": -5}}, None).await?;
    ///             accounts.update_one(doc! {"_id": "b"}, doc! {"$inc": {"n": 5}}, None).await?;
    ///             Ok(())
    ///         }
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The error of `body` or of the commit once it is not retryable or the time is up.
    pub async fn with_transaction<F, Fut, R>(&self, mut body: F) -> Result<R>
    where
        F: FnMut(ClientSession) -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let started = Instant::now();
        'transaction: loop {
            self.start_transaction()?;
            let value = match body(self.clone()).await {
                Ok(value) => value,
                Err(error) => {
                    if self.in_transaction() {
                        self.abort_transaction().await?;
                    }
                    if error.contains_label(TRANSIENT_TRANSACTION_ERROR)
                        && started.elapsed() < WITH_TRANSACTION_LIMIT
                    {
                        tracing::debug!(error = %error, "retrying the transaction");
                        continue 'transaction;
                    }
                    return Err(error);
                }
            };
            if !self.in_transaction() {
                // The body committed or aborted by itself.
                return Ok(value);
            }
            loop {
                match self.commit_transaction().await {
                    Ok(()) => return Ok(value),
                    Err(error) if started.elapsed() >= WITH_TRANSACTION_LIMIT => {
                        return Err(error);
                    }
                    Err(error) if error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => {
                        tracing::debug!(error = %error, "retrying the commit");
                    }
                    Err(error) if error.contains_label(TRANSIENT_TRANSACTION_ERROR) => {
                        tracing::debug!(error = %error, "retrying the transaction");
                        continue 'transaction;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }
}

fn is_retryable(error: &Error) -> bool {
    error.is_network() || error.contains_label(RETRYABLE_WRITE_ERROR)
}

/// The spec's "unknown commit result": network errors, retryable errors and write concern
/// failures other than the ones that say the write concern can never be satisfied.
fn is_unknown_commit_result(error: &Error) -> bool {
    if is_retryable(error) {
        return true;
    }
    match error {
        Error::Write(w) => w
            .write_concern_error
            .as_ref()
            .is_some_and(|wce| !NOT_UNKNOWN_COMMIT_CODES.contains(&wce.code)),
        Error::Command(c) => c.code == 50 || c.code_name == "MaxTimeMSExpired",
        _ => false,
    }
}
