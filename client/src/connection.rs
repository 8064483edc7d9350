//! One socket connection to mongo-pool: connect, `hello`, and OP_MSG round trips.
//!
//! Framing is `mongo_pool_wire`'s codec; this module only adds request ids, the handshake
//! (which tells the batch limits and whether sessions are supported) and the mapping of IO
//! failures to [`Error::Network`]. A connection that failed once is broken and never reused.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use bson::{Document, RawDocumentBuf, doc};
use futures_util::{SinkExt as _, StreamExt as _};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{OpCode, OpMsgBuilder, WireError};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

use crate::error::{Error, Result, int_field};

/// What mongo-pool's `hello` reply says about the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `maxWriteBatchSize`.
    pub max_write_batch_size: usize,
    /// `maxMessageSizeBytes`.
    pub max_message_size_bytes: usize,
    /// `maxBsonObjectSize`.
    pub max_bson_object_size: usize,
    /// `logicalSessionTimeoutMinutes`: sessions (and so retryable writes) need it.
    pub logical_session_timeout_minutes: Option<i64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_write_batch_size: mongo_pool_wire::MAX_WRITE_BATCH_SIZE,
            max_message_size_bytes: mongo_pool_wire::MAX_MESSAGE_SIZE,
            max_bson_object_size: mongo_pool_wire::MAX_BSON_OBJECT_SIZE,
            logical_session_timeout_minutes: None,
        }
    }
}

impl Limits {
    fn from_hello(reply: &Document) -> Limits {
        let size = |key: &str, default: usize| {
            int_field(reply, key)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let default = Limits::default();
        Limits {
            max_write_batch_size: size("maxWriteBatchSize", default.max_write_batch_size),
            max_message_size_bytes: size("maxMessageSizeBytes", default.max_message_size_bytes),
            max_bson_object_size: size("maxBsonObjectSize", default.max_bson_object_size),
            logical_session_timeout_minutes: int_field(reply, "logicalSessionTimeoutMinutes"),
        }
    }
}

/// Whom the process serving the socket must be, checked with `SO_PEERCRED` before the first
/// byte is sent: a socket path someone else took must not see the handler's queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A process running as this uid.
    Uid(u32),
    /// `MONGO_POOL_SOCKET_UID` was set to this, which is not a uid.
    Invalid(String),
}

impl Peer {
    /// Checks the peer of `stream`, connected to `path`.
    fn check(&self, stream: &UnixStream, path: &Path) -> Result<()> {
        let expected = match self {
            Peer::Uid(uid) => *uid,
            Peer::Invalid(value) => {
                return Err(Error::InvalidArgument(format!(
                    "{}={value:?} is not a uid (a whole number)",
                    crate::client::SOCKET_UID_ENV
                )));
            }
        };
        let actual = stream
            .peer_cred()
            .map_err(|e| {
                Error::network(format!(
                    "reading the credentials of {}'s peer: {e}",
                    path.display()
                ))
            })?
            .uid();
        if actual != expected {
            return Err(Error::SocketPeer {
                path: path.to_owned(),
                expected,
                actual,
            });
        }
        Ok(())
    }
}

/// Request ids are unique per process, which makes logs easy to correlate.
static NEXT_REQUEST_ID: AtomicI32 = AtomicI32::new(1);

fn next_request_id() -> i32 {
    NEXT_REQUEST_ID
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| {
            Some(id.checked_add(1).unwrap_or(1))
        })
        .unwrap_or(1)
}

/// A connection to mongo-pool's socket, after its handshake.
#[derive(Debug)]
pub(crate) struct Connection {
    framed: Framed<UnixStream, MessageCodec>,
    limits: Limits,
    /// Set when an exchange failed half way; the pool then drops the connection.
    broken: bool,
    /// The pool generation this connection was made in.
    pub generation: u64,
}

/// The driver metadata sent in the first `hello`.
fn client_metadata() -> Document {
    doc! {
        "driver": {"name": "mongo-pool-client", "version": env!("CARGO_PKG_VERSION")},
        "os": {"type": std::env::consts::OS, "architecture": std::env::consts::ARCH},
        "platform": "Rust (tokio)",
    }
}

impl Connection {
    /// Connects to `path`, checks that `peer` serves it, and runs the handshake.
    ///
    /// # Errors
    /// [`Error::SocketMissing`] when nothing listens at `path`; [`Error::SocketPeer`] when
    /// another uid serves it; [`Error::Network`] or [`Error::Command`] when the handshake fails.
    pub async fn establish(path: &Path, peer: &Peer, generation: u64) -> Result<Connection> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    Error::SocketMissing {
                        path: path.to_owned(),
                        source,
                    }
                }
                _ => Error::network(format!("connecting to {}: {source}", path.display())),
            })?;
        peer.check(&stream, path)?;
        let mut connection = Connection {
            framed: Framed::new(stream, MessageCodec::default()),
            limits: Limits::default(),
            broken: false,
            generation,
        };
        let hello = doc! {
            "hello": 1, "helloOk": true, "client": client_metadata(), "$db": "admin",
        };
        let reply = crate::error::check_reply(connection.round_trip(&hello, None).await?, 0)?;
        connection.limits = Limits::from_hello(&reply);
        tracing::debug!(limits = ?connection.limits, "connected to mongo-pool");
        Ok(connection)
    }

    /// What the handshake said.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether an earlier exchange failed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the peer closed the connection (or sent something unasked) while it sat idle;
    /// checked without blocking before an idle connection is reused.
    pub fn peer_closed(&self) -> bool {
        if !self.framed.read_buffer().is_empty() {
            return true;
        }
        let mut probe = [0_u8; 1];
        match self.framed.get_ref().try_read(&mut probe) {
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            // EOF (0) or unexpected bytes: either way the connection is not usable.
            Ok(_) => true,
        }
    }

    /// Sends `body` (with an optional kind-1 section) and returns the reply's body.
    /// The body is returned as is: `ok: 0` is not turned into an error here.
    ///
    /// Not cancel-safe: a round trip dropped half way leaves the connection broken.
    ///
    /// # Errors
    /// [`Error::Network`] when the socket fails or closes; [`Error::Wire`] when the message
    /// cannot be built or the reply cannot be parsed.
    pub async fn round_trip(
        &mut self,
        body: &Document,
        sequence: Option<(&str, &[RawDocumentBuf])>,
    ) -> Result<Document> {
        // Assume the worst until the reply is read: a cancelled exchange leaves it broken.
        self.broken = true;
        let raw = RawDocumentBuf::try_from(body)?;
        let id = next_request_id();
        let mut builder = OpMsgBuilder::new(&raw).request_id(id);
        if let Some((identifier, documents)) = sequence {
            builder = builder.sequence(identifier, documents.iter().map(|d| d.as_ref()).collect());
        }
        let frame = builder.build()?;
        self.framed.send(frame).await.map_err(network)?;
        let reply = match self.framed.next().await {
            None => return Err(Error::network("mongo-pool closed the connection")),
            Some(reply) => reply.map_err(network)?,
        };
        if reply.op_code() != OpCode::Msg {
            return Err(Error::UnexpectedReply(format!(
                "op code {:?} instead of OP_MSG",
                reply.op_code()
            )));
        }
        if reply.response_to() != id {
            return Err(Error::UnexpectedReply(format!(
                "responseTo {} does not answer request {id}",
                reply.response_to()
            )));
        }
        let body = reply.op_msg()?.body;
        // Checked whole, depth included, before the (recursive) conversion.
        mongo_pool_wire::validate::document(body, mongo_pool_wire::validate::MAX_REQUEST_DEPTH)
            .map_err(|e| Error::UnexpectedReply(format!("the reply is not valid BSON: {e}")))?;
        let document = Document::try_from(body)?;
        self.broken = false;
        Ok(document)
    }
}

/// IO failures are network errors; anything else the codec says is a protocol error.
fn network(err: WireError) -> Error {
    match err {
        WireError::Io(io) => Error::network(io.to_string()),
        other => Error::Wire(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn limits_come_from_hello_with_defaults_for_missing_fields() {
        let limits = Limits::from_hello(&doc! {
            "maxWriteBatchSize": 1000, "maxMessageSizeBytes": 2_000_000,
            "logicalSessionTimeoutMinutes": 30, "ok": 1.0,
        });
        assert_eq!(limits.max_write_batch_size, 1000);
        assert_eq!(limits.max_message_size_bytes, 2_000_000);
        assert_eq!(
            limits.max_bson_object_size,
            mongo_pool_wire::MAX_BSON_OBJECT_SIZE
        );
        assert_eq!(limits.logical_session_timeout_minutes, Some(30));
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_is_socket_missing() {
        let err =
            Connection::establish(Path::new("/nonexistent/mongo-pool.sock"), &Peer::Uid(0), 0)
                .await
                .unwrap_err();
        assert!(matches!(err, Error::SocketMissing { .. }), "{err:?}");
    }
}
