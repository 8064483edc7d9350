//! [`Frame`]: one whole message as owned bytes, its header already checked. Header fields and
//! OP_MSG flag bits are edited in place, so a proxy forwards a body without re-encoding it.

use bytes::{Bytes, BytesMut};

use crate::compressed::OpCompressed;
use crate::header::{HEADER_LEN, Header, OpCode, check_length};
use crate::op_msg::{MsgFlags, OpMsg, crc32c_of};
use crate::op_query::OpQuery;
use crate::op_reply::OpReply;
use crate::reader::{get_i32, put_i32};
use crate::{MAX_MESSAGE_SIZE, WireError};

/// One complete message. Invariant (checked by every constructor): at least 16 bytes,
/// `messageLength` equals the byte count and lies within the size bound the frame was checked
/// against, and the op code is known.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: BytesMut,
    op_code: OpCode,
}

impl std::fmt::Debug for Frame {
    // Bodies may hold user data: show the header only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.bytes.len())
            .field("request_id", &self.request_id())
            .field("response_to", &self.response_to())
            .field("op_code", &self.op_code())
            .finish()
    }
}

impl Frame {
    /// Takes `bytes` as one message, checking its header against `max_message_size`.
    ///
    /// # Errors
    /// [`WireError::MessageLength`] when the length is out of range or differs from the byte
    /// count, [`WireError::Truncated`], [`WireError::UnknownOpCode`].
    pub fn from_bytes(bytes: BytesMut, max_message_size: usize) -> Result<Frame, WireError> {
        let header = Header::parse(&bytes, max_message_size)?;
        if usize::try_from(header.message_length).ok() != Some(bytes.len()) {
            return Err(WireError::MessageLength {
                length: i64::from(header.message_length),
                max: max_message_size,
            });
        }
        Ok(Frame {
            bytes,
            op_code: header.op_code,
        })
    }

    /// Builds a frame from a header's ids, an op code and the bytes after the header.
    ///
    /// # Errors
    /// [`WireError::MessageLength`] when the message would exceed `MAX_MESSAGE_SIZE`.
    pub fn build(
        request_id: i32,
        response_to: i32,
        op_code: OpCode,
        body: &[u8],
    ) -> Result<Frame, WireError> {
        let total = HEADER_LEN + body.len();
        let length = i32::try_from(total).unwrap_or(i32::MAX);
        check_length(length, MAX_MESSAGE_SIZE)?;
        let mut bytes = BytesMut::with_capacity(total);
        bytes.extend_from_slice(
            &Header {
                message_length: length,
                request_id,
                response_to,
                op_code,
            }
            .to_bytes(),
        );
        bytes.extend_from_slice(body);
        Ok(Frame { bytes, op_code })
    }

    /// Frames built by this crate's builders, whose layout is correct by construction.
    pub(crate) fn from_built(bytes: BytesMut, op_code: OpCode) -> Frame {
        Frame { bytes, op_code }
    }

    /// The parsed header.
    pub fn header(&self) -> Header {
        Header {
            message_length: get_i32(&self.bytes, 0),
            request_id: self.request_id(),
            response_to: self.response_to(),
            op_code: self.op_code(),
        }
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes after the header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// Gives up the bytes, e.g. to write them to a socket.
    pub fn into_bytes(self) -> Bytes {
        self.bytes.freeze()
    }

    /// Length of the whole message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a frame holds at least a header. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// `requestID`.
    pub fn request_id(&self) -> i32 {
        get_i32(&self.bytes, 4)
    }

    /// `responseTo`.
    pub fn response_to(&self) -> i32 {
        get_i32(&self.bytes, 8)
    }

    /// The op code.
    pub fn op_code(&self) -> OpCode {
        self.op_code
    }

    /// Rewrites `requestID` in place.
    pub fn set_request_id(&mut self, id: i32) {
        put_i32(&mut self.bytes, 4, id);
    }

    /// Rewrites `responseTo` in place.
    pub fn set_response_to(&mut self, id: i32) {
        put_i32(&mut self.bytes, 8, id);
    }

    /// Parses the frame as OP_MSG.
    ///
    /// # Errors
    /// [`WireError::WrongOpCode`] for another op code, else any malformation of the message.
    pub fn op_msg(&self) -> Result<OpMsg<'_>, WireError> {
        self.expect(OpCode::Msg, "OP_MSG")?;
        OpMsg::parse(&self.bytes)
    }

    /// Parses the frame as OP_QUERY.
    ///
    /// # Errors
    /// [`WireError::WrongOpCode`] for another op code, else any malformation of the message.
    pub fn op_query(&self) -> Result<OpQuery<'_>, WireError> {
        self.expect(OpCode::Query, "OP_QUERY")?;
        OpQuery::parse(self.body())
    }

    /// Parses the frame as OP_REPLY.
    ///
    /// # Errors
    /// [`WireError::WrongOpCode`] for another op code, else any malformation of the message.
    pub fn op_reply(&self) -> Result<OpReply<'_>, WireError> {
        self.expect(OpCode::Reply, "OP_REPLY")?;
        OpReply::parse(self.body())
    }

    /// Parses the frame as OP_COMPRESSED.
    ///
    /// # Errors
    /// [`WireError::WrongOpCode`] for another op code, else any malformation of the message.
    pub fn op_compressed(&self) -> Result<OpCompressed<'_>, WireError> {
        self.expect(OpCode::Compressed, "OP_COMPRESSED")?;
        OpCompressed::parse(self.body())
    }

    fn expect(&self, op: OpCode, name: &'static str) -> Result<(), WireError> {
        if self.op_code() == op {
            Ok(())
        } else {
            Err(WireError::WrongOpCode {
                expected: name,
                found: self.op_code().as_i32(),
            })
        }
    }

    /// The OP_MSG flag bits.
    ///
    /// # Errors
    /// [`WireError::WrongOpCode`] when the frame is not OP_MSG; [`WireError::Truncated`] when it
    /// has no flag word.
    pub fn msg_flags(&self) -> Result<MsgFlags, WireError> {
        self.expect(OpCode::Msg, "OP_MSG")?;
        if self.bytes.len() < HEADER_LEN + 4 {
            return Err(WireError::Truncated("flagBits"));
        }
        Ok(MsgFlags::from_bits(get_i32(&self.bytes, HEADER_LEN) as u32))
    }

    fn set_msg_flags(&mut self, flags: MsgFlags) {
        put_i32(&mut self.bytes, HEADER_LEN, flags.bits() as i32);
    }

    /// Clears `exhaustAllowed` so the peer answers once. Keeps a checksum valid by recomputing it,
    /// after checking the old one: a corrupt message is never re-signed into a valid one.
    /// On error the frame is left unchanged.
    ///
    /// # Errors
    /// As [`Frame::msg_flags`]; when the checksum flag is set, [`WireError::Truncated`] if the
    /// message is too short to hold a checksum and [`WireError::ChecksumMismatch`] if the checksum
    /// it carries is wrong.
    pub fn clear_exhaust_allowed(&mut self) -> Result<(), WireError> {
        let flags = self.msg_flags()?;
        if flags.contains(MsgFlags::EXHAUST_ALLOWED) {
            if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
                self.verify_checksum()?;
            }
            self.set_msg_flags(flags.without(MsgFlags::EXHAUST_ALLOWED));
            if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
                self.write_checksum();
            }
        }
        Ok(())
    }

    /// Checks the trailing checksum of a message whose checksum flag is set.
    fn verify_checksum(&self) -> Result<(), WireError> {
        if self.bytes.len() < HEADER_LEN + 8 {
            return Err(WireError::Truncated("checksum"));
        }
        let end = self.bytes.len() - 4;
        let expected = get_i32(&self.bytes, end) as u32;
        let actual = crc32c_of(&self.bytes[..end]);
        if expected == actual {
            Ok(())
        } else {
            Err(WireError::ChecksumMismatch { expected, actual })
        }
    }

    /// Removes a trailing checksum (and its flag) if present. Does not verify it.
    ///
    /// # Errors
    /// As [`Frame::msg_flags`], and [`WireError::Truncated`] when the message is too short to
    /// hold the checksum it claims.
    pub fn strip_checksum(&mut self) -> Result<(), WireError> {
        let flags = self.msg_flags()?;
        if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
            if self.bytes.len() < HEADER_LEN + 8 {
                return Err(WireError::Truncated("checksum"));
            }
            self.bytes.truncate(self.bytes.len() - 4);
            self.set_msg_flags(flags.without(MsgFlags::CHECKSUM_PRESENT));
            self.write_length();
        }
        Ok(())
    }

    /// Appends a CRC-32C checksum (and sets its flag), replacing any checksum already there
    /// without checking it. On error the frame is left unchanged.
    ///
    /// # Errors
    /// As [`Frame::strip_checksum`]; [`WireError::MessageLength`] when the four more bytes would
    /// take the message past `MAX_MESSAGE_SIZE`.
    pub fn append_checksum(&mut self) -> Result<(), WireError> {
        if !self.msg_flags()?.contains(MsgFlags::CHECKSUM_PRESENT) {
            // Four more bytes must still fit the size limit.
            let length = i32::try_from(self.bytes.len() + 4).unwrap_or(i32::MAX);
            check_length(length, MAX_MESSAGE_SIZE)?;
        }
        self.strip_checksum()?;
        let flags = self.msg_flags()?;
        self.set_msg_flags(flags.with(MsgFlags::CHECKSUM_PRESENT));
        self.bytes.extend_from_slice(&[0; 4]);
        self.write_length();
        self.write_checksum();
        Ok(())
    }

    fn write_length(&mut self) {
        let len = i32::try_from(self.bytes.len()).unwrap_or(i32::MAX);
        put_i32(&mut self.bytes, 0, len);
    }

    fn write_checksum(&mut self) {
        let end = self.bytes.len() - 4;
        let crc = crc32c_of(&self.bytes[..end]);
        self.bytes[end..].copy_from_slice(&crc.to_le_bytes());
    }
}
