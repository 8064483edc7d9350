//! mongo-pool-wire: the MongoDB wire protocol as pure code over bytes.
//!
//! This crate never touches a socket or a runtime. Bytes arrive through [`codec::MessageCodec`],
//! which cuts them into [`Frame`]s after checking the header (length within bounds before any
//! allocation, a known op code). A frame is parsed on demand into a typed view
//! ([`OpMsg`], [`OpQuery`], [`OpReply`], [`OpCompressed`]) that borrows from its bytes, and the
//! command or reply inside is read without copying by [`inspect::Command`] and
//! [`inspect::Reply`]. [`validate`] checks a whole document from an untrusted peer, nesting
//! included, without recursion. Headers and flag bits are edited in place ([`Frame::set_request_id`],
//! [`Frame::clear_exhaust_allowed`], [`Frame::strip_checksum`]) so a proxy forwards a body
//! without re-encoding it.
#![forbid(unsafe_code)]

pub mod codec;
pub mod compressed;
mod error;
mod frame;
mod header;
pub mod inspect;
mod op_msg;
mod op_query;
mod op_reply;
mod reader;
pub mod validate;

pub use compressed::{Compressor, OpCompressed};
pub use error::WireError;
pub use frame::Frame;
pub use header::{HEADER_LEN, Header, OpCode};
pub use op_msg::{DocumentSequence, MsgFlags, OpMsg, OpMsgBuilder};
pub use op_query::{OpQuery, OpQueryBuilder};
pub use op_reply::{OpReply, OpReplyBuilder};

/// The largest BSON document a server accepts (`maxBsonObjectSize`).
pub const MAX_BSON_OBJECT_SIZE: usize = 16 * 1024 * 1024;
/// The largest message a server accepts (`maxMessageSizeBytes`).
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;
/// The most writes a server accepts in one batch (`maxWriteBatchSize`).
pub const MAX_WRITE_BATCH_SIZE: usize = 100_000;
