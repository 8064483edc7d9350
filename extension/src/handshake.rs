//! The downstream handshake, answered locally: mongo-pool poses as a mongos, so drivers open
//! no monitoring connections to other hosts, keep retryable writes and sessions on, and send
//! every command to the socket. Limits and wire versions are copied from the upstream's own
//! `hello` (never invented once known); a handshake that arrives before any upstream member is
//! known waits for one, up to `serverSelectionTimeoutMS`.

use std::time::Instant;

use bson::oid::ObjectId;
use bson::{Document, doc};
use mongo_pool_wire::inspect::Command;

use crate::proxy::Proxy;
use crate::upstream::handshake::HelloReply;

/// `errmsg` of the error returned for `saslStart`, `saslContinue` and `authenticate`.
pub const AUTH_REJECTION: &str =
    "mongo-pool authenticates upstream; remove credentials from the connection string";

/// The reply to a `hello`/`isMaster` from a downstream driver.
pub async fn reply(proxy: &Proxy, command: &Command<'_>, connection_id: i64) -> Document {
    let deadline = Instant::now() + proxy.options.server_selection_timeout;
    match proxy.topology.any_hello(deadline).await {
        Some(upstream) => mongos_reply(command, connection_id, &upstream, proxy.service_id),
        None => doc! {
            "ok": 0.0,
            "errmsg": format!(
                "mongo-pool has not reached Atlas yet (members: {})",
                proxy.topology.describe()
            ),
            "code": 6,
            "codeName": "HostUnreachable",
        },
    }
}

/// The reply to `command` (a `hello`/`isMaster`) once an upstream member's `hello` is known:
/// a mongos with the member's limits and wire versions. Public for the fuzz targets.
pub fn mongos_reply(
    command: &Command<'_>,
    connection_id: i64,
    upstream: &HelloReply,
    service_id: ObjectId,
) -> Document {
    let mut out = Document::new();
    if command.hello_ok {
        out.insert("helloOk", true);
    }
    let writable = if command.name == "hello" {
        "isWritablePrimary"
    } else {
        "ismaster"
    };
    out.insert(writable, true);
    out.insert("msg", "isdbgrid");
    out.insert("maxBsonObjectSize", upstream.max_bson_object_size);
    out.insert("maxMessageSizeBytes", upstream.max_message_size_bytes);
    out.insert("maxWriteBatchSize", upstream.max_write_batch_size);
    out.insert("localTime", bson::DateTime::now());
    if let Some(minutes) = upstream.logical_session_timeout_minutes {
        out.insert("logicalSessionTimeoutMinutes", minutes);
    }
    out.insert("connectionId", connection_id);
    out.insert("minWireVersion", upstream.min_wire_version);
    out.insert("maxWireVersion", upstream.max_wire_version);
    out.insert("readOnly", false);
    if command.load_balanced {
        out.insert("serviceId", service_id);
    }
    out.insert("ok", 1.0);
    out
}

/// The error returned for authentication commands.
pub fn auth_rejection() -> Document {
    doc! { "ok": 0.0, "errmsg": AUTH_REJECTION, "code": 18, "codeName": "AuthenticationFailed" }
}
