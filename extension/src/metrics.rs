//! Counters every part of the extension feeds: the numbers `mongoPoolStats` reports, the
//! shutdown summary logs, and tests and benchmarks read. Relaxed atomics: each counter is
//! independent and only ever grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The extension's counters.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    connections_created: AtomicU64,
    connections_closed: AtomicU64,
    auth_attempts: AtomicU64,
    auth_succeeded: AtomicU64,
    auth_failed: AtomicU64,
    checkouts: AtomicU64,
    checkout_waits: AtomicU64,
    checkout_wait_micros: AtomicU64,
    checkout_failures: AtomicU64,
    pings: AtomicU64,
    ping_failures: AtomicU64,
    freezes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            connections_created: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            auth_attempts: AtomicU64::new(0),
            auth_succeeded: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            checkouts: AtomicU64::new(0),
            checkout_waits: AtomicU64::new(0),
            checkout_wait_micros: AtomicU64::new(0),
            checkout_failures: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            ping_failures: AtomicU64::new(0),
            freezes: AtomicU64::new(0),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Upstream connections established (authenticated).
    pub connections_created: u64,
    /// Upstream connections closed.
    pub connections_closed: u64,
    /// MONGODB-AWS conversations started.
    pub auth_attempts: u64,
    /// ... that succeeded.
    pub auth_succeeded: u64,
    /// ... that failed.
    pub auth_failed: u64,
    /// Check-outs that got a connection.
    pub checkouts: u64,
    /// Check-outs that had to wait (no idle connection at hand).
    pub checkout_waits: u64,
    /// Total time check-outs waited, in microseconds.
    pub checkout_wait_micros: u64,
    /// Check-outs that failed (timeout, connect error).
    pub checkout_failures: u64,
    /// Pings before use.
    pub pings: u64,
    /// Pings before use that failed (the connection was replaced).
    pub ping_failures: u64,
    /// Freezes (suspensions) detected.
    pub freezes: u64,
    /// Time since start.
    pub uptime_ms: u64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn connection_created(&self) {
        add(&self.connections_created);
    }
    pub(crate) fn connection_closed(&self) {
        add(&self.connections_closed);
    }
    pub(crate) fn auth_attempt(&self) {
        add(&self.auth_attempts);
    }
    pub(crate) fn auth_succeeded(&self) {
        add(&self.auth_succeeded);
    }
    pub(crate) fn auth_failed(&self) {
        add(&self.auth_failed);
    }
    pub(crate) fn checkout(&self, waited: Option<Duration>) {
        add(&self.checkouts);
        if let Some(waited) = waited {
            add(&self.checkout_waits);
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            self.checkout_wait_micros
                .fetch_add(micros, Ordering::Relaxed);
        }
    }
    pub(crate) fn checkout_failed(&self) {
        add(&self.checkout_failures);
    }
    pub(crate) fn ping(&self, ok: bool) {
        add(&self.pings);
        if !ok {
            add(&self.ping_failures);
        }
    }
    pub(crate) fn freeze(&self) {
        add(&self.freezes);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            connections_created: get(&self.connections_created),
            connections_closed: get(&self.connections_closed),
            auth_attempts: get(&self.auth_attempts),
            auth_succeeded: get(&self.auth_succeeded),
            auth_failed: get(&self.auth_failed),
            checkouts: get(&self.checkouts),
            checkout_waits: get(&self.checkout_waits),
            checkout_wait_micros: get(&self.checkout_wait_micros),
            checkout_failures: get(&self.checkout_failures),
            pings: get(&self.pings),
            ping_failures: get(&self.ping_failures),
            freezes: get(&self.freezes),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}
