//! The load the round-trip and throughput scenarios put on each variant: `find` of the
//! seeded note by `_id`, through (a) the official driver straight to atlas-sim, (b) the same
//! driver on mongo-pool's socket, (c) `mongo-pool-client` on the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bson::{Document, doc};

use crate::rig::{COLLECTION, DB, NOTE_ID};

/// One of the three ways to reach the data.
#[derive(Debug, Clone)]
pub enum Finder {
    /// The official driver (straight to atlas-sim, or on mongo-pool's socket).
    Driver(mongodb::Collection<Document>),
    /// mongo-pool-client on the socket.
    PoolClient(mongo_pool_client::Collection<Document>),
}

impl Finder {
    /// The benchmark collection through a driver client.
    pub fn driver(client: &mongodb::Client) -> Finder {
        Finder::Driver(client.database(DB).collection(COLLECTION))
    }

    /// The benchmark collection through mongo-pool-client.
    pub fn pool_client(client: &mongo_pool_client::Client) -> Finder {
        Finder::PoolClient(client.database(DB).collection(COLLECTION))
    }

    /// `find` by `_id` of the seeded note.
    ///
    /// # Errors
    /// When the call fails or the note is missing.
    pub async fn find(&self) -> anyhow::Result<()> {
        let found = match self {
            Finder::Driver(c) => c.find_one(doc! {"_id": NOTE_ID}).await?,
            Finder::PoolClient(c) => c.find_one(doc! {"_id": NOTE_ID}, None).await?,
        };
        if found.is_none() {
            bail!("the seeded note {NOTE_ID} is missing");
        }
        Ok(())
    }
}

/// `n` sequential finds; the latency of each, in microseconds.
///
/// # Errors
/// The first failed find.
pub async fn latencies(finder: &Finder, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        finder.find().await?;
        out.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

/// `clients` concurrent loops of finds for `length`; operations per second.
///
/// # Errors
/// When any find fails.
pub async fn throughput(finder: &Finder, clients: usize, length: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let finder = finder.clone();
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            while Instant::now() < deadline {
                finder.find().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// `n` finds spread over `clients` concurrent loops (the CPU and RSS measurements).
///
/// # Errors
/// When any find fails.
pub async fn fixed_count(finder: &Finder, clients: usize, n: usize) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let per = n.div_ceil(clients.max(1));
    for _ in 0..clients.max(1) {
        let finder = finder.clone();
        tasks.spawn(async move {
            for _ in 0..per {
                finder.find().await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}
