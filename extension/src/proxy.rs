//! What every downstream session shares: the topology (and through it the pools), the router,
//! the counters, and the few settings a request needs. Built once by `serve` and passed down.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bson::oid::ObjectId;

use crate::metrics::Metrics;
use crate::route::Router;
use crate::topology::Topology;

/// Downstream counters (the socket side).
#[derive(Debug, Default)]
pub struct DownstreamCounters {
    /// Connections open now.
    pub current: AtomicU64,
    /// Connections accepted since start.
    pub total: AtomicU64,
    /// Connections refused because `MONGO_POOL_MAX_CLIENTS` were open.
    pub refused: AtomicU64,
    /// Connections closed because they broke the protocol.
    pub malformed: AtomicU64,
    /// Requests received (handshakes included).
    pub requests: AtomicU64,
    /// Requests forwarded upstream.
    pub forwarded: AtomicU64,
    /// Requests answered with a proxy-side error.
    pub errors: AtomicU64,
}

impl DownstreamCounters {
    /// Adds one to `counter`.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Settings a request needs.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `serverSelectionTimeoutMS`: how long a request waits for a suitable member.
    pub server_selection_timeout: Duration,
    /// `waitQueueTimeoutMS`: how long a request waits for a pooled connection.
    pub wait_queue_timeout: Duration,
    /// Added to a request's `maxTimeMS` to bound the wait for its reply.
    pub max_time_margin: Duration,
}

/// The shared state.
#[derive(Debug)]
pub struct Proxy {
    /// The upstream deployment.
    pub topology: Arc<Topology>,
    /// Cursor and transaction pins, sessions seen.
    pub router: Router,
    /// Upstream counters.
    pub metrics: Arc<Metrics>,
    /// Downstream counters.
    pub downstream: DownstreamCounters,
    /// Settings.
    pub options: ProxyOptions,
    /// `serviceId` for load-balanced handshakes: one per process.
    pub service_id: ObjectId,
    next_connection_id: AtomicI64,
}

impl Proxy {
    /// The shared state for a topology.
    pub fn new(topology: Arc<Topology>, metrics: Arc<Metrics>, options: ProxyOptions) -> Arc<Self> {
        Arc::new(Proxy {
            topology,
            router: Router::default(),
            metrics,
            downstream: DownstreamCounters::default(),
            options,
            service_id: ObjectId::new(),
            next_connection_id: AtomicI64::new(1),
        })
    }

    /// A `connectionId` for a new downstream connection.
    pub fn next_connection_id(&self) -> i64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}
