//! What mongo-pool knows about the upstream deployment: its members, what each one is (from
//! its `hello`), which is primary, and how to pick one for a request. Follows server discovery
//! and monitoring where it matters to a proxy: the primary is tracked by `electionId` and
//! `setVersion`, stale primaries are ignored, members are learnt from `hosts`, and a member is
//! re-checked at once after a network error or a state-change error code. Only a failure to
//! establish a connection, a failed check, or a shutdown code clears a member's pool: one
//! connection lost mid-request is discarded alone. There are no
//! monitoring sockets: every check is a `hello` on a pooled, authenticated connection.

mod monitor;
mod select;
pub mod srv;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{HostPort, Seeds, UriOptions};
use crate::freeze::FreezeDetector;
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolOptions};
use crate::upstream::connect::Connector;
use crate::upstream::handshake::{HelloReply, ServerKind};
use srv::SrvError;

/// The shortest time between two checks of one member.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What the deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyKind {
    /// Nothing is known yet.
    Unknown,
    /// A replica set.
    ReplicaSet,
    /// A sharded cluster: the members are mongos routers.
    Sharded,
    /// One standalone server.
    Single,
}

/// Why a member could not be selected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SelectionError {
    /// No suitable member within `serverSelectionTimeoutMS`.
    #[error(
        "no {wanted} member available within {waited:?} (serverSelectionTimeoutMS); members: {members}"
    )]
    Timeout {
        /// What was asked for.
        wanted: &'static str,
        /// How long it waited.
        waited: Duration,
        /// Each member's state and last error.
        members: String,
    },
    /// The topology is shut down.
    #[error("mongo-pool is shutting down")]
    Closed,
}

/// Why the topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// `mongodb+srv` resolution failed.
    #[error(transparent)]
    Srv(#[from] SrvError),
}

/// An error a request met on a member, reported so the topology can react.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Establishing a connection failed (TCP, TLS or the `hello` handshake): the member is
    /// unknown and its pool is cleared, as SDAM says.
    Network,
    /// An established connection failed with a request in flight (closed, reset, or no reply
    /// in time). The connection is discarded alone: a client can make the server close its
    /// connection (bad input, a killed operation), and that must not clear the pool for
    /// everyone nor cause a re-authentication. The member keeps its state and is checked again
    /// at once; that check marks it unknown if it really is gone.
    ConnectionLost,
    /// The member answered with a state-change code (not primary, recovering, shutting down).
    StateChange(i32),
}

/// State-change codes: "not writable primary" and "node is recovering" (SDAM).
pub const STATE_CHANGE_CODES: &[i32] = &[10107, 13435, 10058, 11600, 11602, 13436, 189, 91];
/// State-change codes after which the member's pool is cleared (it is shutting down).
pub const SHUTDOWN_CODES: &[i32] = &[11600, 91];

/// Settings for the topology and its pools.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    /// `replicaSet`, when the URI (or TXT record) names one.
    pub replica_set: Option<String>,
    /// `serverSelectionTimeoutMS`.
    pub server_selection_timeout: Duration,
    /// `heartbeatFrequencyMS`: how often members are checked while the process is awake.
    pub heartbeat_frequency: Duration,
    /// Per-member pool settings.
    pub pool: PoolOptions,
}

impl TopologyOptions {
    /// The settings a connection string gives.
    pub fn from_uri(uri: &UriOptions) -> Self {
        TopologyOptions {
            replica_set: uri.replica_set.clone(),
            server_selection_timeout: uri.server_selection_timeout,
            heartbeat_frequency: uri.heartbeat_frequency,
            pool: PoolOptions {
                max_size: uri.max_pool_size as usize,
                min_size: uri.min_pool_size as usize,
                max_connecting: uri.max_connecting as usize,
                max_idle_time: uri.max_idle_time,
                ping_timeout: uri.connect_timeout.min(crate::pool::MAX_PING_TIMEOUT),
            },
        }
    }
}

#[derive(Debug, Default)]
struct ServerState {
    kind: Option<ServerKind>,
    hello: Option<Arc<HelloReply>>,
    last_error: Option<String>,
    last_check: Option<Instant>,
}

/// One member and its pool.
#[derive(Debug)]
pub struct Server {
    /// Where it is.
    pub address: HostPort,
    /// Its connections.
    pub pool: Arc<Pool>,
    state: Mutex<ServerState>,
    checking: AtomicBool,
}

impl Server {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the member is (`None` while unknown).
    pub fn kind(&self) -> Option<ServerKind> {
        self.lock().kind
    }

    /// Its latest `hello`.
    pub fn hello(&self) -> Option<Arc<HelloReply>> {
        self.lock().hello.clone()
    }

    /// The last error a check met, if the member is unknown because of it.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }
}

#[derive(Debug)]
struct State {
    kind: TopologyKind,
    servers: BTreeMap<HostPort, Arc<Server>>,
    primary: Option<HostPort>,
    set_name: Option<String>,
    max_election: Option<(Option<ObjectId>, Option<i64>)>,
}

/// The upstream deployment.
#[derive(Debug)]
pub struct Topology {
    connector: Arc<Connector>,
    freeze: Arc<FreezeDetector>,
    metrics: Arc<Metrics>,
    options: TopologyOptions,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    check_now: Notify,
    shutdown: CancellationToken,
}

/// Parses a member name from a `hello` (`host:port`, `[v6]:port`, or a bare host).
pub fn parse_address(name: &str) -> Option<HostPort> {
    let name = name.trim().to_ascii_lowercase();
    if let Some(rest) = name.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => crate::config::uri::DEFAULT_PORT,
        };
        return Some(HostPort {
            host: host.to_owned(),
            port,
        });
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some(HostPort {
            host: host.to_owned(),
            port: port.parse().ok()?,
        }),
        Some(_) => None,
        None if !name.is_empty() => Some(HostPort {
            host: name,
            port: crate::config::uri::DEFAULT_PORT,
        }),
        None => None,
    }
}

impl Topology {
    /// Resolves the seeds, creates a pool per seed and starts checking them at once (which
    /// establishes and authenticates the first connections: the warm-up). Returns without
    /// waiting for the checks. Spawns the monitor, which stops at `shutdown`.
    ///
    /// # Errors
    /// [`TopologyError::Srv`] when `mongodb+srv` resolution fails.
    pub async fn start(
        uri: &UriOptions,
        connector: Arc<Connector>,
        freeze: Arc<FreezeDetector>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Topology>, TopologyError> {
        let mut options = TopologyOptions::from_uri(uri);
        let seeds = match &uri.seeds {
            Seeds::List(hosts) => hosts.clone(),
            Seeds::Srv { host, service_name } => {
                let seeds =
                    srv::resolve_seedlist(connector.resolver(), host, service_name, uri).await?;
                if let Some(source) = &seeds.ignored_auth_source {
                    tracing::info!(
                        auth_source = source,
                        "ignoring the TXT record's authSource: MONGODB-AWS always uses $external"
                    );
                }
                if options.replica_set.is_none() {
                    options.replica_set = seeds.replica_set.clone();
                }
                seeds.hosts
            }
        };
        let (changed, _) = watch::channel(0);
        let topology = Arc::new(Topology {
            connector,
            freeze,
            metrics,
            options,
            state: Mutex::new(State {
                kind: TopologyKind::Unknown,
                servers: BTreeMap::new(),
                primary: None,
                set_name: None,
                max_election: None,
            }),
            changed,
            check_now: Notify::new(),
            shutdown,
        });
        for seed in seeds {
            topology.add_server(seed);
        }
        topology.check_all();
        tokio::spawn(Arc::clone(&topology).monitor());
        Ok(topology)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member if it is new; returns it.
    fn add_server(&self, address: HostPort) -> Arc<Server> {
        let mut state = self.lock();
        if let Some(server) = state.servers.get(&address) {
            return Arc::clone(server);
        }
        let pool = Pool::new(
            address.clone(),
            self.options.pool.clone(),
            Arc::clone(&self.connector),
            Arc::clone(&self.freeze),
            Arc::clone(&self.metrics),
        );
        let server = Arc::new(Server {
            address: address.clone(),
            pool,
            state: Mutex::default(),
            checking: AtomicBool::new(false),
        });
        state.servers.insert(address, Arc::clone(&server));
        server
    }

    /// Every member now.
    pub fn servers(&self) -> Vec<Arc<Server>> {
        self.lock().servers.values().cloned().collect()
    }

    /// The member at `address`, if known (for requests pinned to a member).
    pub fn server(&self, address: &HostPort) -> Option<Arc<Server>> {
        self.lock().servers.get(address).cloned()
    }

    /// What the deployment is.
    pub fn kind(&self) -> TopologyKind {
        self.lock().kind
    }

    /// The primary, if one is known.
    pub fn primary(&self) -> Option<HostPort> {
        self.lock().primary.clone()
    }

    /// A receiver that sees every change of the topology.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Each member's state, for error messages and `check`.
    pub fn describe(&self) -> String {
        let servers = self.servers();
        if servers.is_empty() {
            return "none".into();
        }
        servers
            .iter()
            .map(|s| {
                let state = s.lock();
                match (&state.kind, &state.last_error) {
                    (Some(kind), _) => format!("{} {kind:?}", s.address),
                    (None, Some(e)) => format!("{} unknown ({e})", s.address),
                    (None, None) => format!("{} unknown (not checked yet)", s.address),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Stops the monitor and closes every pool (idle connections now, others on return).
    pub fn close(&self) {
        self.shutdown.cancel();
        for server in self.servers() {
            server.pool.close();
        }
        self.changed.send_modify(|v| *v += 1);
    }
}
