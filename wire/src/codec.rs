//! A tokio-util codec that cuts a byte stream into [`Frame`]s.
//!
//! The length prefix is checked as soon as its 4 bytes arrive and the op code as soon as the
//! header is complete, so a peer that claims a 2 GiB message, or sends garbage, is refused before
//! any buffer grows for it. A partial frame is `Ok(None)`: read more.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::Frame;
use crate::header::{HEADER_LEN, Header, check_length};
use crate::reader::get_i32;
use crate::{MAX_MESSAGE_SIZE, WireError};

/// How far ahead of the bytes at hand the decoder reserves buffer space for a frame it is
/// still receiving: large messages grow the buffer as they arrive, not on a claim.
const MAX_RESERVE_AHEAD: usize = 64 * 1024;

/// Frames MongoDB messages; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct MessageCodec {
    max_message_size: usize,
}

impl Default for MessageCodec {
    fn default() -> Self {
        Self {
            max_message_size: MAX_MESSAGE_SIZE,
        }
    }
}

impl MessageCodec {
    /// A codec that accepts messages of at most `max_message_size` bytes (header included).
    pub fn new(max_message_size: usize) -> Self {
        Self { max_message_size }
    }

    /// The size limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
}

impl Decoder for MessageCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = check_length(get_i32(src, 0), self.max_message_size)?;
        if src.len() >= HEADER_LEN {
            // Reject an unknown op code before waiting for the body.
            Header::parse(src, self.max_message_size)?;
        }
        if src.len() < length {
            src.reserve((length - src.len()).min(MAX_RESERVE_AHEAD));
            return Ok(None);
        }
        Frame::from_bytes(src.split_to(length), self.max_message_size).map(Some)
    }
}

impl Encoder<Frame> for MessageCodec {
    type Error = WireError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        dst.extend_from_slice(frame.as_bytes());
        Ok(())
    }
}

impl Encoder<&Frame> for MessageCodec {
    type Error = WireError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        dst.extend_from_slice(frame.as_bytes());
        Ok(())
    }
}
