//! The upstream side (Atlas): establishing authenticated connections ([`connect`]), the
//! connection itself ([`connection`]), the `hello` handshake ([`handshake`]), the MONGODB-AWS
//! conversation, the AWS credentials it signs with and the STS diagnosis ([`auth`]).

pub mod auth;
pub mod connect;
pub mod connection;
pub mod handshake;

use bson::{Bson, Document};

/// Whether a reply says `ok: 1` (servers send a double; ints and booleans are accepted).
pub fn reply_ok(reply: &Document) -> bool {
    match reply.get("ok") {
        Some(Bson::Double(v)) => *v == 1.0,
        Some(Bson::Int32(v)) => *v == 1,
        Some(Bson::Int64(v)) => *v == 1,
        Some(Bson::Boolean(b)) => *b,
        _ => false,
    }
}
