//! The state every member shares: topology (who is primary), the document store, sessions,
//! fail points, authentication settings and counters, and the registry of open connections that
//! the control API acts on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{Document, Timestamp, doc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::change_stream::ChangeLog;
use super::cursors::Cursors;
use super::failpoint::FailPoint;
use super::operations::Operations;
use super::options::TopologyKind;
use super::session::Sessions;
use crate::aws_auth::Verifier;
use crate::store::Store;

/// The replica set's name.
pub const SET_NAME: &str = "sim";

/// Locks a mutex, recovering the data if a holder panicked: the simulator keeps serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One member: a replica-set node or a mongos router.
#[derive(Debug)]
pub struct Member {
    /// Position in the member list.
    pub index: usize,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `127.0.0.1:port`: the key in the start line and `/status`.
    pub key: String,
    /// The name it calls itself in `hello` (`memberK.<domain>:port` with `--srv`).
    pub host: String,
    /// `topologyVersion.processId`.
    pub process_id: ObjectId,
    /// Open client connections.
    pub connections_current: AtomicU64,
    /// Client connections ever accepted.
    pub connections_total: AtomicU64,
    /// Commands received, by name.
    pub commands: Mutex<BTreeMap<String, u64>>,
    /// Cursors this member owns.
    pub cursors: Mutex<Cursors>,
    /// Operations running now, and those killed because their client disconnected.
    pub operations: Operations,
    /// `key:value` tags reported in hello (`--member-tags`).
    pub tags: Vec<(String, String)>,
}

impl Member {
    pub(crate) fn count_command(&self, name: &str) {
        *lock(&self.commands).entry(name.to_owned()).or_default() += 1;
    }
}

/// How MONGODB-AWS callers are verified and which of them are users.
#[derive(Debug)]
pub struct AuthConfig {
    /// Local verification or forwarding to STS.
    pub verifier: Verifier,
    /// Database users in `$external`; `None`: every verified caller is a user.
    pub users: Option<HashSet<String>>,
    /// The STS host named in the server's first reply.
    pub sts_host: String,
    /// Added to each verification.
    pub sts_delay: Duration,
}

/// Authentication counters, as `/status` and `serverStatus` report them.
#[derive(Debug, Default, Clone)]
pub struct AuthStats {
    /// Authentication attempts (saslStart received).
    pub received: u64,
    /// Successful authentications.
    pub successful: u64,
    /// Failed authentications.
    pub failed: u64,
    /// The cause of the last failure, as the server log would say it.
    pub last_failure: Option<String>,
    /// Signature verifications (local or forwarded), the number of STS calls Atlas would make.
    pub sts_calls: u64,
}

/// A control handle on one open client connection.
#[derive(Debug)]
pub(crate) struct ConnControl {
    pub(crate) close: CancellationToken,
    pub(crate) blackhole: watch::Sender<Option<Instant>>,
}

/// Topology state under one lock.
#[derive(Debug)]
struct TopologyState {
    primary: Option<usize>,
    election: u32,
    /// Bumped by every topology change, so a `/no-primary` timer only elects if nothing else
    /// changed the topology since it started.
    epoch: u64,
    /// The primary before the current `/no-primary` window; the next election follows it.
    before_outage: Option<usize>,
}

/// Simulator settings that do not change while it runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Replica set or sharded.
    pub topology: TopologyKind,
    /// Added before every reply.
    pub latency: Duration,
    /// `maxWireVersion`.
    pub max_wire_version: i32,
    /// Close connections idle this long.
    pub idle_disconnect: Option<Duration>,
    /// How far the secondaries' reported `lastWriteDate` lags (`--secondary-lag-ms`).
    pub secondary_lag: Duration,
}

/// Everything the members share.
#[derive(Debug)]
pub struct Cluster {
    /// Fixed settings.
    pub settings: Settings,
    /// The members, in start-line order.
    pub members: Vec<Member>,
    /// The shared document store.
    pub store: Mutex<Store>,
    /// The changes applied to the store, for change streams.
    pub changes: ChangeLog,
    /// Retryable-write results and open transactions.
    pub sessions: Mutex<Sessions>,
    /// The `failCommand` fail point, shared by all members.
    pub failpoint: Mutex<Option<FailPoint>>,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Authentication counters.
    pub auth_stats: Mutex<AuthStats>,
    /// Verifications still to fail as STS throttling (`POST /sts/throttle`).
    pub sts_throttle: AtomicU64,
    topology: Mutex<TopologyState>,
    topology_version: watch::Sender<i64>,
    connections: Mutex<HashMap<u64, ConnControl>>,
    next_connection_id: AtomicI64,
    cluster_time_increment: AtomicU32,
    started: Instant,
}

impl Cluster {
    /// A cluster whose first member is primary (replica set) or whose members are all routers.
    pub fn new(settings: Settings, members: Vec<Member>, auth: AuthConfig) -> Arc<Self> {
        let primary = match settings.topology {
            TopologyKind::Replset => Some(0),
            TopologyKind::Sharded => None,
        };
        let (topology_version, _) = watch::channel(0);
        Arc::new(Cluster {
            settings,
            members,
            store: Mutex::new(Store::new()),
            changes: ChangeLog::default(),
            sessions: Mutex::new(Sessions::default()),
            failpoint: Mutex::new(None),
            auth,
            auth_stats: Mutex::new(AuthStats::default()),
            sts_throttle: AtomicU64::new(0),
            topology: Mutex::new(TopologyState {
                primary,
                election: 1,
                epoch: 0,
                before_outage: None,
            }),
            topology_version,
            connections: Mutex::new(HashMap::new()),
            next_connection_id: AtomicI64::new(1),
            cluster_time_increment: AtomicU32::new(1),
            started: Instant::now(),
        })
    }

    /// Whether this is a sharded cluster (members are mongos routers).
    pub fn sharded(&self) -> bool {
        self.settings.topology == TopologyKind::Sharded
    }

    /// The primary's index, if a replica set has one.
    pub fn primary(&self) -> Option<usize> {
        lock(&self.topology).primary
    }

    /// The current `electionId`: a fixed prefix and the election counter.
    pub fn election_id(&self) -> ObjectId {
        let election = lock(&self.topology).election;
        let mut bytes = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes[8..].copy_from_slice(&election.to_be_bytes());
        ObjectId::from_bytes(bytes)
    }

    /// The replication term: the election counter.
    pub fn term(&self) -> u32 {
        lock(&self.topology).election
    }

    /// Whether member `index` may take writes: always on a router, only the primary in a set.
    pub fn is_writable(&self, index: usize) -> bool {
        self.sharded() || self.primary() == Some(index)
    }

    /// The state name `/status` shows for a member.
    pub fn state_name(&self, index: usize) -> &'static str {
        if self.sharded() {
            "MONGOS"
        } else if self.primary() == Some(index) {
            "PRIMARY"
        } else {
            "SECONDARY"
        }
    }

    /// The topology version counter; awaitable hellos wait for it to change.
    pub fn topology_counter(&self) -> i64 {
        *self.topology_version.borrow()
    }

    /// A receiver that sees each topology change.
    pub fn watch_topology(&self) -> watch::Receiver<i64> {
        self.topology_version.subscribe()
    }

    /// Changes the primary (a new one gets a higher `electionId`); returns the new epoch.
    /// A primary that steps down aborts every transaction in progress on it, as mongod does on
    /// a stepdown: a later statement there fails as not primary, and the new primary never
    /// heard of the transaction, so its commit gets NoSuchTransaction (transactions spec,
    /// "Transaction errors"; mongod aborts unprepared transactions when it leaves PRIMARY).
    fn set_primary(&self, primary: Option<usize>) -> u64 {
        let (epoch, stepped_down) = {
            let mut state = lock(&self.topology);
            let stepped_down = state.primary.is_some() && state.primary != primary;
            if primary.is_some() {
                state.election += 1;
            }
            state.primary = primary;
            state.epoch += 1;
            (state.epoch, stepped_down)
        };
        // After the topology lock is released: statements take the sessions lock first and then
        // check the topology, so they either see the new primary or have their transaction
        // aborted here.
        if stepped_down {
            let aborted = lock(&self.sessions).abort_all();
            if aborted > 0 {
                tracing::info!(aborted, "the old primary aborted its open transactions");
            }
        }
        self.topology_version.send_modify(|v| *v += 1);
        epoch
    }

    /// The primary steps down and the next member is elected with a higher `electionId`.
    /// Returns the new primary. On a sharded cluster nothing changes.
    pub fn step_down(&self) -> Option<usize> {
        if self.sharded() {
            return None;
        }
        let next = self.next_primary();
        self.set_primary(Some(next));
        Some(next)
    }

    /// Ends the `/no-primary` window that set `epoch`, unless a later `/no-primary` or
    /// `/stepdown` changed the topology since (it owns the topology now).
    fn elect_after_outage(&self, epoch: u64) {
        {
            let mut state = lock(&self.topology);
            if state.epoch != epoch {
                return;
            }
            let next = state
                .before_outage
                .map_or(0, |p| (p + 1) % self.members.len());
            state.primary = Some(next);
            state.election += 1;
            state.epoch += 1;
        }
        self.topology_version.send_modify(|v| *v += 1);
    }

    /// The member an election picks: the one after the current (or last) primary.
    fn next_primary(&self) -> usize {
        let state = lock(&self.topology);
        state
            .primary
            .or(state.before_outage)
            .map_or(0, |p| (p + 1) % self.members.len())
    }

    /// No member is writable primary for `duration`; then the next member is elected.
    pub fn no_primary_for(self: &Arc<Self>, duration: Duration) {
        if self.sharded() {
            return;
        }
        {
            let mut state = lock(&self.topology);
            // A window during a window still elects after the primary lost by the first.
            state.before_outage = state.primary.or(state.before_outage);
        }
        let epoch = self.set_primary(None);
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            cluster.elect_after_outage(epoch);
        });
    }

    /// Runs a data command outside a transaction on the store; its changes go to the change
    /// log while the store is still locked, so the log's order is the order of the writes.
    pub fn execute(
        &self,
        db: &str,
        command: &Document,
    ) -> Result<crate::store::Outcome, crate::store::CommandError> {
        let mut store = lock(&self.store);
        let (result, changes) = self.changes.execute(&mut store, db, command);
        self.changes.publish(self, changes);
        result
    }

    /// A fresh `connectionId`.
    pub fn next_connection_id(&self) -> i64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_connection(&self, id: u64, control: ConnControl) {
        lock(&self.connections).insert(id, control);
    }

    pub(crate) fn unregister_connection(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    /// Closes every client connection now.
    pub fn drop_connections(&self) -> usize {
        let connections = lock(&self.connections);
        for control in connections.values() {
            control.close.cancel();
        }
        connections.len()
    }

    /// Every connection open now stops reading and answering for `duration`, without closing.
    pub fn blackhole(&self, duration: Duration) -> usize {
        let until = Instant::now() + duration;
        let connections = lock(&self.connections);
        for control in connections.values() {
            control.blackhole.send_replace(Some(until));
        }
        connections.len()
    }

    /// `$clusterTime` / `operationTime` for a reply.
    pub fn cluster_time(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp {
            time: u32::try_from(secs).unwrap_or(u32::MAX),
            increment: self.cluster_time_increment.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The gossip fields every command reply carries.
    pub fn gossip(&self) -> Document {
        let now = self.cluster_time();
        doc! {
            "$clusterTime": {
                "clusterTime": now,
                "signature": {
                    "hash": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; 20] },
                    "keyId": 0_i64,
                },
            },
            "operationTime": now,
        }
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
