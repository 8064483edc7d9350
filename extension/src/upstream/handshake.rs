//! The upstream handshake: the `hello` mongo-pool sends on every new upstream connection
//! (OP_MSG, with client metadata that says who is connecting and, in Lambda, the FaaS `env`
//! block), and the parts of the server's reply that the pool and the topology keep.

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};

use crate::config::FaasEnv;

/// The most a `client` metadata document may take (handshake spec).
pub const MAX_CLIENT_METADATA: usize = 512;
/// The driver name mongo-pool announces.
pub const DRIVER_NAME: &str = "mongo-pool";

/// Builds the `client` metadata document, trimmed to fit [`MAX_CLIENT_METADATA`] the way the
/// handshake spec says: first the `env` block's optional fields, then `platform`, then `env`.
pub fn client_metadata(app_name: Option<&str>, faas: Option<&FaasEnv>) -> Document {
    let mut env = faas.map(|f| {
        let mut env = doc! { "name": "aws.lambda" };
        if let Some(memory) = f.memory_mb {
            env.insert("memory_mb", i32::try_from(memory).unwrap_or(i32::MAX));
        }
        if let Some(region) = &f.region {
            env.insert("region", region.clone());
        }
        env
    });
    let build = |env: &Option<Document>, platform: bool| {
        let mut out = Document::new();
        if let Some(name) = app_name {
            out.insert("application", doc! { "name": name });
        }
        out.insert(
            "driver",
            doc! { "name": DRIVER_NAME, "version": env!("CARGO_PKG_VERSION") },
        );
        out.insert(
            "os",
            doc! { "type": std::env::consts::OS, "architecture": std::env::consts::ARCH },
        );
        if platform {
            out.insert(
                "platform",
                format!("Rust tokio ({})", env!("CARGO_PKG_NAME")),
            );
        }
        if let Some(env) = env {
            out.insert("env", env.clone());
        }
        out
    };
    let size = |d: &Document| d.to_vec().map(|v| v.len()).unwrap_or(usize::MAX);
    let full = build(&env, true);
    if size(&full) <= MAX_CLIENT_METADATA {
        return full;
    }
    if env.is_some() {
        env = Some(doc! { "name": "aws.lambda" });
    }
    let trimmed = build(&env, true);
    if size(&trimmed) <= MAX_CLIENT_METADATA {
        return trimmed;
    }
    build(&None, false)
}

/// The `hello` command of a new connection.
pub fn hello_command(client: &Document) -> Document {
    doc! { "hello": 1, "helloOk": true, "client": client.clone(), "$db": "admin" }
}

/// The `hello` of a later check on an established connection (no metadata).
pub fn recheck_command() -> Document {
    doc! { "hello": 1, "$db": "admin" }
}

/// What a server is, as its `hello` says (server discovery and monitoring spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The replica set's writable primary.
    Primary,
    /// A readable secondary.
    Secondary,
    /// Any other replica-set member (arbiter, hidden, recovering).
    OtherMember,
    /// A mongos router.
    Mongos,
    /// A standalone server (not what Atlas runs; accepted for completeness).
    Standalone,
}

/// The parts of a `hello` reply mongo-pool keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct HelloReply {
    /// What the server is.
    pub kind: ServerKind,
    /// `setName`.
    pub set_name: Option<String>,
    /// `hosts` (plus `passives`), as the server names them.
    pub hosts: Vec<String>,
    /// `primary`, as the server names it.
    pub primary: Option<String>,
    /// `me`.
    pub me: Option<String>,
    /// `electionId`.
    pub election_id: Option<ObjectId>,
    /// `setVersion`.
    pub set_version: Option<i64>,
    /// `minWireVersion`.
    pub min_wire_version: i32,
    /// `maxWireVersion`.
    pub max_wire_version: i32,
    /// `maxBsonObjectSize`.
    pub max_bson_object_size: i32,
    /// `maxMessageSizeBytes`.
    pub max_message_size_bytes: i32,
    /// `maxWriteBatchSize`.
    pub max_write_batch_size: i32,
    /// `logicalSessionTimeoutMinutes`.
    pub logical_session_timeout_minutes: Option<i32>,
    /// `connectionId`.
    pub connection_id: Option<i64>,
}

/// Why a `hello` reply could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum HelloError {
    /// `ok: 0`.
    #[error("hello failed: {0}")]
    Failed(String),
    /// The server's wire versions do not overlap mongo-pool's (MongoDB 4.4 or later is needed).
    #[error(
        "server speaks wire versions {min}..={max}; mongo-pool needs {MIN_WIRE_VERSION} or later (MongoDB 4.4+)"
    )]
    WireVersion { min: i32, max: i32 },
}

/// The oldest wire version mongo-pool forwards to (MongoDB 4.4, as pymongo and Node need).
pub const MIN_WIRE_VERSION: i32 = 9;

fn int(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

fn int32(doc: &Document, key: &str, default: i32) -> i32 {
    int(doc, key)
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(default)
}

fn truthy(doc: &Document, key: &str) -> bool {
    match doc.get(key) {
        Some(Bson::Boolean(b)) => *b,
        Some(other) => {
            matches!(other, Bson::Int32(v) if *v != 0)
                || matches!(other, Bson::Int64(v) if *v != 0)
                || matches!(other, Bson::Double(v) if *v != 0.0)
        }
        None => false,
    }
}

fn strings(doc: &Document, key: &str) -> Vec<String> {
    doc.get_array(key)
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl HelloReply {
    /// A stand-in until the handshake has run: an unknown standalone with default limits.
    pub(crate) fn placeholder() -> Self {
        HelloReply {
            kind: ServerKind::Standalone,
            set_name: None,
            hosts: Vec::new(),
            primary: None,
            me: None,
            election_id: None,
            set_version: None,
            min_wire_version: 0,
            max_wire_version: 0,
            max_bson_object_size: mongo_pool_wire::MAX_BSON_OBJECT_SIZE as i32,
            max_message_size_bytes: mongo_pool_wire::MAX_MESSAGE_SIZE as i32,
            max_write_batch_size: mongo_pool_wire::MAX_WRITE_BATCH_SIZE as i32,
            logical_session_timeout_minutes: None,
            connection_id: None,
        }
    }

    /// Reads a `hello` reply.
    ///
    /// # Errors
    /// [`HelloError::Failed`] for `ok: 0`, [`HelloError::WireVersion`] for a server too old.
    pub fn parse(reply: &Document) -> Result<HelloReply, HelloError> {
        let ok = matches!(reply.get("ok"), Some(Bson::Double(v)) if *v == 1.0)
            || matches!(
                reply.get("ok"),
                Some(Bson::Int32(1)) | Some(Bson::Int64(1)) | Some(Bson::Boolean(true))
            );
        if !ok {
            let msg = reply.get_str("errmsg").unwrap_or("no errmsg").to_owned();
            return Err(HelloError::Failed(msg));
        }
        let min_wire_version = int32(reply, "minWireVersion", 0);
        let max_wire_version = int32(reply, "maxWireVersion", 0);
        if max_wire_version < MIN_WIRE_VERSION {
            return Err(HelloError::WireVersion {
                min: min_wire_version,
                max: max_wire_version,
            });
        }
        let writable = truthy(reply, "isWritablePrimary") || truthy(reply, "ismaster");
        let set_name = reply.get_str("setName").ok().map(str::to_owned);
        let kind = if reply.get_str("msg").ok() == Some("isdbgrid") {
            ServerKind::Mongos
        } else if set_name.is_some() {
            if writable {
                ServerKind::Primary
            } else if truthy(reply, "secondary") {
                ServerKind::Secondary
            } else {
                ServerKind::OtherMember
            }
        } else {
            ServerKind::Standalone
        };
        let mut hosts = strings(reply, "hosts");
        hosts.extend(strings(reply, "passives"));
        Ok(HelloReply {
            kind,
            set_name,
            hosts,
            primary: reply.get_str("primary").ok().map(str::to_owned),
            me: reply.get_str("me").ok().map(str::to_owned),
            election_id: reply.get_object_id("electionId").ok(),
            set_version: int(reply, "setVersion"),
            min_wire_version,
            max_wire_version,
            max_bson_object_size: int32(
                reply,
                "maxBsonObjectSize",
                mongo_pool_wire::MAX_BSON_OBJECT_SIZE as i32,
            ),
            max_message_size_bytes: int32(
                reply,
                "maxMessageSizeBytes",
                mongo_pool_wire::MAX_MESSAGE_SIZE as i32,
            ),
            max_write_batch_size: int32(
                reply,
                "maxWriteBatchSize",
                mongo_pool_wire::MAX_WRITE_BATCH_SIZE as i32,
            ),
            logical_session_timeout_minutes: int(reply, "logicalSessionTimeoutMinutes")
                .and_then(|v| i32::try_from(v).ok()),
            connection_id: int(reply, "connectionId"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faas() -> FaasEnv {
        FaasEnv {
            execution_env: Some("AWS_Lambda_provided.al2023".into()),
            memory_mb: Some(1024),
            region: Some("eu-west-1".into()),
        }
    }

    #[test]
    fn metadata_carries_the_lambda_env_block() {
        let md = client_metadata(Some("notes"), Some(&faas()));
        assert_eq!(
            md.get_document("driver").unwrap().get_str("name").unwrap(),
            "mongo-pool"
        );
        let env = md.get_document("env").unwrap();
        assert_eq!(env.get_str("name").unwrap(), "aws.lambda");
        assert_eq!(env.get_i32("memory_mb").unwrap(), 1024);
        assert_eq!(env.get_str("region").unwrap(), "eu-west-1");
        assert_eq!(
            md.get_document("application")
                .unwrap()
                .get_str("name")
                .unwrap(),
            "notes"
        );
        assert!(md.to_vec().unwrap().len() <= MAX_CLIENT_METADATA);
    }

    #[test]
    fn metadata_is_trimmed_to_512_bytes() {
        let long_name = "x".repeat(128);
        let mut f = faas();
        f.region = Some("r".repeat(400));
        let md = client_metadata(Some(&long_name), Some(&f));
        assert!(md.to_vec().unwrap().len() <= MAX_CLIENT_METADATA);
        assert_eq!(
            md.get_document("env").unwrap().get_str("name").unwrap(),
            "aws.lambda"
        );
        assert!(md.get_document("env").unwrap().get("region").is_none());
    }

    #[test]
    fn hello_of_a_primary_is_parsed() {
        let reply = doc! {
            "isWritablePrimary": true, "setName": "rs", "hosts": ["a:1", "b:2"], "primary": "a:1",
            "me": "a:1", "electionId": ObjectId::from_bytes([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3]),
            "setVersion": 4, "minWireVersion": 0, "maxWireVersion": 25, "maxBsonObjectSize": 16777216,
            "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
            "logicalSessionTimeoutMinutes": 30, "connectionId": 7_i64, "ok": 1.0,
        };
        let hello = HelloReply::parse(&reply).unwrap();
        assert_eq!(hello.kind, ServerKind::Primary);
        assert_eq!(hello.hosts, vec!["a:1", "b:2"]);
        assert_eq!(hello.set_version, Some(4));
        assert_eq!(hello.logical_session_timeout_minutes, Some(30));
        assert_eq!(hello.connection_id, Some(7));
    }

    #[test]
    fn hello_of_a_mongos_and_a_secondary() {
        let mongos = doc! { "ismaster": true, "msg": "isdbgrid", "maxWireVersion": 25, "ok": 1 };
        assert_eq!(HelloReply::parse(&mongos).unwrap().kind, ServerKind::Mongos);
        let secondary = doc! { "isWritablePrimary": false, "secondary": true, "setName": "rs", "maxWireVersion": 21, "ok": 1.0 };
        assert_eq!(
            HelloReply::parse(&secondary).unwrap().kind,
            ServerKind::Secondary
        );
    }

    #[test]
    fn old_servers_and_failures_are_refused() {
        let old = doc! { "ismaster": true, "maxWireVersion": 8, "ok": 1.0 };
        assert!(matches!(
            HelloReply::parse(&old),
            Err(HelloError::WireVersion { max: 8, .. })
        ));
        let failed = doc! { "ok": 0.0, "errmsg": "nope" };
        assert_eq!(
            HelloReply::parse(&failed),
            Err(HelloError::Failed("nope".into()))
        );
    }
}
