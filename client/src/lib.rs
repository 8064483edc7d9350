//! mongo-pool-client: a small async MongoDB client for Rust Lambda handlers that talks to the
//! mongo-pool extension over its Unix socket.
//!
//! mongo-pool (a Lambda layer) keeps a warm, IAM-authenticated connection pool to Atlas and
//! serves it on `/tmp/mongo-pool.sock`. This crate speaks OP_MSG over that socket and nothing
//! else: no TLS, no authentication, no server discovery, so a handler links far less code than
//! the full driver and starts faster.
//!
//! Data flow: [`Collection`] method -> one command document -> session fields (`lsid`,
//! `txnNumber`) -> a pooled socket connection (framed by `mongo-pool-wire`) -> the reply ->
//! [`Error`] or a typed result; cursors fetch further batches with `getMore`.
//!
//! ```no_run
//! use bson::doc;
//! use futures_util::StreamExt as _;
//! use mongo_pool_client::{Client, FindOptions, UpdateOptions};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Note {
//!     _id: String,
//!     text: String,
//! }
//!
//! # async fn demo() -> mongo_pool_client::Result<()> {
//! // Once per process (outside the handler): MONGO_POOL_SOCKET or /tmp/mongo-pool.sock.
//! let client = Client::from_env().await?;
//! let notes = client.database("app").collection::<Note>("notes");
//!
//! let note = Note { _id: "n1".into(), text: "hello".into() };
//! notes.replace_one(doc! {"_id": "n1"}, &note, UpdateOptions::new().upsert(true)).await?;
//! let found = notes.find_one(doc! {"_id": "n1"}, None).await?;
//! let mut cursor = notes.find(doc! {}, FindOptions::new().limit(10)).await?;
//! while let Some(note) = cursor.next().await {
//!     println!("{:?}", note?);
//! }
//! # Ok(()) }
//! ```
//!
//! What it does for you, per the MongoDB specifications:
//! - implicit sessions: every operation carries an `lsid` from a small pool of server
//!   sessions (reused, never ended per operation; mongo-pool ends them at shutdown);
//! - retryable writes: single-document writes carry a `txnNumber` and are retried once, on a
//!   fresh connection, after a network error or a `RetryableWriteError` label; if the retry
//!   reports `NoWritesPerformed`, the first error is returned. `update_many` and `delete_many`
//!   are not retried. Reads are retried once after a network error or a retryable code;
//! - transactions on an explicit [`ClientSession`], with
//!   [`ClientSession::with_transaction`] retrying on `TransientTransactionError` and
//!   `UnknownTransactionCommitResult`;
//! - a pool of up to [`ClientOptions::max_connections`] socket connections, which notices
//!   when mongo-pool restarted and reconnects;
//! - errors that keep the server's `code`, `codeName`, `errmsg` and labels, and a clear
//!   [`Error::SocketMissing`] ("is the mongo-pool layer attached?");
//! - a check of who serves the socket (`SO_PEERCRED`): a process running as another uid than
//!   mongo-pool's ([`ClientOptions::socket_uid`], by default this process's own) gets
//!   [`Error::SocketPeer`] and never a query.
#![forbid(unsafe_code)]

mod client;
mod collection;
mod connection;
mod cursor;
mod database;
mod error;
mod options;
mod pool;
mod session;
mod transaction;

pub use client::{Client, ClientOptions, DEFAULT_SOCKET, SOCKET_ENV, SOCKET_UID_ENV};
pub use collection::Collection;
pub use cursor::Cursor;
pub use database::Database;
pub use error::{
    CommandError, Error, NO_WRITES_PERFORMED, RETRYABLE_WRITE_ERROR, Result,
    TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteError, WriteFailure,
};
pub use options::{
    AggregateOptions, CountOptions, DeleteResult, FindOneAndUpdateOptions, FindOptions, IndexModel,
    InsertManyOptions, InsertManyResult, InsertOneResult, ReturnDocument, UpdateOptions,
    UpdateResult,
};
pub use session::ClientSession;
pub use transaction::WITH_TRANSACTION_LIMIT;

// The types in the public API come from these crates; re-exported so handlers match versions.
pub use bson;
