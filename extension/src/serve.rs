//! Running the proxy: bind the socket, start connecting upstream at once (the warm-up), serve
//! downstream connections, and on shutdown stop accepting, let requests in flight finish for a
//! bounded time, end the sessions the function used (`endSessions`, batches of 10,000), and close
//! every upstream connection. Lambda mode and sidecar mode both run this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Bson, doc};
use mongo_pool_wire::inspect::ReadPreferenceMode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, RunMode};
use crate::freeze::FreezeDetector;
use crate::listener::{self, Host, ListenerError, Socket};
use crate::metrics::{Metrics, Snapshot};
use crate::proxy::{Proxy, ProxyOptions};
use crate::topology::{Topology, TopologyError};
use crate::upstream::connect::{Connector, ConnectorError};

/// Requests in flight get this long to finish after shutdown starts.
pub const DRAIN: Duration = Duration::from_millis(500);
/// `endSessions` and closing get this long.
pub const END_SESSIONS: Duration = Duration::from_millis(500);
/// Extra time a request with `maxTimeMS` may take before mongo-pool stops waiting.
pub const MAX_TIME_MARGIN: Duration = Duration::from_secs(5);
/// One `endSessions` takes at most this many ids (server limit).
pub const END_SESSIONS_BATCH: usize = 10_000;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket.
    #[error(transparent)]
    Listener(#[from] ListenerError),
    /// TLS or resolver setup.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// `mongodb+srv` resolution.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// What the run did, for the shutdown summary.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Upstream counters.
    pub upstream: Snapshot,
    /// Downstream requests received.
    pub requests: u64,
    /// Sessions ended at shutdown.
    pub sessions_ended: usize,
}

impl Summary {
    /// Logs the one summary line of a run; `invocations` when the extension counted them.
    pub fn log(&self, invocations: Option<u64>) {
        tracing::info!(
            invocations,
            requests = self.requests,
            authentications = self.upstream.auth_succeeded,
            upstream_connections_created = self.upstream.connections_created,
            checkout_waits = self.upstream.checkout_waits,
            sessions_ended = self.sessions_ended,
            "mongo-pool stopped"
        );
    }
}

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    /// The shared state.
    pub proxy: Arc<Proxy>,
    tracker: TaskTracker,
    sessions: CancellationToken,
    background: CancellationToken,
}

/// Binds the socket (first, so it exists before anything else can fail slowly). A sidecar's
/// socket directory must be private to mongo-pool's user; in Lambda the environment is the
/// function's alone (see `listener/socket_file.rs`).
///
/// # Errors
/// [`ServeError::Listener`].
pub fn bind(config: &Config) -> Result<Socket, ServeError> {
    let host = match config.run_mode {
        RunMode::Lambda { .. } => Host::Lambda,
        RunMode::Sidecar => Host::Sidecar,
    };
    Ok(listener::bind(
        &config.socket_path,
        config.socket_mode.bits(),
        host,
    )?)
}

/// Starts connecting upstream and serving `socket`. Returns at once; the warm-up runs in the
/// background.
///
/// # Errors
/// [`ServeError`] for TLS/resolver setup or `mongodb+srv` resolution failures.
pub async fn start(
    config: &Config,
    socket: Socket,
    lookup: impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static,
) -> Result<Running, ServeError> {
    let metrics = Arc::new(Metrics::default());
    let background = CancellationToken::new();
    let freeze = FreezeDetector::new(Arc::clone(&metrics));
    tokio::spawn(Arc::clone(&freeze).run(background.child_token()));
    let connector = Arc::new(Connector::new(config, lookup, Arc::clone(&metrics))?);
    let topology = Topology::start(
        &config.uri,
        connector,
        freeze,
        Arc::clone(&metrics),
        background.child_token(),
    )
    .await?;
    let options = ProxyOptions {
        server_selection_timeout: config.uri.server_selection_timeout,
        wait_queue_timeout: config.uri.wait_queue_timeout,
        max_time_margin: MAX_TIME_MARGIN,
        buffer_budget: crate::proxy::default_buffer_budget(config),
    };
    let buffer_budget_mib = options.buffer_budget / (1024 * 1024);
    let proxy = Proxy::new(topology, metrics, options);
    let tracker = TaskTracker::new();
    let sessions = CancellationToken::new();
    let max_clients = usize::try_from(config.max_clients).unwrap_or(usize::MAX);
    tokio::spawn(listener::run(
        socket,
        Arc::clone(&proxy),
        max_clients,
        sessions.clone(),
        tracker.clone(),
    ));
    tracing::info!(socket = %config.socket_path.display(), upstream = %config.uri.seeds, buffer_budget_mib, "mongo-pool is serving");
    let uri = &config.uri;
    if !uri.unknown_options.is_empty() {
        tracing::warn!(
            options = %uri.unknown_options_explained(),
            "MONGO_POOL_URI has options mongo-pool does not know: ignored"
        );
    }
    if !uri.function_options.is_empty() {
        // Atlas's own connection strings carry retryWrites and w: not worth a line per start.
        tracing::debug!(
            options = %uri.function_options.join(", "),
            "MONGO_POOL_URI has options for the function's own driver: ignored here, set them in \
             the function's connection string"
        );
    }
    Ok(Running {
        proxy,
        tracker,
        sessions,
        background,
    })
}

impl Running {
    /// Stops: no new connections, requests in flight finish (for [`DRAIN`] at most), sessions
    /// seen are ended, every upstream connection is closed. Bounded by about
    /// `DRAIN + END_SESSIONS`.
    pub async fn shutdown(self) -> Summary {
        self.sessions.cancel();
        self.tracker.close();
        if tokio::time::timeout(DRAIN, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after the drain time; closing anyway");
        }
        let sessions_ended = tokio::time::timeout(END_SESSIONS, end_sessions(&self.proxy))
            .await
            .unwrap_or(0);
        self.proxy.topology.close();
        self.background.cancel();
        Summary {
            upstream: self.proxy.metrics.snapshot(),
            requests: self
                .proxy
                .downstream
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
            sessions_ended,
        }
    }
}

/// Sends `endSessions` for every session seen, in batches; returns how many were ended.
async fn end_sessions(proxy: &Proxy) -> usize {
    let sessions = proxy.router.live_sessions();
    if sessions.is_empty() {
        return 0;
    }
    let deadline = Instant::now() + END_SESSIONS;
    let Ok(server) = proxy
        .topology
        .select(ReadPreferenceMode::PrimaryPreferred, deadline)
        .await
    else {
        return 0;
    };
    let Ok(mut conn) = server.pool.check_out(deadline).await else {
        return 0;
    };
    let mut ended = 0;
    for batch in sessions.chunks(END_SESSIONS_BATCH) {
        // Every id is a driver-shaped `{id: UUID}` rebuilt from 16 bytes (`route::SessionId`):
        // nothing a client sent is converted here, and no id can fail the batch.
        let ids: Vec<Bson> = batch
            .iter()
            .map(|id| Bson::Document(id.to_document()))
            .collect();
        let count = ids.len();
        let limit = deadline.saturating_duration_since(Instant::now());
        match conn
            .command(&doc! { "endSessions": ids, "$db": "admin" }, limit)
            .await
        {
            Ok(reply) if crate::upstream::reply_ok(&reply) => ended += count,
            Ok(reply) => {
                tracing::debug!(
                    errmsg = reply.get_str("errmsg").unwrap_or("no errmsg"),
                    "endSessions refused"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "endSessions failed");
                break;
            }
        }
    }
    ended
}
