//! `hello` / `isMaster` replies as a replica-set member or a mongos gives them, including the
//! awaitable form: with `topologyVersion` + `maxAwaitTimeMS` the reply waits until the topology
//! changes or the time is up, so streaming monitors do not spin.

use std::time::Duration;

use bson::{Bson, Document, doc};

use super::cluster::{Cluster, SET_NAME};
use mongo_pool_wire::{MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE, MAX_WRITE_BATCH_SIZE};

/// What the request asked for that shapes the reply.
#[derive(Debug, Default, Clone)]
pub struct HelloRequest {
    /// `hello` (reply `isWritablePrimary`) rather than `isMaster` (reply `ismaster`).
    pub modern: bool,
    /// `helloOk: true` was sent.
    pub hello_ok: bool,
    /// `saslSupportedMechs` was asked.
    pub sasl_supported_mechs: bool,
    /// `topologyVersion` + `maxAwaitTimeMS` of an awaitable hello.
    pub awaitable: Option<(Document, Duration)>,
}

impl HelloRequest {
    /// Reads the request fields from a hello command.
    pub fn parse(name: &str, command: &Document) -> Self {
        let awaitable = match (
            command.get_document("topologyVersion"),
            command.get("maxAwaitTimeMS"),
        ) {
            (Ok(tv), Some(ms)) => {
                let ms = match ms {
                    Bson::Int32(v) => i64::from(*v),
                    Bson::Int64(v) => *v,
                    Bson::Double(v) => *v as i64,
                    _ => 0,
                };
                Some((
                    tv.clone(),
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
                ))
            }
            _ => None,
        };
        HelloRequest {
            modern: name == "hello",
            hello_ok: command.get_bool("helloOk").unwrap_or(false),
            sasl_supported_mechs: command.contains_key("saslSupportedMechs"),
            awaitable,
        }
    }
}

/// Waits as an awaitable hello does: returns at once unless the client's `topologyVersion`
/// is current, else when the topology changes or the await time is up.
pub async fn await_topology_change(cluster: &Cluster, member: usize, request: &HelloRequest) {
    let Some((tv, max_await)) = &request.awaitable else {
        return;
    };
    // Subscribe before comparing so that a change in between is not missed.
    let mut changes = cluster.watch_topology();
    let current_process = cluster.members[member].process_id;
    let same_process = tv.get_object_id("processId").ok() == Some(current_process);
    let counter = match tv.get("counter") {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        _ => -1,
    };
    if !same_process || counter != *changes.borrow_and_update() {
        return;
    }
    let _ = tokio::time::timeout(*max_await, changes.changed()).await;
}

/// The reply body (without `ok` and gossip) for member `member`.
pub fn reply(
    cluster: &Cluster,
    member: usize,
    connection_id: i64,
    request: &HelloRequest,
) -> Document {
    let me = &cluster.members[member];
    let writable = cluster.is_writable(member);
    let writable_key = if request.modern {
        "isWritablePrimary"
    } else {
        "ismaster"
    };
    let mut out = Document::new();
    if request.hello_ok {
        out.insert("helloOk", true);
    }
    out.insert(
        "topologyVersion",
        doc! { "processId": me.process_id, "counter": cluster.topology_counter() },
    );
    if cluster.sharded() {
        out.insert(writable_key, true);
        out.insert("msg", "isdbgrid");
    } else {
        let hosts: Vec<Bson> = cluster
            .members
            .iter()
            .map(|m| Bson::String(m.host.clone()))
            .collect();
        out.insert("hosts", hosts);
        out.insert("setName", SET_NAME);
        out.insert("setVersion", 1);
        out.insert(writable_key, writable);
        out.insert("secondary", !writable);
        if let Some(primary) = cluster.primary() {
            out.insert("primary", cluster.members[primary].host.clone());
        }
        out.insert("me", me.host.clone());
        if writable {
            out.insert("electionId", cluster.election_id());
        }
        if !me.tags.is_empty() {
            let tags: Document = me
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
                .collect();
            out.insert("tags", tags);
        }
        out.insert("lastWrite", last_write(cluster, writable));
    }
    out.insert("maxBsonObjectSize", MAX_BSON_OBJECT_SIZE as i32);
    out.insert("maxMessageSizeBytes", MAX_MESSAGE_SIZE as i32);
    out.insert("maxWriteBatchSize", MAX_WRITE_BATCH_SIZE as i32);
    out.insert("localTime", bson::DateTime::now());
    out.insert("logicalSessionTimeoutMinutes", 30);
    out.insert("connectionId", connection_id);
    out.insert("minWireVersion", 0);
    out.insert("maxWireVersion", cluster.settings.max_wire_version);
    out.insert("readOnly", false);
    if request.sasl_supported_mechs {
        out.insert(
            "saslSupportedMechs",
            vec![Bson::String("MONGODB-AWS".into())],
        );
    }
    out
}

/// `lastWrite` as a replica-set member reports it. The primary's is now (a real primary's idle
/// no-op writer keeps it within 10 s); a secondary's lags by `--secondary-lag-ms`. Clients
/// compute a secondary's staleness from these dates (server-selection spec, max-staleness.md),
/// so this is all `maxStalenessSeconds` sees; the data itself does not lag.
fn last_write(cluster: &Cluster, writable: bool) -> Document {
    let now = std::time::SystemTime::now();
    let date = if writable {
        now
    } else {
        now.checked_sub(cluster.settings.secondary_lag)
            .unwrap_or(std::time::UNIX_EPOCH)
    };
    let date = bson::DateTime::from_system_time(date);
    let secs = u32::try_from(date.timestamp_millis() / 1000).unwrap_or(0);
    let op_time = doc! {
        "ts": bson::Timestamp { time: secs, increment: 1 },
        "t": i64::from(cluster.term()),
    };
    doc! {
        "opTime": op_time.clone(),
        "lastWriteDate": date,
        "majorityOpTime": op_time,
        "majorityWriteDate": date,
    }
}
