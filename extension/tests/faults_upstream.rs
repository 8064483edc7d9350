//! Upstream faults mongo-pool must survive, with real processes: atlas-sim (TLS, MONGODB-AWS
//! with temporary credentials) injecting the fault, mongo-pool as a sidecar with trace logs,
//! and the Rust `mongodb` driver on its socket. Each test asserts what the function would see
//! (errors, their codes and labels, how long they took, the documents stored) and what Atlas
//! would see (`/status`: connections, authentications, STS calls), then that no secret reached
//! a log line or an error (`Fault::finish`).
//!
//! Cases (issue 10): a freeze with a silent drop (2), a stepdown under 16 writers (3),
//! dropped connections under load (4), no primary for longer than `serverSelectionTimeoutMS`
//! (5), STS throttling (6).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faults_support {
    pub mod harness;
}

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use faults_support::harness::{Fault, per_member, server_code, total};
use mongo_pool_testkit::process::Signal;
use mongo_pool_testkit::process::wait_for;
use mongodb::Collection;
use mongodb::error::{Error, ErrorKind};

/// Every scenario finishes within this, or fails.
const LIMIT: Duration = Duration::from_secs(120);

async fn bounded<F: std::future::Future<Output = ()>>(scenario: F) {
    tokio::time::timeout(LIMIT, scenario)
        .await
        .expect("the scenario finishes in time");
}

/// A driver error a retrying application may retry: a network error, a server selection
/// timeout, one labelled `RetryableWriteError`, or a code the retryable-reads/writes
/// specifications list.
fn is_retryable(error: &Error) -> bool {
    const RETRYABLE_CODES: &[i32] = &[
        6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
    ];
    error.contains_label("RetryableWriteError")
        || matches!(
            error.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. }
        )
        || server_code(error).is_some_and(|c| RETRYABLE_CODES.contains(&c))
}

// ---- 2. Freeze, then a silent drop -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_query_after_a_freeze_and_a_silent_drop_succeeds_within_connect_timeout_plus_one_reconnect()
 {
    bounded(async {
        let connect_timeout = Duration::from_millis(1000);
        let fault = Fault::start(
            &["--members", "1"],
            "connectTimeoutMS=1000&heartbeatFrequencyMS=60000",
            &[],
        )
        .await;
        let client = fault.client("serverSelectionTimeoutMS=20000").await;
        let notes: Collection<Document> = client.database("app").collection("freeze");
        notes.insert_one(doc! { "_id": "before" }).await.unwrap();
        let before = fault.sim.status().await.unwrap();

        // Frozen: nothing in mongo-pool runs while the network silently drops its connections.
        fault.pool.signal(Signal::SIGSTOP).unwrap();
        let blackholed = fault.sim.post("/blackhole?ms=120000", None).await;
        tokio::time::sleep(mongo_pool::freeze::GAP + Duration::from_millis(500)).await;
        fault.pool.signal(Signal::SIGCONT).unwrap();
        let blackholed = blackholed.unwrap();
        assert!(
            blackholed["connections"].as_u64().unwrap_or(0) >= 1,
            "the freeze strands a live upstream connection: {blackholed}"
        );

        let started = Instant::now();
        let found = notes.find_one(doc! { "_id": "before" }).await;
        let took = started.elapsed();
        let found = found.unwrap_or_else(|e| {
            fault.saw(&e);
            panic!("the first query after the thaw failed: {e}")
        });
        assert_eq!(found, Some(doc! { "_id": "before" }));
        // connectTimeoutMS for the ping of the stranded connection, then one reconnect (TCP,
        // TLS, hello, MONGODB-AWS: milliseconds on loopback; seconds of margin for a loaded
        // machine). A wait for a TCP timeout would take minutes.
        assert!(
            took < connect_timeout + Duration::from_secs(6),
            "the first query after the thaw took {took:?}"
        );
        let after = fault.sim.status().await.unwrap();
        assert!(
            total(&after, "connections", "total_created")
                > total(&before, "connections", "total_created"),
            "the stranded connection was replaced: {after}"
        );
        let stats = client
            .database("admin")
            .run_command(doc! { "mongoPoolStats": 1 })
            .await
            .unwrap();
        assert!(stats.get_i64("freezes").unwrap() >= 1, "{stats}");
        assert!(stats.get_i64("pingFailures").unwrap() >= 1, "{stats}");
        eprintln!("first query after freeze + blackhole: {took:?}");
        client.shutdown().await;
        fault.finish().await;
    })
    .await;
}

// ---- 3. Stepdown under 16 writers ------------------------------------------------------------

const WRITERS: usize = 16;
const WRITES_PER_WRITER: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepdown_under_sixteen_retrying_writers_stores_every_acknowledged_write_exactly_once() {
    bounded(async {
        let fault = Arc::new(Fault::start(&[], "", &[]).await);
        let old_primary = fault.sim.start.primary.clone().expect("a primary");
        let acknowledged_total = Arc::new(AtomicUsize::new(0));

        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let fault = Arc::clone(&fault);
            let acknowledged_total = Arc::clone(&acknowledged_total);
            writers.push(tokio::spawn(async move {
                // Retryable writes are the driver's default.
                let client = fault.client(&format!("appName=writer-{w}")).await;
                let coll: Collection<Document> = client.database("app").collection("stepdown");
                let mut acknowledged = Vec::new();
                let mut failed = Vec::new();
                for i in 0..WRITES_PER_WRITER {
                    let key = format!("w{w}-{i}");
                    match coll.insert_one(doc! { "key": &key, "w": w as i32 }).await {
                        Ok(_) => {
                            acknowledged.push(key);
                            acknowledged_total.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(e) => {
                            fault.saw(&e);
                            failed.push((key, e.to_string()));
                        }
                    }
                }
                client.shutdown().await;
                (acknowledged, failed)
            }));
        }

        // Step down once a third of the writes are in, while every writer is still writing.
        let third = WRITERS * WRITES_PER_WRITER / 3;
        wait_for("a third of the writes", Duration::from_secs(60), || {
            let n = acknowledged_total.load(Ordering::Acquire);
            async move { n >= third }
        })
        .await
        .unwrap();
        let stepdown = fault.sim.post("/stepdown", None).await.unwrap();
        let new_primary = stepdown["primary"].as_str().unwrap().to_owned();
        assert_ne!(new_primary, old_primary, "{stepdown}");
        let at_stepdown = acknowledged_total.load(Ordering::Acquire);

        let mut acknowledged = Vec::new();
        let mut failed = Vec::new();
        for (w, writer) in writers.into_iter().enumerate() {
            let (acked, fails) = writer.await.unwrap();
            assert!(
                fails.len() <= 1,
                "writer {w}: at most one write fails across a stepdown (the driver's single retry \
                 lands on the new primary); failed: {fails:?}"
            );
            acknowledged.extend(acked);
            failed.extend(fails);
        }
        assert!(
            at_stepdown < WRITERS * WRITES_PER_WRITER,
            "the stepdown happened while writes were going on"
        );

        // Every acknowledged write is stored exactly once; a failed one at most once.
        let client = fault.client("").await;
        let coll: Collection<Document> = client.database("app").collection("stepdown");
        let mut stored: HashMap<String, usize> = HashMap::new();
        {
            let mut cursor = coll.find(doc! {}).await.unwrap();
            while cursor.advance().await.unwrap() {
                let key = cursor.current().get_str("key").unwrap().to_owned();
                *stored.entry(key).or_default() += 1;
            }
        }
        for key in &acknowledged {
            assert_eq!(
                stored.get(key).copied(),
                Some(1),
                "acknowledged write {key} is stored exactly once"
            );
        }
        let failed_keys: HashSet<&String> = failed.iter().map(|(k, _)| k).collect();
        for (key, n) in &stored {
            assert!(*n == 1, "{key} stored {n} times");
            assert!(
                acknowledged.contains(key) || failed_keys.contains(key),
                "{key} was stored but never written"
            );
        }
        assert_eq!(
            acknowledged.len() + failed.len(),
            WRITERS * WRITES_PER_WRITER
        );

        // Reads resume, on the new primary.
        let finds_before = find_count(&fault, &new_primary).await;
        for key in acknowledged.iter().take(5) {
            let found = coll.find_one(doc! { "key": key }).await.unwrap();
            assert!(found.is_some(), "{key} is readable after the stepdown");
        }
        assert!(
            find_count(&fault, &new_primary).await >= finds_before + 5,
            "the reads after the stepdown ran on the new primary {new_primary}"
        );
        eprintln!(
            "stepdown after {at_stepdown} writes: {} acknowledged, {} failed ({failed:?})",
            acknowledged.len(),
            failed.len()
        );
        client.shutdown().await;
        let fault = Arc::into_inner(fault).expect("every writer is done");
        fault.finish().await;
    })
    .await;
}

/// `find` commands `member` received.
async fn find_count(fault: &Fault, member: &str) -> u64 {
    let status = fault.sim.status().await.unwrap();
    status["members"][member]["commands"]["find"]
        .as_u64()
        .unwrap_or(0)
}

// ---- 4. Dropped connections under load -------------------------------------------------------

const MAX_POOL_SIZE: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connections_under_load_shows_only_retryable_errors_and_the_pool_refills_without_leaks()
 {
    bounded(async {
        let fault = Arc::new(Fault::start(&[], &format!("maxPoolSize={MAX_POOL_SIZE}"), &[]).await);
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicUsize::new(0));
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();

        // Atlas's view of mongo-pool's connections, sampled while the load runs.
        let most: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let watcher = {
            let (fault, stop, most) = (Arc::clone(&fault), Arc::clone(&stop), Arc::clone(&most));
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    if let Ok(status) = fault.sim.status().await {
                        let mut most = most.lock().unwrap();
                        for (member, n) in per_member(&status, "connections", "current") {
                            let seen = most.entry(member).or_default();
                            *seen = (*seen).max(n);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };

        let mut clients = Vec::new();
        for c in 0..8 {
            let (fault, stop, ops, errors) = (
                Arc::clone(&fault),
                Arc::clone(&stop),
                Arc::clone(&ops),
                Arc::clone(&errors),
            );
            clients.push(tokio::spawn(async move {
                let client = fault.client("maxPoolSize=2").await;
                let coll: Collection<Document> = client.database("app").collection("drops");
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    let result = if i % 2 == 0 {
                        coll.insert_one(doc! { "c": c, "i": i }).await.map(|_| ())
                    } else {
                        coll.find_one(doc! { "c": c }).await.map(|_| ())
                    };
                    if let Err(e) = result {
                        fault.saw(&e);
                        assert!(
                            is_retryable(&e),
                            "client {c} saw a non-retryable error: {e:?}"
                        );
                        errors.lock().unwrap().push(e.to_string());
                    }
                    ops.fetch_add(1, Ordering::AcqRel);
                    i += 1;
                }
                client.shutdown().await;
            }));
        }

        let mut dropped = 0;
        for round in 1..=3 {
            let target = round * 60;
            wait_for("load", Duration::from_secs(60), || {
                let n = ops.load(Ordering::Acquire);
                async move { n >= target }
            })
            .await
            .unwrap();
            dropped += fault.sim.post("/drop-connections", None).await.unwrap()["dropped"]
                .as_u64()
                .unwrap();
        }
        let after_drops = ops.load(Ordering::Acquire);
        wait_for("load after the drops", Duration::from_secs(60), || {
            let n = ops.load(Ordering::Acquire);
            async move { n >= after_drops + 60 }
        })
        .await
        .unwrap();
        stop.store(true, Ordering::Release);
        for client in clients {
            client.await.expect("a client saw only retryable errors");
        }
        watcher.await.unwrap();
        assert!(
            dropped >= 3,
            "connections were dropped under load: {dropped}"
        );

        // The pool refilled: a query works and mongo-pool holds upstream connections again,
        // never more than maxPoolSize per member.
        let client = fault.client("").await;
        let coll: Collection<Document> = client.database("app").collection("drops");
        assert!(coll.count_documents(doc! {}).await.unwrap() >= 1);
        client.shutdown().await;
        let status = fault.sim.status().await.unwrap();
        assert!(total(&status, "connections", "current") >= 1, "{status}");
        let most = most.lock().unwrap().clone();
        for (member, n) in most.iter().map(|(m, n)| (m.clone(), *n)).chain(per_member(
            &status,
            "connections",
            "current",
        )) {
            assert!(
                n <= MAX_POOL_SIZE,
                "{member} had {n} connections from mongo-pool at once (maxPoolSize={MAX_POOL_SIZE})"
            );
        }
        // At most one authentication per upstream connection (one dropped during its
        // authentication counts as received, not successful), and one for every connection
        // except those atlas-sim dropped before it got that far (in TLS or `hello`).
        let received = status["auth"]["received"].as_u64().unwrap();
        let created = total(&status, "connections", "total_created");
        assert!(
            received <= created,
            "a connection authenticated twice: {status}"
        );
        assert!(
            created - received <= dropped,
            "{} connections never authenticated but only {dropped} were dropped: {status}",
            created - received
        );
        let errors = errors.lock().unwrap().clone();
        eprintln!(
            "{} operations, {dropped} connections dropped in 3 rounds, {} retryable errors seen; \
             most per member {most:?}",
            ops.load(Ordering::Acquire),
            errors.len()
        );

        // No leak: once mongo-pool stops, Atlas has no connection left from it.
        let fault = Arc::into_inner(fault).expect("every client is done");
        fault.finish_all_closed().await;
    })
    .await;
}

// ---- 5. No primary for longer than serverSelectionTimeoutMS ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_primary_for_longer_than_server_selection_timeout_gives_a_retryable_error_then_recovers()
{
    bounded(async {
        let server_selection = Duration::from_millis(1000);
        let fault = Fault::start(
            &[],
            "serverSelectionTimeoutMS=1000&heartbeatFrequencyMS=500",
            &[],
        )
        .await;
        let client = fault.client("serverSelectionTimeoutMS=20000").await;
        let coll: Collection<Document> = client.database("app").collection("no_primary");
        coll.insert_one(doc! { "_id": 0 }).await.unwrap();

        fault.sim.post("/no-primary?ms=5000", None).await.unwrap();
        let started = Instant::now();
        let err = coll
            .insert_one(doc! { "_id": 1 })
            .await
            .expect_err("no primary: the write fails");
        let took = started.elapsed();
        fault.saw(&err);
        assert!(is_retryable(&err), "a retryable error: {err:?}");
        assert!(
            err.contains_label("RetryableWriteError"),
            "labelled RetryableWriteError: {err:?}"
        );
        // The driver tries twice (its one retry); each attempt gives up after
        // serverSelectionTimeoutMS in mongo-pool, plus margin for a loaded machine.
        assert!(
            took < 2 * server_selection + Duration::from_secs(5),
            "the error took {took:?}"
        );

        // A read waits for a primary no longer than serverSelectionTimeoutMS either.
        let started = Instant::now();
        let read = coll.find_one(doc! { "_id": 0 }).await;
        let read_took = started.elapsed();
        if let Err(e) = &read {
            fault.saw(e);
            assert!(is_retryable(e), "{e:?}");
        }
        assert!(
            read_took < 2 * server_selection + Duration::from_secs(5),
            "the read took {read_took:?}"
        );

        // A primary returns: the same write succeeds, and is stored once.
        let mut recovered = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match coll.insert_one(doc! { "_id": 1 }).await {
                Ok(_) => {
                    recovered = Some(started.elapsed());
                    break;
                }
                Err(e) if server_code(&e) == Some(11000) => {
                    recovered = Some(started.elapsed());
                    break;
                }
                Err(e) => {
                    fault.saw(&e);
                    assert!(is_retryable(&e), "{e:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let recovered = recovered.expect("writes succeed once a primary is back");
        assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 2);
        eprintln!(
            "no primary: write error after {took:?} ({}), read after {read_took:?}, recovered after {recovered:?}",
            err
        );
        client.shutdown().await;
        fault.finish().await;
    })
    .await;
}

// ---- 6. STS throttling -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_throttling_bounds_authentication_attempts_and_queries_succeed_once_it_ends() {
    bounded(async {
        let window = Duration::from_secs(4);
        let dir = mongo_pool_testkit::pool_process::socket_dir().unwrap();
        let sim = faults_support::harness::sim(dir.path(), &[]).await;
        sim.post("/sts/throttle?times=1000000", None).await.unwrap();
        let started = Instant::now();
        let fault = Fault::with_sim(sim, dir, "serverSelectionTimeoutMS=1000", &[]).await;
        // mongo-pool answers the driver's handshake with a retryable error until it has reached
        // Atlas: the driver's own server selection gives up after its timeout, and its monitor
        // checks again every 500 ms.
        let client = fault
            .client("serverSelectionTimeoutMS=2000&heartbeatFrequencyMS=500")
            .await;
        let coll: Collection<Document> = client.database("app").collection("throttled");

        // While STS throttles, a query fails in bounded time with a retryable error.
        let query_started = Instant::now();
        let err = coll
            .find_one(doc! {})
            .await
            .expect_err("no authenticated connection while STS throttles");
        let query_took = query_started.elapsed();
        fault.saw(&err);
        assert!(is_retryable(&err), "{err:?}");
        assert!(
            query_took < Duration::from_secs(8),
            "the query failed after {query_took:?}"
        );

        let left = window.saturating_sub(started.elapsed());
        tokio::time::sleep(left).await;
        let status = fault.sim.status().await.unwrap();
        let attempts = status["sts_calls"].as_u64().unwrap();
        let elapsed = started.elapsed();
        // 3 members x maxConnecting 2 with exponential backoff from 500 ms (with jitter),
        // shared by the members: a few attempts in the window. A hot loop would make thousands.
        assert!(attempts >= 1, "mongo-pool tried: {status}");
        assert!(
            attempts <= 40,
            "{attempts} authentication attempts in {elapsed:?} while throttled: {status}"
        );
        assert_eq!(status["auth"]["successful"].as_u64(), Some(0), "{status}");

        // Throttling ends: queries succeed.
        fault.sim.post("/sts/throttle?times=0", None).await.unwrap();
        let ended = Instant::now();
        let mut ok_after = None;
        while ended.elapsed() < Duration::from_secs(30) {
            match coll.find_one(doc! {}).await {
                Ok(_) => {
                    ok_after = Some(ended.elapsed());
                    break;
                }
                Err(e) => {
                    fault.saw(&e);
                    assert!(is_retryable(&e), "{e:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let ok_after = ok_after.expect("queries succeed once throttling ends");
        coll.insert_one(doc! { "after": "throttle" }).await.unwrap();
        eprintln!(
            "STS throttling: {attempts} attempts in {elapsed:?}; query error after {query_took:?}; \
             success {ok_after:?} after it ended"
        );
        client.shutdown().await;
        fault.finish().await;
    })
    .await;
}
