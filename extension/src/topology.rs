//! What mongo-pool knows about the upstream deployment: its members, what each one is (from
//! its `hello`), which is primary, and how to pick one for a request. Follows server discovery
//! and monitoring where it matters to a proxy: the primary is tracked by `electionId` and
//! `setVersion`, stale primaries are ignored, members are learnt from `hosts`, and a member is
//! re-checked at once after a network error or a state-change error code. There are no
//! monitoring sockets: every check is a `hello` on a pooled, authenticated connection.

pub mod srv;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use mongo_pool_wire::inspect::ReadPreferenceMode;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{HostPort, Seeds, UriOptions};
use crate::freeze::FreezeDetector;
use crate::metrics::Metrics;
use crate::pool::{CheckoutError, Pool, PoolOptions};
use crate::upstream::connect::Connector;
use crate::upstream::handshake::{HelloReply, ServerKind, recheck_command};
use crate::upstream::reply_ok;
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
    /// The network failed: the member is unknown and its pool is cleared.
    Network,
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

    /// The `hello` of any data-bearing member: its limits and wire versions are what the
    /// downstream handshake copies. Waits until one is known, until `deadline`.
    pub async fn any_hello(&self, deadline: Instant) -> Option<Arc<HelloReply>> {
        let mut changes = self.watch();
        loop {
            if let Some(hello) = self
                .servers()
                .iter()
                .filter(|s| s.kind().is_some())
                .find_map(|s| s.hello())
            {
                return Some(hello);
            }
            if tokio::time::timeout_at(deadline.into(), changes.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    fn pick(&self, mode: ReadPreferenceMode) -> Option<Arc<Server>> {
        let state = self.lock();
        let of_kind = |kinds: &[ServerKind]| -> Vec<Arc<Server>> {
            state
                .servers
                .values()
                .filter(|s| s.kind().is_some_and(|k| kinds.contains(&k)))
                .cloned()
                .collect()
        };
        let least_busy = |mut candidates: Vec<Arc<Server>>| {
            candidates.sort_by_key(|s| s.pool.in_use());
            candidates.into_iter().next()
        };
        let primary = || {
            state
                .primary
                .as_ref()
                .and_then(|p| state.servers.get(p))
                .filter(|s| s.kind() == Some(ServerKind::Primary))
                .cloned()
        };
        match state.kind {
            TopologyKind::Unknown => None,
            TopologyKind::Sharded => least_busy(of_kind(&[ServerKind::Mongos])),
            TopologyKind::Single => least_busy(of_kind(&[ServerKind::Standalone])),
            TopologyKind::ReplicaSet => match mode {
                ReadPreferenceMode::Primary => primary(),
                ReadPreferenceMode::PrimaryPreferred => {
                    primary().or_else(|| least_busy(of_kind(&[ServerKind::Secondary])))
                }
                ReadPreferenceMode::Secondary => least_busy(of_kind(&[ServerKind::Secondary])),
                ReadPreferenceMode::SecondaryPreferred => {
                    least_busy(of_kind(&[ServerKind::Secondary])).or_else(primary)
                }
                ReadPreferenceMode::Nearest => {
                    least_busy(of_kind(&[ServerKind::Primary, ServerKind::Secondary]))
                }
            },
        }
    }

    /// Picks a member for `mode`, waiting (and re-checking members) until `deadline`.
    ///
    /// # Errors
    /// [`SelectionError::Timeout`] with each member's state; [`SelectionError::Closed`].
    pub async fn select(
        &self,
        mode: ReadPreferenceMode,
        deadline: Instant,
    ) -> Result<Arc<Server>, SelectionError> {
        let started = Instant::now();
        let mut changes = self.watch();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(SelectionError::Closed);
            }
            changes.borrow_and_update();
            if let Some(server) = self.pick(mode) {
                return Ok(server);
            }
            self.request_check();
            let wait_until = deadline.min(Instant::now() + Duration::from_millis(500));
            let _ = tokio::time::timeout_at(wait_until.into(), changes.changed()).await;
            if Instant::now() >= deadline {
                if let Some(server) = self.pick(mode) {
                    return Ok(server);
                }
                return Err(SelectionError::Timeout {
                    wanted: mode_name(mode, self.kind()),
                    waited: started.elapsed(),
                    members: self.describe(),
                });
            }
        }
    }

    /// Waits until every member has been checked at least once (or `deadline`).
    pub async fn wait_checked(&self, deadline: Instant) {
        let mut changes = self.watch();
        loop {
            changes.borrow_and_update();
            if self
                .servers()
                .iter()
                .all(|s| s.kind().is_some() || s.last_error().is_some())
            {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), changes.changed())
                .await
                .is_err()
            {
                return;
            }
        }
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

    /// Reports what a request met on `address`, so the next request finds a working member.
    pub fn report(&self, address: &HostPort, failure: Failure) {
        let Some(server) = self.server(address) else {
            return;
        };
        let clear = match failure {
            Failure::Network => true,
            Failure::StateChange(code) => SHUTDOWN_CODES.contains(&code),
        };
        tracing::debug!(%address, ?failure, "marking member unknown");
        self.mark_unknown(&server, format!("{failure:?}"));
        if clear {
            server.pool.clear();
        }
        self.request_check();
    }

    fn mark_unknown(&self, server: &Server, error: String) {
        {
            let mut s = server.lock();
            s.kind = None;
            s.last_error = Some(error);
        }
        {
            let mut state = self.lock();
            if state.primary.as_ref() == Some(&server.address) {
                state.primary = None;
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Asks the monitor to check members now.
    pub fn request_check(&self) {
        self.check_now.notify_one();
    }

    fn check_all(self: &Arc<Self>) {
        for server in self.servers() {
            tokio::spawn(Arc::clone(self).check(server));
        }
    }

    async fn monitor(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.check_now.notified() => {}
                () = tokio::time::sleep(self.options.heartbeat_frequency) => {}
            }
            self.check_all();
            // Coalesce bursts of requests.
            tokio::time::sleep(MIN_CHECK_INTERVAL).await;
        }
    }

    /// Runs `hello` on a pooled connection of `server` and applies the reply.
    async fn check(self: Arc<Self>, server: Arc<Server>) {
        if server.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let recent = server
            .lock()
            .last_check
            .is_some_and(|t| t.elapsed() < MIN_CHECK_INTERVAL);
        if !recent {
            let started = Instant::now();
            server.lock().last_check = Some(started);
            let limit = self.connector.connect_timeout();
            let deadline = started + limit.saturating_mul(2);
            match server.pool.check_out(deadline).await {
                Ok(mut conn) => {
                    let hello = match conn.take_fresh_hello(started) {
                        Some(hello) => Ok(hello),
                        None => match conn.command(&recheck_command(), limit).await {
                            Ok(reply) if reply_ok(&reply) => HelloReply::parse(&reply)
                                .map(Arc::new)
                                .map_err(|e| e.to_string()),
                            Ok(reply) => Err(format!(
                                "hello failed: {}",
                                reply.get_str("errmsg").unwrap_or("no errmsg")
                            )),
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    drop(conn);
                    match hello {
                        Ok(hello) => self.apply(&server, hello),
                        Err(e) => {
                            self.mark_unknown(&server, e);
                            server.pool.clear();
                        }
                    }
                }
                Err(CheckoutError::Connect(e)) if e.refused_by().is_some() => {
                    // The member is up and refuses us for good: keep what its `hello` says, so
                    // drivers complete their handshake and get the refusal on their first
                    // command instead of a server selection timeout.
                    if let Some(hello) = e.refused_by() {
                        self.apply(&server, Arc::clone(hello));
                    }
                }
                Err(e) => self.mark_unknown(&server, e.to_string()),
            }
        }
        server.checking.store(false, Ordering::Release);
    }

    /// Applies a member's `hello` to the topology.
    fn apply(self: &Arc<Self>, server: &Arc<Server>, hello: Arc<HelloReply>) {
        let mut new_members = Vec::new();
        let mut removed = Vec::new();
        let mut demoted = None;
        {
            let mut state = self.lock();
            match hello.kind {
                ServerKind::Mongos => {
                    if state.kind == TopologyKind::Unknown {
                        state.kind = TopologyKind::Sharded;
                    }
                }
                ServerKind::Standalone => {
                    if state.kind == TopologyKind::Unknown && state.servers.len() == 1 {
                        state.kind = TopologyKind::Single;
                    }
                }
                ServerKind::Primary | ServerKind::Secondary | ServerKind::OtherMember => {
                    let wanted = self
                        .options
                        .replica_set
                        .as_ref()
                        .or(state.set_name.as_ref());
                    if wanted.is_some_and(|w| Some(w) != hello.set_name.as_ref()) {
                        tracing::warn!(address = %server.address, set_name = ?hello.set_name, expected = ?wanted, "member of another replica set: ignored");
                        drop(state);
                        self.mark_unknown(server, "member of another replica set".into());
                        return;
                    }
                    state.kind = TopologyKind::ReplicaSet;
                    state.set_name.clone_from(&hello.set_name);
                    if hello.kind == ServerKind::Primary {
                        let election = (hello.election_id, hello.set_version);
                        if state.max_election.is_some_and(|max| election < max) {
                            tracing::info!(address = %server.address, "ignoring a stale primary (older electionId/setVersion)");
                            drop(state);
                            self.mark_unknown(server, "stale primary".into());
                            return;
                        }
                        state.max_election = Some(election);
                        if let Some(old) = state.primary.replace(server.address.clone())
                            && old != server.address
                        {
                            demoted = state.servers.get(&old).cloned();
                        }
                    } else if state.primary.as_ref() == Some(&server.address) {
                        state.primary = None;
                    }
                    let listed: Vec<HostPort> = hello
                        .hosts
                        .iter()
                        .filter_map(|h| parse_address(h))
                        .collect();
                    for address in &listed {
                        if !state.servers.contains_key(address) {
                            new_members.push(address.clone());
                        }
                    }
                    // The primary's member list is authoritative: seeds it does not name (e.g.
                    // IP literals for members that call themselves by host name) are dropped.
                    if hello.kind == ServerKind::Primary && !listed.is_empty() {
                        let gone: Vec<HostPort> = state
                            .servers
                            .keys()
                            .filter(|a| !listed.contains(a))
                            .cloned()
                            .collect();
                        for address in gone {
                            if let Some(server) = state.servers.remove(&address) {
                                removed.push(server);
                            }
                        }
                    }
                }
            }
        }
        {
            let mut s = server.lock();
            s.kind = Some(hello.kind);
            s.hello = Some(Arc::clone(&hello));
            s.last_error = None;
        }
        if let Some(old) = demoted {
            let mut s = old.lock();
            if s.kind == Some(ServerKind::Primary) {
                s.kind = None;
                s.last_error = Some("a newer primary was elected".into());
            }
        }
        for server in removed {
            tracing::debug!(address = %server.address, "member not in the primary's host list: removed");
            server.pool.close();
        }
        for address in new_members {
            let member = self.add_server(address);
            tokio::spawn(Arc::clone(self).check(member));
        }
        server.pool.fill_to_min();
        self.changed.send_modify(|v| *v += 1);
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

fn mode_name(mode: ReadPreferenceMode, kind: TopologyKind) -> &'static str {
    match (kind, mode) {
        (TopologyKind::Sharded, _) => "mongos",
        (_, ReadPreferenceMode::Primary) => "primary",
        (_, ReadPreferenceMode::PrimaryPreferred) => "primaryPreferred",
        (_, ReadPreferenceMode::Secondary) => "secondary",
        (_, ReadPreferenceMode::SecondaryPreferred) => "secondaryPreferred",
        (_, ReadPreferenceMode::Nearest) => "nearest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_parse() {
        assert_eq!(
            parse_address("Member1.Sim.Test:27017"),
            Some(HostPort {
                host: "member1.sim.test".into(),
                port: 27017
            })
        );
        assert_eq!(
            parse_address("127.0.0.1:4000"),
            Some(HostPort {
                host: "127.0.0.1".into(),
                port: 4000
            })
        );
        assert_eq!(
            parse_address("[::1]:4000"),
            Some(HostPort {
                host: "::1".into(),
                port: 4000
            })
        );
        assert_eq!(
            parse_address("db.example.net"),
            Some(HostPort {
                host: "db.example.net".into(),
                port: 27017
            })
        );
        assert_eq!(parse_address(":27017"), None);
        assert_eq!(parse_address("host:notaport"), None);
    }

    #[test]
    fn election_order_compares_election_id_then_set_version() {
        let oid = |n: u8| {
            Some(ObjectId::from_bytes([
                0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, n,
            ]))
        };
        assert!((oid(1), Some(9)) < (oid(2), Some(1)));
        assert!((oid(2), Some(1)) < (oid(2), Some(2)));
    }
}
