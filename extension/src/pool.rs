//! The connection pool of one upstream member, in CMAP's vocabulary: `check_out` hands out an
//! authenticated connection for exclusive use, and the [`PooledConnection`] returns itself on
//! drop. At most `maxPoolSize` connections exist (idle, in use and being established);
//! check-outs queue for at most their deadline; broken connections and those of an old
//! `generation` are closed instead of returning; idle ones are judged at check-out
//! (`maxIdleTimeMS`; a look at the socket, which catches a peer that closed it; and a ping
//! before use when they sat idle across a freeze or for long, which catches a silent peer).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::doc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::HostPort;
use crate::freeze::FreezeDetector;
use crate::metrics::Metrics;
use crate::upstream::connect::{ConnectError, Connector};
use crate::upstream::connection::{BrokenReason, Connection, Liveness};

/// A connection idle longer than this is pinged before use even without a freeze: peers drop
/// idle flows silently.
pub const SUSPECT_IDLE: Duration = Duration::from_secs(10);
/// The longest a ping before use may take before the connection is replaced.
pub const MAX_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Pool settings, from the connection string.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// `maxPoolSize`.
    pub max_size: usize,
    /// `minPoolSize`.
    pub min_size: usize,
    /// `maxConnecting`: connections of this member being established at once.
    pub max_connecting: usize,
    /// `maxIdleTimeMS`.
    pub max_idle_time: Option<Duration>,
    /// Deadline of a ping before use.
    pub ping_timeout: Duration,
}

/// Why a check-out failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckoutError {
    /// No connection became available in time.
    #[error(
        "no connection to {address} became available within {waited:?} (waitQueueTimeoutMS; maxPoolSize {max_size})"
    )]
    Timeout {
        /// The member.
        address: HostPort,
        /// How long it waited.
        waited: Duration,
        /// The pool's size limit.
        max_size: usize,
    },
    /// A new connection could not be established.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pool is shutting down.
    #[error("the pool for {0} is closed")]
    Closed(HostPort),
}

struct Idle {
    conn: Connection,
    since: Instant,
    epoch: u64,
}

struct State {
    idle: Vec<Idle>,
    /// Connections that exist or are being established.
    total: usize,
}

/// The pool of one member.
pub struct Pool {
    address: HostPort,
    options: PoolOptions,
    connector: Arc<Connector>,
    freeze: Arc<FreezeDetector>,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    /// The `maxConnecting` slots: every establishment of this member holds one.
    connecting: Semaphore,
    state: Mutex<State>,
    changed: Notify,
    generation: AtomicU64,
    closed: AtomicBool,
    filling: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (idle, total) = self.sizes();
        f.debug_struct("Pool")
            .field("address", &self.address)
            .field("idle", &idle)
            .field("total", &total)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// A checked-out connection. Returns to its pool when dropped, or is closed if broken,
/// including when it is dropped part-way through a round trip (its reply may still be on the
/// wire; [`BrokenReason::Interrupted`]).
pub struct PooledConnection {
    conn: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("conn", &self.conn)
            .finish()
    }
}

impl Deref for PooledConnection {
    type Target = Connection;
    #[allow(clippy::expect_used)]
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("BUG: a PooledConnection holds its connection until drop, established in Pool::check_out")
    }
}

impl DerefMut for PooledConnection {
    #[allow(clippy::expect_used)]
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("BUG: a PooledConnection holds its connection until drop, established in Pool::check_out")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.check_in(conn);
        }
    }
}

impl Pool {
    /// An empty pool for `address`.
    pub fn new(
        address: HostPort,
        options: PoolOptions,
        connector: Arc<Connector>,
        freeze: Arc<FreezeDetector>,
        metrics: Arc<Metrics>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            permits: Arc::new(Semaphore::new(options.max_size.max(1))),
            connecting: Semaphore::new(options.max_connecting.max(1)),
            address,
            options,
            connector,
            freeze,
            metrics,
            state: Mutex::new(State {
                idle: Vec::new(),
                total: 0,
            }),
            changed: Notify::new(),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            filling: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The member.
    pub fn address(&self) -> &HostPort {
        &self.address
    }

    /// The current generation: connections of older ones are closed at check-in/check-out.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// (idle, total) connections now.
    pub fn sizes(&self) -> (usize, usize) {
        let state = self.lock();
        (state.idle.len(), state.total)
    }

    /// Connections in use now.
    pub fn in_use(&self) -> usize {
        self.options.max_size.max(1) - self.permits.available_permits()
    }

    /// Hands out a connection for exclusive use, waiting until `deadline` at most. Reuses an
    /// idle connection (pinging it first when it is suspect) or establishes a new one when the
    /// pool is below `maxPoolSize`. Cancel-safe: a cancelled check-out leaves the pool intact.
    ///
    /// # Errors
    /// [`CheckoutError::Timeout`] at the deadline, [`CheckoutError::Connect`] when a new
    /// connection fails, [`CheckoutError::Closed`] after [`Pool::close`].
    pub async fn check_out(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<PooledConnection, CheckoutError> {
        let started = Instant::now();
        let result = self.check_out_inner(deadline, started).await;
        match &result {
            Ok(_) => {
                let waited = started.elapsed();
                self.metrics
                    .checkout((waited > Duration::from_millis(1)).then_some(waited));
            }
            Err(_) => self.metrics.checkout_failed(),
        }
        result
    }

    async fn check_out_inner(
        self: &Arc<Self>,
        deadline: Instant,
        started: Instant,
    ) -> Result<PooledConnection, CheckoutError> {
        let timeout = || CheckoutError::Timeout {
            address: self.address.clone(),
            waited: started.elapsed(),
            max_size: self.options.max_size,
        };
        let permit =
            tokio::time::timeout_at(deadline.into(), Arc::clone(&self.permits).acquire_owned())
                .await
                .map_err(|_| timeout())?
                .map_err(|_| CheckoutError::Closed(self.address.clone()))?;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(CheckoutError::Closed(self.address.clone()));
            }
            // Registered before looking, so a change between the look and the wait is not lost.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (idle, may_create) = {
                let mut state = self.lock();
                match state.idle.pop() {
                    Some(idle) => (Some(idle), false),
                    None if state.total < self.options.max_size => {
                        state.total += 1;
                        (None, true)
                    }
                    None => (None, false),
                }
            };
            if let Some(idle) = idle {
                if let Some(conn) = self.revalidate(idle, deadline).await {
                    return Ok(self.wrap(conn, permit));
                }
                continue;
            }
            if may_create {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let establish =
                    self.connector
                        .establish(&self.address, self.generation(), &self.connecting);
                return match tokio::time::timeout(remaining, establish).await {
                    Ok(Ok(conn)) => Ok(self.wrap(conn, permit)),
                    Ok(Err(e)) => {
                        self.release_slot();
                        Err(e.into())
                    }
                    Err(_) => {
                        self.release_slot();
                        Err(timeout())
                    }
                };
            }
            // Every slot is taken by connections being established or checked: wait for one.
            tokio::time::timeout_at(deadline.into(), changed)
                .await
                .map_err(|_| timeout())?;
        }
    }

    fn wrap(self: &Arc<Self>, conn: Connection, permit: OwnedSemaphorePermit) -> PooledConnection {
        PooledConnection {
            conn: Some(conn),
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    /// Judges an idle connection at check-out; `None` when it was closed.
    async fn revalidate(&self, idle: Idle, deadline: Instant) -> Option<Connection> {
        let Idle {
            mut conn,
            since,
            epoch,
        } = idle;
        if conn.generation() != self.generation() {
            self.discard(conn, "stale generation");
            return None;
        }
        if self
            .options
            .max_idle_time
            .is_some_and(|max| since.elapsed() > max)
        {
            self.discard(conn, "idle longer than maxIdleTimeMS");
            return None;
        }
        let unread = match conn.liveness() {
            Liveness::Closed => {
                conn.mark_broken(BrokenReason::Closed);
                self.discard(conn, "closed by the server while idle");
                return None;
            }
            Liveness::Unread => true,
            Liveness::Quiet => false,
        };
        let frozen_since = self.freeze.epoch() != epoch;
        if unread || frozen_since || since.elapsed() > SUSPECT_IDLE {
            let limit = self
                .options
                .ping_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let ok = matches!(
                conn.command(&doc! { "ping": 1, "$db": "admin" }, limit).await,
                Ok(reply) if crate::upstream::reply_ok(&reply)
            );
            self.metrics.ping(ok);
            if !ok {
                conn.mark_broken(BrokenReason::PingFailed);
                self.discard(conn, "ping before use failed");
                return None;
            }
        }
        Some(conn)
    }

    fn release_slot(&self) {
        self.lock().total -= 1;
        self.changed.notify_waiters();
    }

    fn discard(&self, conn: Connection, why: &'static str) {
        tracing::debug!(address = %self.address, id = conn.id(), why, "closing upstream connection");
        drop(conn);
        self.metrics.connection_closed();
        self.release_slot();
    }

    fn check_in(self: &Arc<Self>, conn: Connection) {
        if let Some(reason) = conn.broken() {
            let why = match reason {
                BrokenReason::Timeout => "timed out",
                BrokenReason::PingFailed => "ping failed",
                // Its reply may still be on the wire: never handed out again.
                BrokenReason::Interrupted => "dropped mid round trip",
                BrokenReason::DownstreamGone => "its driver closed the connection mid-request",
                _ => "broken",
            };
            self.discard(conn, why);
            self.fill_to_min();
            return;
        }
        if conn.generation() != self.generation() || self.closed.load(Ordering::Acquire) {
            self.discard(conn, "stale generation");
            return;
        }
        let epoch = self.freeze.epoch();
        self.lock().idle.push(Idle {
            conn,
            since: Instant::now(),
            epoch,
        });
        self.changed.notify_waiters();
    }

    /// Retires every connection: idle ones close now, checked-out ones when they return.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let idle: Vec<Idle> = std::mem::take(&mut self.lock().idle);
        for i in idle {
            self.discard(i.conn, "pool cleared");
        }
    }

    /// Closes the pool: no more check-outs; idle connections close now.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        self.clear();
        self.changed.notify_waiters();
    }

    /// Establishes connections in the background until `minPoolSize` exist. At most one filler
    /// runs at a time; it stops at the first failure (the next check-in or check-out triggers it
    /// again), so it never loops against a failing server.
    pub fn fill_to_min(self: &Arc<Self>) {
        if self.closed.load(Ordering::Acquire) || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let reserved = {
                    let mut state = pool.lock();
                    if state.total < pool.options.min_size && state.total < pool.options.max_size {
                        state.total += 1;
                        true
                    } else {
                        false
                    }
                };
                if !reserved || pool.closed.load(Ordering::Acquire) {
                    if reserved {
                        pool.release_slot();
                    }
                    break;
                }
                match pool
                    .connector
                    .establish(&pool.address, pool.generation(), &pool.connecting)
                    .await
                {
                    Ok(conn) => {
                        let epoch = pool.freeze.epoch();
                        pool.lock().idle.push(Idle {
                            conn,
                            since: Instant::now(),
                            epoch,
                        });
                        pool.changed.notify_waiters();
                    }
                    Err(e) => {
                        pool.release_slot();
                        tracing::debug!(address = %pool.address, error = %e, "filling the pool to minPoolSize failed");
                        break;
                    }
                }
            }
            pool.filling.store(false, Ordering::Release);
        });
    }
}
