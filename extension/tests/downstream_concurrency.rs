//! Many downstream connections over a small upstream pool: 64 driver connections work at once
//! while mongo-pool's `maxPoolSize` is 2; Atlas (atlas-sim) never sees more than 2 connections
//! per member, every operation succeeds, and there is exactly one MONGODB-AWS authentication
//! per upstream connection created (none per request).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use downstream_support::rig::{
    auth_successful, client, connections, pool, pool_stats, sim, total_created,
};
use mongodb::Collection;

const OPS_PER_CLIENT: usize = 12;
const MAX_POOL_SIZE: u64 = 2;
/// mongo-pool's `waitQueueTimeoutMS`: generous, so no check-out should time out.
const WAIT_QUEUE_TIMEOUT_MS: u64 = 10_000;
/// A loose bound on mongo-pool's resident memory after the run.
const MAX_RSS_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_driver_connections_share_two_upstream_connections_per_member_authenticated_once_each()
 {
    many_clients_over_a_small_pool(64, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_driver_connections_stay_within_max_pool_size_and_complete_or_time_out()
 {
    many_clients_over_a_small_pool(256, true).await;
}

/// mongo-pool's resident set, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `clients` drivers, each with its own one-connection pool (plus its monitoring connection),
/// against mongo-pool with `maxPoolSize=2`. With `timeouts_allowed`, an operation may fail
/// only with mongo-pool's check-out timeout (NetworkTimeout, 89).
async fn many_clients_over_a_small_pool(clients: usize, timeouts_allowed: bool) {
    let sim = Arc::new(sim(&[]).await);
    // Each driver holds two downstream connections (its pool and its monitor).
    let max_clients = (clients * 2 + 16).to_string();
    let pool = pool(
        &sim,
        &format!("maxPoolSize={MAX_POOL_SIZE}&waitQueueTimeoutMS={WAIT_QUEUE_TIMEOUT_MS}"),
        &[("MONGO_POOL_MAX_CLIENTS", &max_clients)],
    )
    .await;

    // Watch every member's open connections at atlas-sim while the clients run.
    let done = Arc::new(AtomicBool::new(false));
    let most: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let watcher = {
        let (done, most, sim) = (Arc::clone(&done), Arc::clone(&most), Arc::clone(&sim));
        tokio::spawn(async move {
            let mut polls = 0u64;
            while !done.load(Ordering::Acquire) {
                if let Ok(status) = sim.status().await {
                    polls += 1;
                    let mut most = most.lock().unwrap();
                    for (member, n) in connections(&status, "current") {
                        let seen = most.entry(member).or_default();
                        *seen = (*seen).max(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            polls
        })
    };

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let uri = pool.socket_uri();
        tasks.push(tokio::spawn(async move {
            let client = mongodb::Client::with_uri_str(format!(
                "{uri}/?maxPoolSize=1&appName=downstream-c{c}"
            ))
            .await
            .expect("a client");
            let coll: Collection<Document> = client.database("load").collection("docs");
            let mut failures = Vec::new();
            for i in 0..OPS_PER_CLIENT {
                let id = format!("c{c}-{i}");
                let result = if i % 2 == 0 {
                    coll.insert_one(doc! { "_id": &id, "c": c as i32, "i": i as i32 })
                        .await
                        .map(|_| ())
                } else {
                    coll.count_documents(doc! { "c": c as i32 }).await.map(|n| {
                        assert!(n >= 1, "client {c} sees its own writes");
                    })
                };
                if let Err(e) = result {
                    failures.push((server_code(&e), format!("client {c} op {i}: {e}")));
                }
            }
            client.shutdown().await;
            failures
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        let task = tokio::time::timeout(Duration::from_secs(180), task)
            .await
            .expect("every client finishes within 180 s");
        failures.extend(task.expect("a client task"));
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    let polls = watcher.await.unwrap();

    let total_ops = clients * OPS_PER_CLIENT;
    if timeouts_allowed {
        let other: Vec<&(Option<i32>, String)> = failures
            .iter()
            .filter(|(code, _)| *code != Some(89))
            .collect();
        assert!(
            other.is_empty(),
            "{} of {total_ops} operations failed with something other than the check-out timeout, e.g. {:?}",
            other.len(),
            &other[..other.len().min(5)]
        );
    } else {
        assert!(
            failures.is_empty(),
            "{} of {total_ops} operations failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    assert!(polls >= 1, "the watcher polled /status");

    let status = sim.status().await.unwrap();
    let most = most.lock().unwrap().clone();
    for (member, n) in &most {
        assert!(
            *n <= MAX_POOL_SIZE,
            "atlas-sim saw {n} connections from mongo-pool at once to {member} (maxPoolSize={MAX_POOL_SIZE}); all: {most:?}"
        );
    }
    for (member, n) in connections(&status, "current") {
        assert!(
            n <= MAX_POOL_SIZE,
            "{member} has {n} open connections at the end (maxPoolSize={MAX_POOL_SIZE})"
        );
    }

    // Every write is there once.
    let check = client(&pool, "").await;
    let stored = check
        .database("load")
        .collection::<Document>("docs")
        .count_documents(doc! {})
        .await
        .unwrap();
    let failed_inserts = failures
        .iter()
        .filter(|(_, what)| what.contains(" op ") && op_index(what).is_multiple_of(2))
        .count();
    assert_eq!(stored, (total_ops / 2 - failed_inserts) as u64);
    check.shutdown().await;

    // One authentication per upstream connection, none per request.
    let status = sim.status().await.unwrap();
    let created = total_created(&status);
    let authentications = auth_successful(&status);
    assert_eq!(
        authentications, created,
        "MONGODB-AWS authentications ({authentications}) == upstream connections created ({created}); /status: {status}"
    );
    assert!(
        created <= 3 * MAX_POOL_SIZE,
        "no connection churn: {created} upstream connections created for 3 members"
    );
    let stats = pool_stats(&pool).await;
    let auth_ok = stats
        .get_document("authentications")
        .unwrap()
        .get_i64("ok")
        .unwrap();
    assert_eq!(
        u64::try_from(auth_ok).unwrap(),
        authentications,
        "mongoPoolStats counts the same authentications as atlas-sim: {stats}"
    );
    let downstream_total = stats
        .get_document("downstreamConnections")
        .unwrap()
        .get_i64("total")
        .unwrap();
    assert!(
        downstream_total >= clients as i64,
        "{downstream_total} downstream connections accepted"
    );
    let rss = rss_kib(pool.pid().expect("mongo-pool is running"));
    assert!(
        rss <= MAX_RSS_KIB,
        "mongo-pool's RSS is {rss} KiB after {clients} clients"
    );
    eprintln!(
        "{clients} clients x {OPS_PER_CLIENT} ops in {elapsed:?}; {} failed (check-out timeouts); \
         most connections per member {most:?}; upstream connections created {created}; \
         authentications {authentications}; check-out waits {}; RSS {rss} KiB",
        failures.len(),
        stats.get_i64("checkoutWaits").unwrap_or(-1)
    );
    let exit = pool.stop().await.unwrap();
    assert!(exit.success(), "mongo-pool exits 0 on SIGTERM: {exit}");
}

/// `i` of a failure described as "client c op i: ...".
fn op_index(what: &str) -> usize {
    what.split(" op ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("no op index in {what}"))
}

/// The server (or mongo-pool) error code of a command failure, also when the driver wraps it.
fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(e) => Some(e.code),
        _ => std::error::Error::source(error)
            .and_then(|s| s.downcast_ref::<mongodb::error::Error>())
            .and_then(server_code),
    }
}
