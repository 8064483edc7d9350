//! The 16-byte message header and the op codes this crate accepts.

use crate::WireError;
use crate::reader::get_i32;

/// Length of the standard message header.
pub const HEADER_LEN: usize = 16;

/// The op codes a current MongoDB deployment uses. Legacy op codes (OP_INSERT, OP_GET_MORE, ...)
/// were removed from servers in 6.0 and are rejected as unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// OP_REPLY (1): the reply to an OP_QUERY handshake.
    Reply,
    /// OP_QUERY (2004): only the first `hello`/`isMaster` of some drivers.
    Query,
    /// OP_COMPRESSED (2012): a compressed OP_MSG, OP_QUERY or OP_REPLY.
    Compressed,
    /// OP_MSG (2013): every command and reply.
    Msg,
}

impl OpCode {
    /// The op code's number on the wire.
    pub const fn as_i32(self) -> i32 {
        match self {
            OpCode::Reply => 1,
            OpCode::Query => 2004,
            OpCode::Compressed => 2012,
            OpCode::Msg => 2013,
        }
    }

    /// The op code for a number.
    ///
    /// # Errors
    /// [`WireError::UnknownOpCode`] for any other number.
    pub const fn from_i32(v: i32) -> Result<Self, WireError> {
        match v {
            1 => Ok(OpCode::Reply),
            2004 => Ok(OpCode::Query),
            2012 => Ok(OpCode::Compressed),
            2013 => Ok(OpCode::Msg),
            other => Err(WireError::UnknownOpCode(other)),
        }
    }
}

/// The message header: four little-endian int32s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole message, header included.
    pub message_length: i32,
    /// The sender's identifier for this message.
    pub request_id: i32,
    /// For a reply, the `request_id` of the request it answers; else 0.
    pub response_to: i32,
    /// What follows the header.
    pub op_code: OpCode,
}

impl Header {
    /// Reads and checks a header: `messageLength` within `[16, max_message_size]` and a known
    /// op code. Checks the length first, so a bad length is reported even when fewer than 16
    /// bytes are at hand (at least 4 are needed).
    ///
    /// # Errors
    /// [`WireError::Truncated`] with fewer than 16 bytes (or 4 for the length alone),
    /// [`WireError::MessageLength`], [`WireError::UnknownOpCode`].
    pub fn parse(bytes: &[u8], max_message_size: usize) -> Result<Header, WireError> {
        if bytes.len() < 4 {
            return Err(WireError::Truncated("header"));
        }
        let message_length = get_i32(bytes, 0);
        check_length(message_length, max_message_size)?;
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated("header"));
        }
        Ok(Header {
            message_length,
            request_id: get_i32(bytes, 4),
            response_to: get_i32(bytes, 8),
            op_code: OpCode::from_i32(get_i32(bytes, 12))?,
        })
    }

    /// The header's 16 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.message_length.to_le_bytes());
        out[4..8].copy_from_slice(&self.request_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.response_to.to_le_bytes());
        out[12..16].copy_from_slice(&self.op_code.as_i32().to_le_bytes());
        out
    }
}

/// Checks a claimed `messageLength` against `[16, max]`.
pub(crate) fn check_length(length: i32, max: usize) -> Result<usize, WireError> {
    match usize::try_from(length) {
        Ok(len) if (HEADER_LEN..=max).contains(&len) => Ok(len),
        _ => Err(WireError::MessageLength {
            length: i64::from(length),
            max,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_length_accepts_exactly_sixteen_to_max() {
        assert_eq!(check_length(16, 100).unwrap(), 16);
        assert_eq!(check_length(100, 100).unwrap(), 100);
        for bad in [i32::MIN, -1, 0, 15, 101, i32::MAX] {
            assert!(
                matches!(check_length(bad, 100), Err(WireError::MessageLength { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn header_round_trips_through_its_bytes() {
        for op_code in [
            OpCode::Reply,
            OpCode::Query,
            OpCode::Compressed,
            OpCode::Msg,
        ] {
            let header = Header {
                message_length: 1000,
                request_id: -5,
                response_to: 77,
                op_code,
            };
            assert_eq!(Header::parse(&header.to_bytes(), 1000).unwrap(), header);
        }
    }

    #[test]
    fn a_bad_length_is_reported_before_the_header_is_complete() {
        assert!(matches!(
            Header::parse(&[8, 0, 0, 0], 100),
            Err(WireError::MessageLength { .. })
        ));
        assert!(matches!(
            Header::parse(&[20, 0, 0, 0], 100),
            Err(WireError::Truncated(_))
        ));
        assert!(matches!(
            Header::parse(&[20, 0, 0], 100),
            Err(WireError::Truncated(_))
        ));
    }
}
