//! What every downstream session shares: the topology (and through it the pools), the router,
//! the counters, the budget of bytes buffered for requests, and the few settings a request
//! needs. Built once by `serve` and passed down.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bson::oid::ObjectId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
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
    /// Requests refused without going upstream: invalid BSON, a wrongly typed field.
    pub rejected: AtomicU64,
    /// Requests abandoned because the driver closed its connection while they ran upstream
    /// (their upstream connection was closed, so the server killed the operation).
    pub abandoned: AtomicU64,
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
    /// Bytes of requests in flight that may be buffered at once, all downstream connections
    /// together ([`BufferBudget`]); [`default_buffer_budget`] unless a test says otherwise.
    pub buffer_budget: usize,
}

/// One MiB.
const MIB: usize = 1024 * 1024;
/// The buffer budget outside Lambda.
pub const DEFAULT_BUFFER_BUDGET: usize = 256 * MIB;
/// In Lambda the buffer budget is the function's memory divided by this.
pub const LAMBDA_BUFFER_BUDGET_DIVISOR: usize = 4;

/// The buffer budget for `config`: a quarter of the function's memory
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) in Lambda, [`DEFAULT_BUFFER_BUDGET`] elsewhere.
pub fn default_buffer_budget(config: &Config) -> usize {
    match config.faas.memory_mb {
        Some(mb) if config.faas.is_lambda(&config.run_mode) => {
            usize::try_from(mb)
                .unwrap_or(usize::MAX)
                .saturating_mul(MIB)
                / LAMBDA_BUFFER_BUDGET_DIVISOR
        }
        _ => DEFAULT_BUFFER_BUDGET,
    }
}

/// Messages up to this size are read without waiting for the budget: every handshake and most
/// commands, so small requests never queue behind large ones. Each connection holds at most one
/// message, so they add at most `MONGO_POOL_MAX_CLIENTS` × 64 KiB (32 MiB at the default 512).
pub const SMALL_MESSAGE: usize = 64 * 1024;

/// The bytes of requests in flight that may be buffered at once, for every downstream
/// connection together: a message's bytes are reserved as soon as its length is known, before
/// its body is read, and released when its request is done. Beyond the budget, new reads wait.
/// A message larger than the whole budget (a 48 MB message under a small one) waits until
/// nothing else is buffered and is then read alone, so every message the protocol allows can
/// still be served. Messages of at most [`SMALL_MESSAGE`] bytes do not wait.
#[derive(Debug)]
pub struct BufferBudget {
    bytes: Arc<Semaphore>,
    total: u32,
}

impl BufferBudget {
    /// A budget of `total` bytes (at least one, at most `u32::MAX`).
    pub fn new(total: usize) -> Self {
        let total = u32::try_from(total)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        BufferBudget {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> usize {
        self.total as usize
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Waits until `bytes` (at most the whole budget) can be reserved, unless they are at most
    /// [`SMALL_MESSAGE`]; the reservation lasts until it drops. Cancel-safe: a cancelled wait
    /// reserves nothing.
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        if bytes <= SMALL_MESSAGE {
            return Reservation { _permit: None };
        }
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total);
        match Arc::clone(&self.bytes).acquire_many_owned(n).await {
            Ok(permit) => Reservation {
                _permit: Some(permit),
            },
            // The semaphore is never closed; a closed one would be a bug, and waiting for ever
            // is the only answer that does not exceed the budget.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Bytes of the [`BufferBudget`] held by one message until its request is done.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
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
    /// Bytes buffered for requests in flight.
    pub budget: BufferBudget,
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
            budget: BufferBudget::new(options.buffer_budget),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_beyond_the_budget_wait_and_a_message_larger_than_it_is_read_alone() {
        const K: usize = SMALL_MESSAGE + 1;
        let budget = BufferBudget::new(10 * K);
        let first = budget.reserve(6 * K).await;
        assert_eq!(budget.available(), 4 * K);
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(6 * K)).await;
        assert!(waiting.is_err(), "6 more do not fit while 6 are held");
        assert_eq!(
            budget.available(),
            4 * K,
            "a cancelled wait reserves nothing"
        );
        // A small message does not wait, even while the whole budget is held.
        let small = tokio::time::timeout(Duration::from_secs(5), async {
            let _all = budget.reserve(4 * K).await;
            budget.reserve(SMALL_MESSAGE).await
        })
        .await;
        assert!(small.is_ok(), "a small message waited for the budget");
        drop(first);
        let second = budget.reserve(6 * K).await;
        drop(second);
        // Larger than the budget: it takes the whole budget, once nothing else holds any.
        let whole = budget.reserve(100 * K).await;
        assert_eq!(budget.available(), 0);
        drop(whole);
        assert_eq!(budget.available(), 10 * K);
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut all = vec![("MONGO_POOL_URI", "mongodb://127.0.0.1:27017/")];
        all.extend_from_slice(pairs);
        Config::from_lookup(|k| {
            all.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[test]
    fn the_default_budget_is_a_quarter_of_the_functions_memory_in_lambda_else_256_mib() {
        let lambda = config(&[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
        ]);
        assert_eq!(default_buffer_budget(&lambda), 256 * MIB);
        let small = config(&[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ]);
        assert_eq!(default_buffer_budget(&small), 32 * MIB);
        assert_eq!(default_buffer_budget(&config(&[])), DEFAULT_BUFFER_BUDGET);
        let sidecar_with_memory = config(&[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")]);
        assert_eq!(
            default_buffer_budget(&sidecar_with_memory),
            DEFAULT_BUFFER_BUDGET
        );
    }
}
