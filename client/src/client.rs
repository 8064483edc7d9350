//! The [`Client`] and the one place commands are executed: session fields, the round trip,
//! error mapping, and the single retry of retryable writes and reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bson::{Document, RawDocumentBuf};

use crate::connection::Peer;
use crate::database::Database;
use crate::error::{
    NO_WRITES_PERFORMED, RETRYABLE_WRITE_ERROR, Result, TRANSIENT_TRANSACTION_ERROR, check_reply,
};
use crate::pool::Pool;
use crate::session::{Applied, ClientSession, SessionPool};

/// The environment variable naming the socket (the same one mongo-pool reads).
pub const SOCKET_ENV: &str = "MONGO_POOL_SOCKET";
/// The socket path when [`SOCKET_ENV`] is unset.
pub const DEFAULT_SOCKET: &str = "/tmp/mongo-pool.sock";
/// The environment variable naming the uid mongo-pool runs as, when it is not this process's
/// own (a sidecar running as another user): see [`ClientOptions::socket_uid`].
pub const SOCKET_UID_ENV: &str = "MONGO_POOL_SOCKET_UID";

/// How a [`Client`] reaches mongo-pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The socket path.
    pub socket_path: PathBuf,
    /// At most this many socket connections at once (default 8); more concurrent operations
    /// wait for one.
    pub max_connections: usize,
    /// How long an operation waits for a connection (default 10 s).
    pub checkout_timeout: Duration,
    /// The uid the process serving the socket must run as, checked (`SO_PEERCRED`) on every
    /// new connection before a byte is sent: anyone else who took the socket path gets
    /// [`Error::SocketPeer`](crate::Error::SocketPeer). `None` (the default) means this
    /// process's own uid, which is right in Lambda (the extension runs as the function's user)
    /// and for a sidecar running as the application's user.
    pub socket_uid: Option<u32>,
    /// A [`SOCKET_UID_ENV`] value that is not a uid: connecting fails and says so.
    invalid_socket_uid: Option<String>,
}

impl ClientOptions {
    /// Options for the socket at `path`, with the defaults above.
    pub fn new(path: impl Into<PathBuf>) -> ClientOptions {
        ClientOptions {
            socket_path: path.into(),
            max_connections: 8,
            checkout_timeout: Duration::from_secs(10),
            socket_uid: None,
            invalid_socket_uid: None,
        }
    }

    /// Options from a variable lookup: [`SOCKET_ENV`], else [`DEFAULT_SOCKET`], and
    /// [`SOCKET_UID_ENV`]. Tests pass a closure; [`Client::from_env`] passes the process
    /// environment. A [`SOCKET_UID_ENV`] that is not a whole number makes every connection
    /// attempt fail with [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ClientOptions {
        let path = lookup(SOCKET_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
        let mut options = ClientOptions::new(path);
        if let Some(uid) = lookup(SOCKET_UID_ENV).filter(|v| !v.is_empty()) {
            match uid.trim().parse::<u32>() {
                Ok(uid) => options.socket_uid = Some(uid),
                Err(_) => options.invalid_socket_uid = Some(uid),
            }
        }
        options
    }

    /// Sets [`ClientOptions::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> ClientOptions {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`ClientOptions::checkout_timeout`].
    #[must_use]
    pub fn checkout_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.checkout_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::socket_uid`]: mongo-pool runs as `uid`.
    #[must_use]
    pub fn socket_uid(mut self, uid: u32) -> ClientOptions {
        self.socket_uid = Some(uid);
        self.invalid_socket_uid = None;
        self
    }

    /// Whom the socket's peer must be.
    fn peer(&self) -> Peer {
        if let Some(value) = &self.invalid_socket_uid {
            return Peer::Invalid(value.clone());
        }
        Peer::Uid(
            self.socket_uid
                .unwrap_or_else(|| rustix::process::geteuid().as_raw()),
        )
    }
}

/// A handle to mongo-pool; cheap to clone, meant to be created once per process.
///
/// ```no_run
/// # async fn demo() -> mongo_pool_client::Result<()> {
/// let client = mongo_pool_client::Client::from_env().await?;
/// let pong = client.database("admin").run_command(bson::doc! {"ping": 1}).await?;
/// assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

#[derive(Debug)]
pub(crate) struct ClientInner {
    pub pool: Arc<Pool>,
    pub sessions: SessionPool,
}

/// Whether and how an operation may be retried once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A single-statement write: `txnNumber` attached, retried on a network error or a
    /// `RetryableWriteError` label.
    Write,
    /// A read: retried on a network error or a retryable read code.
    Read,
    /// Never retried (multi-document writes, `getMore`, `run_command`).
    No,
}

/// One command to run.
#[derive(Debug)]
pub(crate) struct Operation {
    pub body: Document,
    pub sequence: Option<(&'static str, Vec<RawDocumentBuf>)>,
    pub retry: Retry,
    /// Added to `writeErrors[].index` (batched inserts).
    pub index_offset: usize,
}

impl Operation {
    /// `body` with `$db` appended.
    pub fn new(db: &str, mut body: Document, retry: Retry) -> Operation {
        body.insert("$db", db);
        Operation {
            body,
            sequence: None,
            retry,
            index_offset: 0,
        }
    }
}

/// Codes the retryable-reads spec retries on.
const RETRYABLE_READ_CODES: [i32; 13] = [
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 262, 134,
];

impl Client {
    /// A client for `options`, without connecting: the first operation connects.
    pub fn new(options: ClientOptions) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                pool: Arc::new(Pool::new(
                    options.socket_path.clone(),
                    options.peer(),
                    options.max_connections,
                    options.checkout_timeout,
                )),
                sessions: SessionPool::default(),
            }),
        }
    }

    /// Connects to the socket at `path` and runs the handshake, so a missing socket shows at
    /// once.
    ///
    /// ```no_run
    /// # async fn demo() -> mongo_pool_client::Result<()> {
    /// let client = mongo_pool_client::Client::connect("/tmp/mongo-pool.sock").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::SocketMissing`] when nothing listens there (the layer is not attached);
    /// [`Error::SocketPeer`] when the process serving it runs as another uid than expected
    /// ([`ClientOptions::socket_uid`]);
    /// [`Error::Network`]/[`Error::Timeout`] when the handshake fails.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client> {
        Client::connect_with(ClientOptions::new(path.as_ref())).await
    }

    /// [`Client::connect`] with the path from `MONGO_POOL_SOCKET` (default
    /// `/tmp/mongo-pool.sock`).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn from_env() -> Result<Client> {
        Client::connect_with(ClientOptions::from_lookup(|k| std::env::var(k).ok())).await
    }

    /// [`Client::connect`] with all options.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(options: ClientOptions) -> Result<Client> {
        let client = Client::new(options);
        drop(client.inner.pool.check_out().await?);
        Ok(client)
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        self.inner.pool.path()
    }

    /// A handle to database `name`.
    pub fn database(&self, name: &str) -> Database {
        Database::new(self.clone(), name)
    }

    /// A new explicit session (for transactions, or to group operations under one `lsid`).
    pub fn start_session(&self) -> ClientSession {
        ClientSession::new(Arc::clone(&self.inner))
    }

    /// The session an operation runs in: the caller's, or a fresh implicit one.
    pub(crate) fn session_or_implicit(&self, session: Option<&ClientSession>) -> ClientSession {
        session
            .cloned()
            .unwrap_or_else(|| ClientSession::new(Arc::clone(&self.inner)))
    }

    /// The max batch sizes mongo-pool announced (after a connection was made).
    pub(crate) fn limits(&self) -> crate::connection::Limits {
        self.inner.pool.limits()
    }

    /// Runs `op` in `session`, retrying once where the spec allows it.
    pub(crate) async fn execute(&self, op: Operation, session: &ClientSession) -> Result<Document> {
        self.inner.execute(op, Some(session)).await
    }
}

impl ClientInner {
    /// `logicalSessionTimeoutMinutes` as a duration (30 min until a handshake said otherwise).
    pub fn session_timeout(&self) -> Duration {
        let minutes = self
            .pool
            .limits()
            .logical_session_timeout_minutes
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(minutes).unwrap_or(30).saturating_mul(60))
    }

    /// Runs `op`; with a session, adds its fields first. Without one the body goes as is.
    pub async fn execute(
        &self,
        op: Operation,
        session: Option<&ClientSession>,
    ) -> Result<Document> {
        let Operation {
            mut body,
            sequence,
            retry,
            index_offset,
        } = op;
        let sequence = sequence.as_ref().map(|(id, docs)| (*id, docs.as_slice()));
        let mut connection = self.pool.check_out().await?;
        let timeout = self
            .pool
            .limits()
            .logical_session_timeout_minutes
            .map(|_| self.session_timeout());
        let applied = match session {
            Some(session) => session.apply(&mut body, retry == Retry::Write, timeout),
            None => Applied::default(),
        };
        let first = connection
            .round_trip(&body, sequence)
            .await
            .and_then(|reply| check_reply(reply, index_offset));
        drop(connection);
        let mut error = match first {
            Ok(reply) => return Ok(reply),
            Err(error) => error,
        };
        if error.is_network()
            && let Some(session) = session
        {
            session.mark_dirty();
        }
        if applied.in_transaction {
            if error.is_network() {
                error.add_label(TRANSIENT_TRANSACTION_ERROR);
            }
            return Err(error);
        }
        let retryable = match retry {
            Retry::Write if applied.retryable_write => {
                if error.is_network() {
                    error.add_label(RETRYABLE_WRITE_ERROR);
                }
                error.contains_label(RETRYABLE_WRITE_ERROR)
            }
            Retry::Read => {
                error.is_network()
                    || error
                        .code()
                        .is_some_and(|c| RETRYABLE_READ_CODES.contains(&c))
            }
            _ => false,
        };
        if !retryable {
            return Err(error);
        }
        let command = body.keys().next().cloned().unwrap_or_default();
        tracing::debug!(command, error = %error, "retrying once");
        // The retry needs a fresh connection; if there is none, the original error stands.
        let Ok(mut connection) = self.pool.check_out().await else {
            return Err(error);
        };
        let second = connection
            .round_trip(&body, sequence)
            .await
            .and_then(|reply| check_reply(reply, index_offset));
        match second {
            Ok(reply) => Ok(reply),
            Err(mut retry_error) => {
                if retry_error.is_network() {
                    if let Some(session) = session {
                        session.mark_dirty();
                    }
                    if retry == Retry::Write {
                        retry_error.add_label(RETRYABLE_WRITE_ERROR);
                    }
                }
                if retry_error.contains_label(NO_WRITES_PERFORMED) {
                    Err(error)
                } else {
                    Err(retry_error)
                }
            }
        }
    }
}
