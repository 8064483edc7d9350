//! One established, authenticated upstream connection: a framed (TLS) stream to one member,
//! used for one request at a time. A connection that fails mid-request is marked broken with a
//! reason and is never handed out again.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, RawDocumentBuf};
use futures_util::{SinkExt, StreamExt};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{Frame, MsgFlags, OpCode, OpMsgBuilder, WireError, validate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::handshake::HelloReply;
use crate::config::HostPort;

/// Any byte stream an upstream connection runs over (TLS or, for tests, plain TCP), with
/// access to its socket for [`Connection::liveness`].
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// What a look at an idle connection's socket, without blocking, says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Nothing to read and no error: as far as this host knows, the peer still has it open.
    Quiet,
    /// Bytes wait unread (on an idle connection a TLS alert, a session ticket or a stray
    /// reply): only a round trip can tell whether it still works.
    Unread,
    /// The peer closed or reset it.
    Closed,
}

/// Why a connection was taken out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenReason {
    /// Reading or writing failed.
    Io,
    /// The server sent something that is not a valid reply.
    Protocol,
    /// No reply within the deadline; the stream's state is unknown.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// A ping before use failed.
    PingFailed,
    /// The server said it is shutting down or changed state (the pool was cleared).
    StateChange,
    /// A round trip was abandoned part-way (its future dropped): a reply, or part of the
    /// request, may still be on the wire, so the stream is out of step.
    Interrupted,
    /// The driver that sent the request closed its connection mid-request: this connection is
    /// closed so that the server kills the operation rather than running it on.
    DownstreamGone,
}

impl fmt::Display for BrokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokenReason::Io => "i/o error",
            BrokenReason::Protocol => "protocol error",
            BrokenReason::Timeout => "timed out",
            BrokenReason::Closed => "closed by the server",
            BrokenReason::PingFailed => "ping before use failed",
            BrokenReason::StateChange => "server state change",
            BrokenReason::Interrupted => "round trip interrupted",
            BrokenReason::DownstreamGone => "the driver closed its connection mid-request",
        })
    }
}

/// A failed round trip on an upstream connection. The connection is broken afterwards.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The network failed.
    #[error("upstream {address}: {source}")]
    Io {
        /// The member.
        address: HostPort,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server's reply was malformed.
    #[error("upstream {address}: invalid reply: {source}")]
    Protocol {
        /// The member.
        address: HostPort,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// The server closed the connection.
    #[error("upstream {address} closed the connection")]
    Closed {
        /// The member.
        address: HostPort,
    },
    /// No reply in time.
    #[error("upstream {address} did not answer within {after:?}")]
    Timeout {
        /// The member.
        address: HostPort,
        /// The deadline that passed.
        after: Duration,
    },
    /// A reply answered another request.
    #[error("upstream {address} answered request {got}, expected {expected}")]
    Mismatch {
        /// The member.
        address: HostPort,
        /// The request id sent.
        expected: i32,
        /// The `responseTo` received.
        got: i32,
    },
}

/// An established connection.
pub struct Connection {
    framed: Framed<Box<dyn Stream>, MessageCodec>,
    address: HostPort,
    id: u64,
    generation: u64,
    hello: Arc<HelloReply>,
    next_request_id: i32,
    broken: Option<BrokenReason>,
    /// Set while a request is being sent or its reply awaited, cleared when the exchange is
    /// complete: a connection dropped in between is never reused.
    in_round_trip: bool,
    last_used: Instant,
    fresh_hello: bool,
    hello_at: Instant,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("id", &self.id)
            .field("generation", &self.generation)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        stream: Box<dyn Stream>,
        address: HostPort,
        id: u64,
        generation: u64,
        max_message_size: usize,
    ) -> Self {
        Connection {
            framed: Framed::new(stream, MessageCodec::new(max_message_size)),
            address,
            id,
            generation,
            hello: Arc::new(HelloReply::placeholder()),
            next_request_id: 1,
            broken: None,
            in_round_trip: false,
            last_used: Instant::now(),
            fresh_hello: false,
            hello_at: Instant::now(),
        }
    }

    /// The member it connects to.
    pub fn address(&self) -> &HostPort {
        &self.address
    }

    /// A process-wide id, for logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pool generation it was created in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The server's reply to this connection's handshake (or latest check).
    pub fn hello(&self) -> &Arc<HelloReply> {
        &self.hello
    }

    pub(crate) fn set_hello(&mut self, hello: HelloReply) {
        self.hello = Arc::new(hello);
        self.fresh_hello = true;
        self.hello_at = Instant::now();
    }

    /// The handshake reply, once, if no one has taken it yet and it arrived at or after
    /// `since`: a topology check that started at `since` and got a brand-new connection needs
    /// no second `hello`, but a handshake older than the check may describe a member that has
    /// changed since (a primary that stepped down), so it is not returned.
    pub fn take_fresh_hello(&mut self, since: Instant) -> Option<Arc<HelloReply>> {
        let fresh = std::mem::take(&mut self.fresh_hello) && self.hello_at >= since;
        fresh.then(|| Arc::clone(&self.hello))
    }

    /// When it last finished a round trip.
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// Why it is out of service, if it is. A connection whose round trip was abandoned
    /// part-way (a cancelled future) is out of step with its server and counts as
    /// [`BrokenReason::Interrupted`].
    pub fn broken(&self) -> Option<BrokenReason> {
        self.broken
            .or(self.in_round_trip.then_some(BrokenReason::Interrupted))
    }

    /// Takes it out of service: it will be closed instead of returning to the pool.
    pub fn mark_broken(&mut self, reason: BrokenReason) {
        if self.broken.is_none() {
            tracing::debug!(address = %self.address, id = self.id, %reason, "upstream connection broken");
            self.broken = Some(reason);
        }
    }

    /// Looks at the socket without reading or waiting (one `recv(MSG_PEEK)` system call): a
    /// peer that closed the connection while it sat idle has left an end-of-file (or a reset)
    /// in the socket, which this sees at once, so a pool never hands such a connection out.
    /// It cannot see a peer that vanished silently (a freeze, a blackhole): that takes a ping.
    pub fn liveness(&self) -> Liveness {
        if !self.framed.read_buffer().is_empty() {
            return Liveness::Unread;
        }
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        let socket = socket2::SockRef::from(self.framed.get_ref().tcp());
        match socket.peek(&mut byte) {
            Ok(0) => Liveness::Closed,
            Ok(_) => Liveness::Unread,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Liveness::Quiet,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Liveness::Unread,
            Err(_) => Liveness::Closed,
        }
    }

    fn next_id(&mut self) -> i32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        id
    }

    fn fail(&mut self, error: UpstreamError) -> UpstreamError {
        let reason = match &error {
            UpstreamError::Io { .. } => BrokenReason::Io,
            UpstreamError::Protocol { .. } | UpstreamError::Mismatch { .. } => {
                BrokenReason::Protocol
            }
            UpstreamError::Closed { .. } => BrokenReason::Closed,
            UpstreamError::Timeout { .. } => BrokenReason::Timeout,
        };
        self.mark_broken(reason);
        error
    }

    fn wire_error(&self, e: WireError) -> UpstreamError {
        match e {
            WireError::Io(source) => UpstreamError::Io {
                address: self.address.clone(),
                source,
            },
            other => UpstreamError::Protocol {
                address: self.address.clone(),
                source: other,
            },
        }
    }

    /// Sends `frame` (its `requestID` replaced by this connection's own) and returns the reply,
    /// whose `responseTo` is that id. Cancelling it leaves the connection broken
    /// ([`BrokenReason::Interrupted`]): its reply may still be on the wire, so a pool closes it
    /// instead of handing it out again.
    ///
    /// # Errors
    /// Any [`UpstreamError`]; the connection is then broken.
    pub async fn round_trip(&mut self, mut frame: Frame) -> Result<Frame, UpstreamError> {
        let request_id = self.next_id();
        frame.set_request_id(request_id);
        self.in_round_trip = true;
        if let Err(e) = self.framed.send(frame).await {
            let e = self.wire_error(e);
            return Err(self.fail(e));
        }
        let reply = match self.framed.next().await {
            None => {
                let e = UpstreamError::Closed {
                    address: self.address.clone(),
                };
                return Err(self.fail(e));
            }
            Some(Err(e)) => {
                let e = self.wire_error(e);
                return Err(self.fail(e));
            }
            Some(Ok(reply)) => reply,
        };
        let reply = match reply.decompress(self.framed.codec().max_message_size()) {
            Ok(r) => r,
            Err(e) => {
                let e = self.wire_error(e);
                return Err(self.fail(e));
            }
        };
        if reply.response_to() != request_id {
            let e = UpstreamError::Mismatch {
                address: self.address.clone(),
                expected: request_id,
                got: reply.response_to(),
            };
            return Err(self.fail(e));
        }
        self.in_round_trip = false;
        self.last_used = Instant::now();
        // An exhaust reply (moreToCome) cannot happen: mongo-pool clears exhaustAllowed.
        if reply.op_code() == OpCode::Msg
            && reply
                .msg_flags()
                .is_ok_and(|f| f.contains(MsgFlags::MORE_TO_COME))
        {
            let e = UpstreamError::Protocol {
                address: self.address.clone(),
                source: WireError::WrongOpCode {
                    expected: "a single reply",
                    found: 2013,
                },
            };
            return Err(self.fail(e));
        }
        Ok(reply)
    }

    /// [`Connection::round_trip`] with a deadline; on timeout the connection is broken.
    ///
    /// # Errors
    /// Any [`UpstreamError`], including [`UpstreamError::Timeout`].
    pub async fn round_trip_within(
        &mut self,
        frame: Frame,
        limit: Option<Duration>,
    ) -> Result<Frame, UpstreamError> {
        let Some(limit) = limit else {
            return self.round_trip(frame).await;
        };
        match tokio::time::timeout(limit, self.round_trip(frame)).await {
            Ok(result) => result,
            Err(_) => {
                let e = UpstreamError::Timeout {
                    address: self.address.clone(),
                    after: limit,
                };
                Err(self.fail(e))
            }
        }
    }

    /// Sends a request that expects no reply (`moreToCome`).
    ///
    /// # Errors
    /// Any [`UpstreamError`]; the connection is then broken.
    pub async fn send_only(&mut self, mut frame: Frame) -> Result<(), UpstreamError> {
        let request_id = self.next_id();
        frame.set_request_id(request_id);
        // A send cut off part-way leaves part of a message on the wire.
        self.in_round_trip = true;
        if let Err(e) = self.framed.send(frame).await {
            let e = self.wire_error(e);
            return Err(self.fail(e));
        }
        self.in_round_trip = false;
        self.last_used = Instant::now();
        Ok(())
    }

    /// Runs one command document (the handshake, authentication, pings) and returns the
    /// reply body, whatever its `ok`.
    ///
    /// # Errors
    /// Any [`UpstreamError`], including a reply that is not an OP_MSG document.
    pub async fn command(
        &mut self,
        command: &Document,
        limit: Duration,
    ) -> Result<Document, UpstreamError> {
        let protocol = |address: &HostPort, source: WireError| UpstreamError::Protocol {
            address: address.clone(),
            source,
        };
        let raw = RawDocumentBuf::try_from(command).map_err(|e| {
            protocol(
                &self.address,
                WireError::Bson {
                    what: "command",
                    source: e,
                },
            )
        })?;
        let frame = OpMsgBuilder::new(&raw)
            .build()
            .map_err(|e| protocol(&self.address, e))?;
        let reply = self.round_trip_within(frame, Some(limit)).await?;
        // Checked whole, nesting bounded, before the recursive conversion.
        let parsed = reply.op_msg().and_then(|msg| {
            validate::document(msg.body, validate::MAX_REQUEST_DEPTH).map_err(|source| {
                WireError::InvalidBson {
                    what: "reply",
                    source,
                }
            })?;
            Document::try_from(msg.body).map_err(|e| WireError::Bson {
                what: "reply",
                source: e,
            })
        });
        match parsed {
            Ok(doc) => Ok(doc),
            Err(e) => {
                let e = protocol(&self.address, e);
                Err(self.fail(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    async fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (client, accepted) =
            tokio::join!(TcpStream::connect(("127.0.0.1", port)), listener.accept());
        let address = HostPort {
            host: "127.0.0.1".into(),
            port,
        };
        let conn = Connection::new(Box::new(client.unwrap()), address, 1, 0, 1 << 20);
        (conn, accepted.unwrap().0)
    }

    fn ping() -> Frame {
        OpMsgBuilder::new(&bson::rawdoc! { "ping": 1, "$db": "admin" })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_round_trip_abandoned_before_its_reply_leaves_the_connection_broken() {
        let (mut conn, mut server) = pair().await;
        let abandoned =
            tokio::time::timeout(Duration::from_millis(50), conn.round_trip(ping())).await;
        assert!(abandoned.is_err(), "the server never answers");
        assert_eq!(conn.broken(), Some(BrokenReason::Interrupted));
        // A reason given afterwards wins over the generic one.
        conn.mark_broken(BrokenReason::DownstreamGone);
        assert_eq!(conn.broken(), Some(BrokenReason::DownstreamGone));
        let mut request = [0u8; 16];
        server.read_exact(&mut request).await.unwrap();
        drop(server.shutdown().await);
    }

    #[tokio::test]
    async fn a_completed_round_trip_leaves_the_connection_usable() {
        let (mut conn, mut server) = pair().await;
        let serve = tokio::spawn(async move {
            let mut header = [0u8; 16];
            server.read_exact(&mut header).await.unwrap();
            let length = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let mut rest = vec![0u8; usize::try_from(length).unwrap() - 16];
            server.read_exact(&mut rest).await.unwrap();
            let request_id = i32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let reply = OpMsgBuilder::new(&bson::rawdoc! { "ok": 1.0 })
                .response_to(request_id)
                .build()
                .unwrap();
            server.write_all(reply.as_bytes()).await.unwrap();
            server
        });
        conn.round_trip(ping()).await.unwrap();
        assert_eq!(conn.broken(), None);
        drop(serve.await.unwrap());
    }
}
