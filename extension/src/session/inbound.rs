//! Reading whole messages from one downstream connection within the shared buffer budget.
//!
//! The 16-byte header comes first: its length and op code are checked as soon as they arrive,
//! so a claimed 2 GiB message or garbage is refused before anything is allocated for it. Then
//! the message's bytes are reserved from the [`BufferBudget`] (waiting while other requests hold
//! it; small messages do not wait), and only then is the body read. The reservation travels with the message and is released
//! when its request is done.
//!
//! While a request is in flight, [`Inbound::closed`] watches the connection for the driver
//! closing it: whatever arrives meanwhile (a pipelined `moreToCome` message) is kept, up to
//! [`AHEAD_LIMIT`] bytes, and read as the next message.
//!
//! OP_COMPRESSED is refused at its header: mongo-pool offers no compression in its `hello`, so a
//! driver has no reason to send it, and nothing is ever inflated on the downstream side.

use std::time::Instant;

use bytes::BytesMut;
use mongo_pool_wire::{Frame, HEADER_LEN, Header, OpCode, WireError};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::proxy::{BufferBudget, Reservation};

/// How long [`Inbound::discard_pending`] reads before a connection closed as malformed.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_millis(50);
/// How much it reads at most.
const DISCARD_BYTES: usize = 1024 * 1024;
/// How many bytes of later messages [`Inbound::closed`] keeps while a request is in flight;
/// with that many waiting it stops reading (and so stops watching) until the next message is
/// read.
pub(super) const AHEAD_LIMIT: usize = 64 * 1024;

/// Why no message came.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// The driver closed the connection between messages.
    #[error("the connection was closed")]
    Closed,
    /// Reading failed between messages.
    #[error("downstream read failed: {0}")]
    Io(#[source] std::io::Error),
    /// The connection ended, or failed, part-way through a message.
    #[error("the connection ended in the middle of a message ({0})")]
    Truncated(String),
    /// The header is not one mongo-pool accepts.
    #[error(transparent)]
    Malformed(WireError),
    /// OP_COMPRESSED, which mongo-pool never offered.
    #[error(
        "OP_COMPRESSED from a driver: mongo-pool offers no compression in its hello and accepts \
         none (remove `compressors` from the function's connection string)"
    )]
    Compressed,
}

/// A message being received: its bytes so far and its share of the budget.
struct Body {
    bytes: BytesMut,
    length: usize,
    permit: Reservation,
}

/// The read side of a downstream connection.
pub(super) struct Inbound<R> {
    stream: R,
    max_message_size: usize,
    header: [u8; HEADER_LEN],
    header_len: usize,
    body: Option<Body>,
    receiving_since: Option<Instant>,
    /// Bytes read by [`Inbound::closed`], not yet part of a message.
    ahead: BytesMut,
}

impl<R: AsyncRead + Unpin> Inbound<R> {
    /// Reads messages of at most `max_message_size` bytes from `stream`.
    pub(super) fn new(stream: R, max_message_size: usize) -> Self {
        Inbound {
            stream,
            max_message_size,
            header: [0; HEADER_LEN],
            header_len: 0,
            body: None,
            receiving_since: None,
            ahead: BytesMut::new(),
        }
    }

    /// Since when the driver has been sending the current message (or, after a wait for the
    /// budget, since reading resumed): `None` between messages and while waiting for the budget,
    /// which is no fault of the driver's.
    pub(super) fn receiving_since(&self) -> Option<Instant> {
        self.receiving_since
    }

    /// Bytes of the current message read so far (those read ahead included).
    pub(super) fn partial_len(&self) -> usize {
        self.ahead.len()
            + self
                .body
                .as_ref()
                .map_or(self.header_len, |body| body.bytes.len())
    }

    /// Returns when the driver closes the connection or reading from it fails, which while a
    /// request is in flight means the driver gave up on it. Bytes that arrive meanwhile are
    /// kept for [`Inbound::next`]; once [`AHEAD_LIMIT`] of them wait it reads no more and never
    /// returns. Cancel-safe: nothing read is lost.
    pub(super) async fn closed(&mut self) {
        while self.ahead.len() < AHEAD_LIMIT {
            let room = AHEAD_LIMIT - self.ahead.len();
            self.ahead.reserve(room.min(8192));
            match (&mut self.stream)
                .take(room as u64)
                .read_buf(&mut self.ahead)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        std::future::pending::<()>().await;
    }

    /// The next whole message, with its reservation of the budget (release it when the request
    /// is done). Cancel-safe: bytes read so far stay here for the next call, and a wait for the
    /// budget that is cancelled reserves nothing.
    pub(super) async fn next(
        &mut self,
        budget: &BufferBudget,
    ) -> Result<(Frame, Reservation), ReadError> {
        if self.body.is_none() {
            let length = self.read_header().await?;
            self.receiving_since = None;
            let permit = budget.reserve(length).await;
            let mut bytes = BytesMut::with_capacity(length);
            bytes.extend_from_slice(&self.header);
            self.body = Some(Body {
                bytes,
                length,
                permit,
            });
            self.receiving_since = Some(Instant::now());
        }
        let Inbound {
            stream,
            body,
            ahead,
            ..
        } = self;
        if let Some(body) = body.as_mut() {
            while body.bytes.len() < body.length {
                let remaining = body.length - body.bytes.len();
                if !ahead.is_empty() {
                    let n = remaining.min(ahead.len());
                    body.bytes.extend_from_slice(&ahead.split_to(n));
                    continue;
                }
                let remaining = remaining as u64;
                match (&mut *stream)
                    .take(remaining)
                    .read_buf(&mut body.bytes)
                    .await
                {
                    Ok(0) => return Err(ReadError::Truncated("end of stream".into())),
                    Ok(_) => {}
                    Err(e) => return Err(ReadError::Truncated(e.to_string())),
                }
            }
        }
        self.header_len = 0;
        self.receiving_since = None;
        let Some(Body { bytes, permit, .. }) = self.body.take() else {
            return Err(ReadError::Truncated("no message".into()));
        };
        let frame =
            Frame::from_bytes(bytes, self.max_message_size).map_err(ReadError::Malformed)?;
        Ok((frame, permit))
    }

    /// Reads and drops what the peer has already sent, for at most [`DISCARD_TIME`] and
    /// [`DISCARD_BYTES`]: a socket closed with unread bytes resets the connection, and the peer
    /// would read a reset instead of the end-of-file that says "closed on purpose".
    pub(super) async fn discard_pending(&mut self) {
        let mut scratch = [0u8; 8192];
        let mut dropped = 0;
        let drain = async {
            while dropped < DISCARD_BYTES {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => dropped += n,
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
    }

    /// Reads the rest of the header, checking the length once it is there and the op code once
    /// the header is whole; returns the message's length.
    async fn read_header(&mut self) -> Result<usize, ReadError> {
        while self.header_len < HEADER_LEN {
            let read = if self.ahead.is_empty() {
                self.stream.read(&mut self.header[self.header_len..]).await
            } else {
                let n = (HEADER_LEN - self.header_len).min(self.ahead.len());
                self.header[self.header_len..self.header_len + n]
                    .copy_from_slice(&self.ahead.split_to(n));
                Ok(n)
            };
            let n = match read {
                Ok(n) => n,
                Err(e) if self.header_len == 0 => return Err(ReadError::Io(e)),
                Err(e) => return Err(ReadError::Truncated(e.to_string())),
            };
            if n == 0 {
                return Err(if self.header_len == 0 {
                    ReadError::Closed
                } else {
                    ReadError::Truncated("end of stream".into())
                });
            }
            if self.header_len == 0 {
                self.receiving_since = Some(Instant::now());
            }
            self.header_len += n;
            match Header::parse(&self.header[..self.header_len], self.max_message_size) {
                Ok(header) if header.op_code == OpCode::Compressed => {
                    return Err(ReadError::Compressed);
                }
                Ok(_) | Err(WireError::Truncated(_)) => {}
                Err(e) => return Err(ReadError::Malformed(e)),
            }
        }
        let header =
            Header::parse(&self.header, self.max_message_size).map_err(ReadError::Malformed)?;
        usize::try_from(header.message_length).map_err(|_| {
            ReadError::Malformed(WireError::MessageLength {
                length: i64::from(header.message_length),
                max: self.max_message_size,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongo_pool_wire::OpMsgBuilder;
    use tokio::io::AsyncWriteExt as _;

    fn ping() -> Vec<u8> {
        let body = bson::rawdoc! { "ping": 1, "$db": "admin" };
        OpMsgBuilder::new(&body)
            .request_id(3)
            .build()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn messages_arrive_whole_each_with_its_share_of_the_budget() {
        let (mut tx, rx) = tokio::io::duplex(8);
        let mut inbound = Inbound::new(rx, 1 << 20);
        let budget = BufferBudget::new(1 << 20);
        let bytes = ping();
        let writer = tokio::spawn(async move {
            let mut two = bytes.clone();
            two.extend_from_slice(&bytes);
            tx.write_all(&two).await.unwrap();
        });
        let (frame, permit) = inbound.next(&budget).await.unwrap();
        assert_eq!(frame.as_bytes(), ping().as_slice());
        drop(permit);
        let (second, _permit) = inbound.next(&budget).await.unwrap();
        assert_eq!(second.request_id(), 3);
        writer.await.unwrap();
        assert!(matches!(
            inbound.next(&budget).await,
            Err(ReadError::Closed)
        ));
    }

    /// A ping padded past [`crate::proxy::SMALL_MESSAGE`].
    fn large_ping() -> Vec<u8> {
        let pad = "x".repeat(crate::proxy::SMALL_MESSAGE);
        let body = bson::rawdoc! { "ping": 1, "$db": "admin", "pad": pad };
        OpMsgBuilder::new(&body)
            .build()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_large_message_waits_for_the_budget_before_its_body_is_read() {
        let bytes = large_ping();
        let (mut tx, rx) = tokio::io::duplex(bytes.len());
        let mut inbound = Inbound::new(rx, 1 << 20);
        let budget = BufferBudget::new(bytes.len());
        let held = budget.reserve(crate::proxy::SMALL_MESSAGE + 1).await;
        tx.write_all(&bytes).await.unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), inbound.next(&budget)).await;
        assert!(waited.is_err(), "most of the budget is held elsewhere");
        assert_eq!(
            inbound.partial_len(),
            HEADER_LEN,
            "only the header was read"
        );
        assert!(
            inbound.receiving_since().is_none(),
            "waiting is not stalling"
        );
        drop(held);
        let (frame, _permit) = inbound.next(&budget).await.unwrap();
        assert_eq!(frame.as_bytes(), bytes.as_slice());
    }

    #[tokio::test]
    async fn bytes_read_while_watching_are_the_next_message_and_only_the_end_returns() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut inbound = Inbound::new(rx, 1 << 20);
        let budget = BufferBudget::new(1 << 20);
        tx.write_all(&ping()).await.unwrap();
        let watched =
            tokio::time::timeout(std::time::Duration::from_millis(50), inbound.closed()).await;
        assert!(watched.is_err(), "a pipelined message is not the end");
        assert_eq!(inbound.partial_len(), ping().len());
        drop(tx);
        tokio::time::timeout(std::time::Duration::from_secs(5), inbound.closed())
            .await
            .expect("the end of the stream is seen");
        let (frame, _permit) = inbound.next(&budget).await.unwrap();
        assert_eq!(frame.as_bytes(), ping().as_slice());
        assert!(matches!(
            inbound.next(&budget).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn op_compressed_is_refused_at_its_header_and_bad_headers_before_their_body() {
        let budget = BufferBudget::new(1 << 20);
        let mut compressed = 40i32.to_le_bytes().to_vec();
        compressed.extend_from_slice(&[0; 8]);
        compressed.extend_from_slice(&2012i32.to_le_bytes());
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&compressed).await.unwrap();
        let mut inbound = Inbound::new(rx, 1 << 20);
        assert!(matches!(
            inbound.next(&budget).await,
            Err(ReadError::Compressed)
        ));
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&i32::MAX.to_le_bytes()).await.unwrap();
        let mut inbound = Inbound::new(rx, 1 << 20);
        assert!(matches!(
            inbound.next(&budget).await,
            Err(ReadError::Malformed(WireError::MessageLength { .. }))
        ));
        assert_eq!(budget.available(), 1 << 20);
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&ping()[..20]).await.unwrap();
        drop(tx);
        let mut inbound = Inbound::new(rx, 1 << 20);
        assert!(matches!(
            inbound.next(&budget).await,
            Err(ReadError::Truncated(_))
        ));
    }
}
