//! A small pool of socket connections, so one handler can run queries concurrently.
//!
//! `check_out` hands out an idle connection (after a non-blocking check that mongo-pool did not
//! close it) or opens a new one, at most `max_connections` at a time (a semaphore; further
//! callers wait up to `checkout_timeout`). A [`PooledConnection`] returns itself on drop unless
//! it broke. A network error bumps the pool's generation, which retires every idle connection of
//! the older generation: after the extension restarts, all of them are dead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connection::{Connection, Limits, Peer};
use crate::error::{Error, Result};

/// The pool's shared state.
#[derive(Debug)]
pub(crate) struct Pool {
    path: PathBuf,
    /// Whom the socket's peer must be.
    peer: Peer,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    generation: AtomicU64,
    checkout_timeout: Duration,
    /// The limits of the last handshake (defaults until one happened).
    limits: Mutex<Limits>,
}

impl Pool {
    pub fn new(
        path: PathBuf,
        peer: Peer,
        max_connections: usize,
        checkout_timeout: Duration,
    ) -> Pool {
        Pool {
            path,
            peer,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            generation: AtomicU64::new(0),
            checkout_timeout,
            limits: Mutex::new(Limits::default()),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The limits mongo-pool announced in the most recent handshake.
    pub fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Retires every connection made before now (called after a network error).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// A connection for one exchange: an idle one if any is alive, else a new one.
    ///
    /// # Errors
    /// [`Error::Timeout`] when every connection stays busy for `checkout_timeout`;
    /// [`Error::SocketMissing`] and handshake errors when a new connection fails.
    pub async fn check_out(self: &Arc<Self>) -> Result<PooledConnection> {
        let permit = tokio::time::timeout(
            self.checkout_timeout,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        .map_err(|_| Error::Timeout(self.checkout_timeout))?
        .map_err(|_| Error::network("the connection pool is closed"))?;
        let generation = self.generation.load(Ordering::Acquire);
        loop {
            let candidate = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(connection) = candidate else { break };
            if connection.generation == generation && !connection.peer_closed() {
                return Ok(self.wrap(connection, permit));
            }
            tracing::debug!("dropping a stale idle connection to mongo-pool");
        }
        let connection = tokio::time::timeout(
            self.checkout_timeout,
            Connection::establish(&self.path, &self.peer, generation),
        )
        .await
        .map_err(|_| Error::Timeout(self.checkout_timeout))??;
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = connection.limits();
        Ok(self.wrap(connection, permit))
    }

    fn wrap(
        self: &Arc<Self>,
        connection: Connection,
        permit: OwnedSemaphorePermit,
    ) -> PooledConnection {
        PooledConnection {
            connection: Some(connection),
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    fn check_in(&self, connection: Connection) {
        if connection.is_broken()
            || connection.generation != self.generation.load(Ordering::Acquire)
        {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(connection);
    }
}

/// A checked-out connection; back to the pool on drop (unless broken).
#[derive(Debug)]
pub(crate) struct PooledConnection {
    connection: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConnection {
    /// Runs one exchange; a network error retires the pool's connections.
    ///
    /// # Errors
    /// As [`Connection::round_trip`].
    pub async fn round_trip(
        &mut self,
        body: &bson::Document,
        sequence: Option<(&str, &[bson::RawDocumentBuf])>,
    ) -> Result<bson::Document> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(Error::network("the connection was already returned"));
        };
        let result = connection.round_trip(body, sequence).await;
        if let Err(err) = &result
            && err.is_network()
        {
            self.pool.clear();
        }
        result
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool.check_in(connection);
        }
    }
}
