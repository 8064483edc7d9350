//! Shared pieces of the downstream integration tests: atlas-sim with the key these tests use,
//! the `mongo-pool` binary in front of it (a real sidecar process), the Rust `mongodb` driver
//! on its socket, and raw wire-protocol exchanges over a `UnixStream`.
//!
//! Each `downstream_*.rs` file declares `mod downstream_support { pub mod rig; }`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{Context as _, bail};
use bson::{Document, RawDocumentBuf};
use futures_util::{SinkExt as _, StreamExt as _};
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::AtlasSim;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{Frame, OpCode, OpMsgBuilder, OpQueryBuilder};
use serde_json::Value;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

/// The long-term key atlas-sim knows (`--principal`).
pub const KEY_ID: &str = "AKIDDOWNSTREAMTEST";
/// Its secret.
pub const SECRET: &str = "downstream-test-secret";

/// The AWS credentials mongo-pool authenticates with.
pub const AWS_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
];

/// How long one exchange on a raw stream may take.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// Starts atlas-sim verifying [`KEY_ID`]/[`SECRET`] locally, plus `args`.
pub async fn sim(args: &[&str]) -> AtlasSim {
    let principal = format!("{KEY_ID}:{SECRET}");
    let mut all = vec!["--principal", principal.as_str()];
    all.extend_from_slice(args);
    AtlasSim::start(&all).await.expect("atlas-sim starts")
}

/// `uri` with `options` (`a=1&b=2`) appended.
pub fn uri_with(uri: &str, options: &str) -> String {
    if options.is_empty() {
        return uri.to_owned();
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{options}")
}

/// mongo-pool in front of `sim`, with `uri_options` added to the Atlas URI and `extra_env`
/// (after the AWS credentials).
pub async fn pool(sim: &AtlasSim, uri_options: &str, extra_env: &[(&str, &str)]) -> MongoPool {
    let uri = uri_with(&sim.start.uri, uri_options);
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.extend_from_slice(extra_env);
    MongoPool::start(&uri, &env)
        .await
        .expect("mongo-pool starts")
}

/// A `mongodb` client on mongo-pool's socket with `options` (`a=1&b=2`) in its URI.
pub async fn client(pool: &MongoPool, options: &str) -> mongodb::Client {
    let uri = uri_with(&format!("{}/", pool.socket_uri()), options);
    mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("a client for {uri}: {e}"))
}

/// `/status` members.*.connections.<field>, by member.
pub fn connections(status: &Value, field: &str) -> Vec<(String, u64)> {
    status["members"]
        .as_object()
        .expect("members in /status")
        .iter()
        .map(|(k, m)| {
            let n = m["connections"][field]
                .as_u64()
                .unwrap_or_else(|| panic!("no connections.{field} for {k} in {status}"));
            (k.clone(), n)
        })
        .collect()
}

/// Σ over members of connections.total_created.
pub fn total_created(status: &Value) -> u64 {
    connections(status, "total_created")
        .iter()
        .map(|(_, n)| n)
        .sum()
}

/// `/status` auth.successful.
pub fn auth_successful(status: &Value) -> u64 {
    status["auth"]["successful"]
        .as_u64()
        .unwrap_or_else(|| panic!("no auth.successful in {status}"))
}

/// A raw downstream connection speaking the wire protocol through the codec.
pub struct Raw {
    framed: Framed<UnixStream, MessageCodec>,
    next_id: i32,
}

impl Raw {
    /// Connects to `pool`'s socket.
    pub async fn connect(pool: &MongoPool) -> Raw {
        let stream = UnixStream::connect(pool.socket_path())
            .await
            .expect("the socket accepts");
        Raw {
            framed: Framed::new(stream, MessageCodec::default()),
            next_id: 100,
        }
    }

    fn request_id(&mut self) -> i32 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `frame` and reads one reply (within [`EXCHANGE_LIMIT`]).
    pub async fn exchange(&mut self, frame: Frame) -> anyhow::Result<Frame> {
        self.framed.send(frame).await?;
        match tokio::time::timeout(EXCHANGE_LIMIT, self.framed.next()).await {
            Err(_) => bail!("no reply within {EXCHANGE_LIMIT:?}"),
            Ok(None) => bail!("the connection closed instead of replying"),
            Ok(Some(reply)) => Ok(reply?),
        }
    }

    /// Sends `body` as an OP_MSG; returns the reply's body, after checking it is an OP_MSG
    /// answering this request.
    pub async fn command(&mut self, body: &Document) -> anyhow::Result<Document> {
        let raw = RawDocumentBuf::try_from(body)?;
        let id = self.request_id();
        let frame = OpMsgBuilder::new(&raw).request_id(id).build()?;
        let reply = self.exchange(frame).await?;
        anyhow::ensure!(
            reply.op_code() == OpCode::Msg,
            "expected an OP_MSG reply, got {:?}",
            reply.op_code()
        );
        anyhow::ensure!(
            reply.response_to() == id,
            "responseTo {} != requestID {id}",
            reply.response_to()
        );
        let msg = reply.op_msg()?;
        anyhow::ensure!(msg.checksum.is_none(), "a reply carries a checksum");
        anyhow::ensure!(msg.sequences.is_empty(), "a reply carries a kind-1 section");
        Ok(Document::try_from(msg.body)?)
    }

    /// Sends `query` as an OP_QUERY on `admin.$cmd`; returns the OP_REPLY's single document,
    /// after checking the reply shape.
    pub async fn legacy_command(&mut self, query: &Document) -> anyhow::Result<Document> {
        let raw = RawDocumentBuf::try_from(query)?;
        let id = self.request_id();
        let frame = OpQueryBuilder::new("admin.$cmd", &raw)
            .request_id(id)
            .build()?;
        let reply = self.exchange(frame).await?;
        anyhow::ensure!(
            reply.op_code() == OpCode::Reply,
            "expected an OP_REPLY, got {:?}",
            reply.op_code()
        );
        anyhow::ensure!(
            reply.response_to() == id,
            "responseTo {} != requestID {id}",
            reply.response_to()
        );
        let op_reply = reply.op_reply()?;
        anyhow::ensure!(op_reply.cursor_id == 0, "cursorID {}", op_reply.cursor_id);
        anyhow::ensure!(
            op_reply.documents.len() == 1,
            "{} documents",
            op_reply.documents.len()
        );
        Ok(Document::try_from(op_reply.documents[0])?)
    }
}

/// `mongoPoolStats` through a raw connection.
pub async fn pool_stats(pool: &MongoPool) -> Document {
    let mut raw = Raw::connect(pool).await;
    raw.command(&bson::doc! { "mongoPoolStats": 1, "$db": "admin" })
        .await
        .context("mongoPoolStats")
        .unwrap()
}
