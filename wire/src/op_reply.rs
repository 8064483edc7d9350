//! OP_REPLY (1), the answer to an OP_QUERY: `i32 responseFlags | i64 cursorID |
//! i32 startingFrom | i32 numberReturned | documents`.

use bson::RawDocument;
use bytes::BytesMut;

use crate::WireError;
use crate::frame::Frame;
use crate::header::OpCode;
use crate::reader::Reader;

/// A parsed OP_REPLY, borrowing from its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct OpReply<'a> {
    /// `responseFlags` (bit 0 CursorNotFound, bit 1 QueryFailure, bit 3 AwaitCapable).
    pub flags: i32,
    /// `cursorID`; 0 for command replies.
    pub cursor_id: i64,
    /// `startingFrom`.
    pub starting_from: i32,
    /// The documents; `numberReturned` of them.
    pub documents: Vec<&'a RawDocument>,
}

impl<'a> OpReply<'a> {
    /// Parses the bytes after the header.
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::Overrun`] (negative count, or bytes left over),
    /// [`WireError::Bson`].
    pub fn parse(body: &'a [u8]) -> Result<OpReply<'a>, WireError> {
        let mut reader = Reader::new(body);
        let flags = reader.i32("responseFlags")?;
        let cursor_id = reader.i64("cursorID")?;
        let starting_from = reader.i32("startingFrom")?;
        let number_returned = reader.i32("numberReturned")?;
        let count = usize::try_from(number_returned).map_err(|_| WireError::Overrun("OP_REPLY"))?;
        // Each document takes at least 5 bytes: a count larger than that is a lie.
        if count > reader.remaining() / 5 {
            return Err(WireError::Truncated("OP_REPLY documents"));
        }
        let mut documents = Vec::with_capacity(count);
        for _ in 0..count {
            documents.push(reader.document("OP_REPLY document")?);
        }
        if !reader.is_empty() {
            return Err(WireError::Overrun("OP_REPLY"));
        }
        Ok(OpReply {
            flags,
            cursor_id,
            starting_from,
            documents,
        })
    }
}

/// Builds an OP_REPLY frame: a command reply (cursor 0, one document) unless told otherwise.
#[derive(Debug, Clone)]
pub struct OpReplyBuilder<'a> {
    request_id: i32,
    response_to: i32,
    flags: i32,
    cursor_id: i64,
    documents: Vec<&'a RawDocument>,
}

impl<'a> OpReplyBuilder<'a> {
    /// A reply carrying `documents`.
    pub fn new(documents: Vec<&'a RawDocument>) -> Self {
        Self {
            request_id: 0,
            response_to: 0,
            flags: 0,
            cursor_id: 0,
            documents,
        }
    }
    /// Sets `requestID`.
    #[must_use]
    pub fn request_id(mut self, id: i32) -> Self {
        self.request_id = id;
        self
    }
    /// Sets `responseTo`.
    #[must_use]
    pub fn response_to(mut self, id: i32) -> Self {
        self.response_to = id;
        self
    }
    /// Sets `responseFlags`.
    #[must_use]
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
    /// Sets `cursorID`.
    #[must_use]
    pub fn cursor_id(mut self, id: i64) -> Self {
        self.cursor_id = id;
        self
    }

    /// Encodes the message.
    ///
    /// # Errors
    /// [`WireError::MessageLength`] when the message is too large.
    pub fn build(self) -> Result<Frame, WireError> {
        let mut body = BytesMut::new();
        body.extend_from_slice(&self.flags.to_le_bytes());
        body.extend_from_slice(&self.cursor_id.to_le_bytes());
        body.extend_from_slice(&0i32.to_le_bytes());
        let count = i32::try_from(self.documents.len()).unwrap_or(i32::MAX);
        body.extend_from_slice(&count.to_le_bytes());
        for doc in &self.documents {
            body.extend_from_slice(doc.as_bytes());
        }
        Frame::build(self.request_id, self.response_to, OpCode::Reply, &body)
    }
}
