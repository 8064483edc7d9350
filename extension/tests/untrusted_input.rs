//! Untrusted input from a downstream client, with real processes (atlas-sim, the `mongo-pool`
//! binary as a sidecar, the Rust `mongodb` driver and raw wire-protocol connections on its
//! socket). Issue 21, items 2 to 4:
//!
//! - `lsid`s that are huge or deeply nested are answered but never remembered: memory stays
//!   bounded, and SHUTDOWN (SIGTERM) still exits 0, ends the good sessions and removes the socket;
//! - a flood of invalid BSON next to a well-behaved client clears no pool and causes no
//!   authentication, and the well-behaved client's inserts all succeed;
//! - an upstream connection lost mid-request is discarded alone;
//! - 60 connections each holding a 47 MB message keep mongo-pool's RSS under its buffer budget
//!   plus 32 MiB, and OP_COMPRESSED is refused before anything is inflated.
//!
//! Figures (RSS, throughput) are printed with `--nocapture`; none is asserted against a clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::spec::BinarySubtype;
use bson::{Binary, Document, RawDocumentBuf, doc, rawdoc};
use downstream_support::rig::{Raw, auth_successful, client, pool, pool_stats, sim};
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::{Signal, wait_for};
use mongo_pool_wire::{Compressor, Frame, OpMsgBuilder};
use mongodb::Collection;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const LIMIT: Duration = Duration::from_secs(180);
const MIB: u64 = 1024 * 1024;

async fn bounded<F: std::future::Future<Output = ()>>(scenario: F) {
    tokio::time::timeout(LIMIT, scenario)
        .await
        .expect("the scenario finishes in time");
}

/// `VmRSS` and `VmHWM` of `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `logs` without ANSI colour sequences (`ESC [ ... m`).
fn plain(logs: &str) -> String {
    let mut out = String::with_capacity(logs.len());
    let mut chars = logs.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn uuid(n: u8) -> Binary {
    Binary {
        subtype: BinarySubtype::Uuid,
        bytes: vec![n; 16],
    }
}

/// `{a: {a: ... {} ...}}`, `levels` documents deep, built in one pass.
fn nested(levels: usize) -> RawDocumentBuf {
    let mut out = Vec::with_capacity(levels * 8);
    for _ in 1..levels {
        out.extend_from_slice(&[0, 0, 0, 0, 0x03, b'a', 0]);
    }
    out.extend_from_slice(&[5, 0, 0, 0, 0]);
    for level in (0..levels - 1).rev() {
        out.push(0);
        let start = level * 7;
        let len = u32::try_from(out.len() - start).unwrap();
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
    RawDocumentBuf::from_bytes(out).unwrap()
}

/// Sends `body` as an OP_MSG on `raw` and returns the reply body.
async fn send(raw: &mut Raw, body: &RawDocumentBuf) -> Document {
    let frame = OpMsgBuilder::new(body).request_id(5).build().unwrap();
    reply_body(&raw.exchange(frame).await.unwrap())
}

fn reply_body(reply: &Frame) -> Document {
    Document::try_from(reply.op_msg().unwrap().body).unwrap()
}

fn code(reply: &Document) -> i32 {
    reply
        .get_i32("code")
        .unwrap_or_else(|_| panic!("no code in {reply}"))
}

/// `mongoPoolStats` pinned.sessions.
async fn sessions(pool: &MongoPool) -> i64 {
    pool_stats(pool)
        .await
        .get_document("pinned")
        .unwrap()
        .get_i64("sessions")
        .unwrap()
}

/// The primary's pool in `mongoPoolStats`.
fn primary_pool(stats: &Document) -> Document {
    stats
        .get_array("pools")
        .unwrap()
        .iter()
        .filter_map(|p| p.as_document())
        .find(|p| p.get_str("state").ok() == Some("Primary"))
        .unwrap_or_else(|| panic!("no primary pool in {stats}"))
        .clone()
}

fn authentications_ok(stats: &Document) -> i64 {
    stats
        .get_document("authentications")
        .unwrap()
        .get_i64("ok")
        .unwrap()
}

/// Σ over members of `/status` commands.<name>.
fn commands(status: &Value, name: &str) -> u64 {
    status["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["commands"][name].as_u64().unwrap_or(0))
        .sum()
}

// ---- 2. lsids that cost memory or crash --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_megabyte_lsids_are_answered_but_never_remembered_and_rss_stays_bounded() {
    bounded(async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[]).await;
        let pid = pool.pid().unwrap();
        let client = client(&pool, "").await;
        let coll: Collection<Document> = client.database("app").collection("lsid");
        coll.insert_one(doc! { "_id": 1 }).await.unwrap();
        let good = sessions(&pool).await;
        assert!(
            good >= 1,
            "the driver's session is remembered once accepted"
        );
        let (rss_before, _) = memory(pid);

        // The case: 100 getMores, each with a 16 MB lsid.
        let pad = "x".repeat(16 * 1024 * 1024 - 100);
        let lsid = rawdoc! { "id": uuid(7), "pad": pad.as_str() };
        let get_more = rawdoc! { "getMore": 42_i64, "collection": "c", "$db": "app", "lsid": lsid };
        let mut raw = Raw::connect(&pool).await;
        for _ in 0..100 {
            let reply = send(&mut raw, &get_more).await;
            assert_eq!(code(&reply), 43, "an unknown cursor: {reply}");
        }
        // Forwarded and accepted by the server (`ok: 1`), still not remembered: a 1 MB lsid.
        let lsid = rawdoc! { "id": uuid(8), "pad": &pad[..1024 * 1024] };
        let find = rawdoc! { "find": "lsid", "$db": "app", "lsid": lsid };
        for _ in 0..5 {
            let reply = send(&mut raw, &find).await;
            assert!(reply.get("ok").is_some(), "{reply}");
        }
        assert_eq!(sessions(&pool).await, good, "no odd lsid was remembered");
        let (rss_after, hwm) = memory(pid);
        eprintln!(
            "100 getMores with a 16 MB lsid + 5 finds with a 1 MB lsid: RSS {} MiB -> {} MiB \
             (peak {} MiB); sessions remembered {good}",
            rss_before / MIB,
            rss_after / MIB,
            hwm / MIB
        );
        assert!(
            rss_after < 128 * MIB,
            "RSS grew to {} MiB after 100 16 MB lsids",
            rss_after / MIB
        );
        coll.insert_one(doc! { "_id": 2 }).await.unwrap();
        client.shutdown().await;
        assert!(pool.stop().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_level_lsid_then_sigterm_exits_0_ends_the_good_sessions_and_removes_the_socket() {
    bounded(async {
        let sim = sim(&[]).await;
        let mut pool = pool(&sim, "", &[]).await;
        let client = client(&pool, "").await;
        let coll: Collection<Document> = client.database("app").collection("deep");
        for n in 0..2 {
            let mut session = client.start_session().await.unwrap();
            coll.insert_one(doc! { "n": n })
                .session(&mut session)
                .await
                .unwrap();
            // Kept open: the driver would end it itself when it returns to its pool.
            std::mem::forget(session);
        }
        let good = sessions(&pool).await;
        assert!(good >= 2, "two driver sessions: {good}");

        let mut raw = Raw::connect(&pool).await;
        let deep = rawdoc! { "find": "deep", "$db": "app", "lsid": nested(10_000) };
        let reply = send(&mut raw, &deep).await;
        assert_eq!(code(&reply), 22, "{reply}");
        assert_eq!(reply.get_str("codeName").ok(), Some("InvalidBSON"));
        // Deep but within the cap: forwarded, not remembered.
        let within = rawdoc! { "find": "deep", "$db": "app", "lsid": nested(150) };
        let reply = send(&mut raw, &within).await;
        assert!(reply.get("ok").is_some(), "{reply}");
        let ping = raw.command(&doc! { "ping": 1, "$db": "admin" }).await;
        assert!(ping.is_ok(), "the connection stays open: {ping:?}");
        assert_eq!(sessions(&pool).await, good);

        let socket = pool.socket_path().to_owned();
        pool.signal(Signal::SIGTERM).unwrap();
        let exit = pool.wait_exit(Duration::from_secs(10)).await.unwrap();
        let logs = plain(&pool.logs());
        assert!(exit.success(), "mongo-pool exits 0: {exit}\n{logs}");
        assert!(!socket.exists(), "the socket file is removed");
        assert!(
            logs.contains(&format!("sessions_ended={good}")),
            "endSessions for the {good} good sessions:\n{logs}"
        );
        let status = sim.status().await.unwrap();
        assert!(commands(&status, "endSessions") >= 1, "{status}");
        drop(client);
    })
    .await;
}

// ---- 3. One client must not clear the pool for everyone ---------------------------------------

/// A ping whose nested string's length runs past its document: well framed, invalid inside.
fn corrupt_ping() -> Frame {
    let body = rawdoc! { "ping": 1, "$db": "admin", "x": { "s": "abcd" } };
    let mut bytes = body.as_bytes().to_vec();
    let at = bytes.windows(5).position(|w| w == b"abcd\0").unwrap() - 4;
    bytes[at] = 0x40;
    let body = RawDocumentBuf::from_bytes(bytes).unwrap();
    OpMsgBuilder::new(&body).request_id(9).build().unwrap()
}

/// Inserts one document after another for `window`; returns how many. Every insert must work.
async fn insert_for(coll: &Collection<Document>, window: Duration, from: u64) -> u64 {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < window {
        let id = i64::try_from(from + n).unwrap();
        coll.insert_one(doc! { "_id": id })
            .await
            .unwrap_or_else(|e| panic!("insert {id} failed: {e}"));
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalid_bson_next_to_a_writer_clears_no_pool_and_authenticates_no_more() {
    bounded(async {
        const WINDOW: Duration = Duration::from_secs(3);
        let sim = sim(&[]).await;
        // Two warm connections, and no heartbeat during the test that could need a third.
        let pool = pool(&sim, "minPoolSize=2&heartbeatFrequencyMS=60000", &[]).await;
        wait_for("two pooled connections", Duration::from_secs(30), || {
            let pool = &pool;
            async move {
                let stats = pool_stats(pool).await;
                stats
                    .get_array("pools")
                    .unwrap()
                    .iter()
                    .filter_map(|p| p.as_document())
                    .any(|p| {
                        p.get_str("state").ok() == Some("Primary")
                            && p.get_i64("total").ok() == Some(2)
                    })
            }
        })
        .await
        .unwrap();
        let client = client(&pool, "").await;
        let coll: Collection<Document> = client.database("app").collection("flood");
        coll.insert_one(doc! { "_id": -1_i64 }).await.unwrap();

        let auth_before = auth_successful(&sim.status().await.unwrap());
        let stats_before = pool_stats(&pool).await;
        let solo = insert_for(&coll, WINDOW, 0).await;

        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let flooder = {
            let (stop, refused) = (Arc::clone(&stop), Arc::clone(&refused));
            let mut raw = Raw::connect(&pool).await;
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let reply = raw
                        .exchange(corrupt_ping())
                        .await
                        .expect("the flooder's connection stays open");
                    let body = reply_body(&reply);
                    assert_eq!(code(&body), 22, "{body}");
                    refused.fetch_add(1, Ordering::AcqRel);
                    // About 200 a second: twenty times the flood.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let flooded = insert_for(&coll, WINDOW, solo).await;
        stop.store(true, Ordering::Release);
        flooder.await.unwrap();
        let refused = refused.load(Ordering::Acquire);

        let status = sim.status().await.unwrap();
        let stats_after = pool_stats(&pool).await;
        assert!(refused >= 50, "the flood ran: {refused} invalid requests");
        assert_eq!(
            auth_successful(&status),
            auth_before,
            "no authentication during the flood: {status}"
        );
        assert_eq!(
            authentications_ok(&stats_after),
            authentications_ok(&stats_before),
            "{stats_after}"
        );
        assert_eq!(
            primary_pool(&stats_after).get_i64("generation").ok(),
            primary_pool(&stats_before).get_i64("generation").ok(),
            "the primary's pool was never cleared: {stats_after}"
        );
        assert!(
            stats_after.get_i64("rejected").unwrap() - stats_before.get_i64("rejected").unwrap()
                >= i64::try_from(refused).unwrap()
        );
        assert_eq!(
            coll.count_documents(doc! {}).await.unwrap(),
            solo + flooded + 1,
            "every insert is stored"
        );
        eprintln!(
            "inserts in {WINDOW:?}: solo {solo}, next to {refused} invalid requests {flooded} \
             (ratio {:.2}); authentications during the flood: {}",
            flooded as f64 / solo as f64,
            auth_successful(&status) - auth_before
        );
        client.shutdown().await;
        assert!(pool.stop().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_lost_mid_request_is_discarded_alone() {
    bounded(async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "minPoolSize=3&heartbeatFrequencyMS=60000", &[]).await;
        wait_for("three pooled connections", Duration::from_secs(30), || {
            let pool = &pool;
            async move {
                let stats = pool_stats(pool).await;
                stats
                    .get_array("pools")
                    .unwrap()
                    .iter()
                    .filter_map(|p| p.as_document())
                    .any(|p| {
                        p.get_str("state").ok() == Some("Primary")
                            && p.get_i64("total").ok() == Some(3)
                    })
            }
        })
        .await
        .unwrap();
        let before = pool_stats(&pool).await;
        let auth_before = auth_successful(&sim.status().await.unwrap());
        sim.post(
            "/failpoint",
            Some(json!({
                "configureFailPoint": "failCommand", "mode": {"times": 1},
                "data": {"failCommands": ["find"], "closeConnection": true},
            })),
        )
        .await
        .unwrap();
        let mut raw = Raw::connect(&pool).await;
        let find = OpMsgBuilder::new(&rawdoc! { "find": "c", "$db": "app" })
            .build()
            .unwrap();
        let lost = raw.exchange(find).await;
        assert!(
            lost.is_err(),
            "the driver sees its connection closed: {lost:?}"
        );

        // The member is re-checked and stays primary, its pool keeps its generation, and only
        // the lost connection is closed (and replaced, to minPoolSize: one authentication).
        wait_for("the pool back at three", Duration::from_secs(30), || {
            let pool = &pool;
            async move { primary_pool(&pool_stats(pool).await).get_i64("total").ok() == Some(3) }
        })
        .await
        .unwrap();
        let after = pool_stats(&pool).await;
        let closed = |s: &Document| {
            s.get_document("upstreamConnections")
                .unwrap()
                .get_i64("closed")
                .unwrap()
        };
        assert_eq!(
            primary_pool(&after).get_i64("generation").ok(),
            primary_pool(&before).get_i64("generation").ok(),
            "no pool clear: {after}"
        );
        assert_eq!(closed(&after) - closed(&before), 1, "{after}");
        assert!(
            auth_successful(&sim.status().await.unwrap()) <= auth_before + 1,
            "at most the replacement authenticated"
        );
        let client = client(&pool, "").await;
        let coll: Collection<Document> = client.database("app").collection("c");
        assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 0);
        client.shutdown().await;
        assert!(pool.stop().await.unwrap().success());
    })
    .await;
}

// ---- 4. Memory amplification from downstream buffering ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_connections_holding_47_mb_each_keep_rss_under_the_budget_plus_32_mib() {
    bounded(async {
        const BUDGET: u64 = 64 * MIB;
        let sim = sim(&[]).await;
        // A 256 MB function: the budget is a quarter of it.
        let lambda = [
            ("AWS_EXECUTION_ENV", "AWS_Lambda_test"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ];
        let pool = pool(&sim, "", &lambda).await;
        let logs = plain(&pool.logs());
        assert!(logs.contains("buffer_budget_mib=64"), "{logs}");
        let pid = pool.pid().unwrap();
        let client = client(&pool, "").await;
        let coll: Collection<Document> = client.database("app").collection("budget");
        coll.insert_one(doc! { "_id": -1 }).await.unwrap();
        let (rss_before, _) = memory(pid);

        // 47 MB claimed, one byte short: each message stays in flight until the connection is
        // closed as stalled.
        let length: usize = 47_000_000;
        let mut message = Vec::with_capacity(length);
        message.extend_from_slice(&i32::try_from(length).unwrap().to_le_bytes());
        message.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        message.extend_from_slice(&2013i32.to_le_bytes());
        message.resize(length - 1, 0);
        let message = Arc::new(message);
        let mut senders = Vec::new();
        for _ in 0..60 {
            let message = Arc::clone(&message);
            let socket = pool.socket_path().to_owned();
            senders.push(tokio::spawn(async move {
                let mut stream = UnixStream::connect(socket).await.unwrap();
                // Fails once mongo-pool closes the stalled connection.
                let _ = stream.write_all(&message).await;
                let mut buf = [0u8; 16];
                let _ = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await;
            }));
        }
        // Sample while a well-behaved client keeps inserting (small messages never wait).
        let started = Instant::now();
        let mut most = 0;
        let mut inserts = 0;
        while started.elapsed() < Duration::from_secs(12) {
            coll.insert_one(doc! { "_id": inserts }).await.unwrap();
            inserts += 1;
            most = most.max(memory(pid).0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, hwm) = memory(pid);
        eprintln!(
            "60 connections x 47 MB - 1 byte, budget {} MiB: RSS {} MiB before, at most {} MiB \
             sampled, peak (VmHWM) {} MiB; {inserts} inserts meanwhile",
            BUDGET / MIB,
            rss_before / MIB,
            most / MIB,
            hwm / MIB
        );
        assert!(
            most > rss_before + 40 * MIB,
            "a 47 MB message was being buffered (RSS {} MiB)",
            most / MIB
        );
        assert!(
            hwm < BUDGET + 32 * MIB,
            "RSS peaked at {} MiB, past the budget + 32 MiB",
            hwm / MIB
        );
        assert!(inserts > 0);
        for sender in senders {
            sender.abort();
        }
        client.shutdown().await;
        assert!(pool.stop().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_compressed_from_a_driver_is_refused_before_it_is_inflated() {
    bounded(async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[]).await;
        let pid = pool.pid().unwrap();
        let (rss_before, _) = memory(pid);
        let forwarded_before = pool_stats(&pool).await.get_i64("forwarded").unwrap();
        // 40 zlib frames, each inflating to 47 MB, as in the issue.
        let pad = "x".repeat(47_000_000 - 100);
        let body = rawdoc! { "insert": "c", "$db": "app", "pad": pad.as_str() };
        let uncompressed = OpMsgBuilder::new(&body).build().unwrap();
        let frame = uncompressed.compress(Compressor::Zlib).unwrap();
        let compressed_len = frame.len();
        drop((uncompressed, body, pad));
        for _ in 0..40 {
            let mut stream = UnixStream::connect(pool.socket_path()).await.unwrap();
            let _ = stream.write_all(frame.as_bytes()).await;
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("closed in time");
            assert!(matches!(read, Ok(0) | Err(_)), "closed, no reply: {read:?}");
        }
        let (rss_after, hwm) = memory(pid);
        let logs = plain(&pool.logs());
        let refusals = logs
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("OP_COMPRESSED"))
            .count();
        assert_eq!(
            refusals, 40,
            "one clear line per refused connection:\n{logs}"
        );
        assert_eq!(
            pool_stats(&pool).await.get_i64("forwarded").unwrap(),
            forwarded_before,
            "nothing went upstream"
        );
        eprintln!(
            "40 OP_COMPRESSED zlib frames of {} KB (47 MB inflated): refused; RSS {} MiB -> {} MiB \
             (peak {} MiB)",
            compressed_len / 1000,
            rss_before / MIB,
            rss_after / MIB,
            hwm / MIB
        );
        assert!(hwm < 100 * MIB, "peak RSS {} MiB", hwm / MIB);
        assert!(pool.stop().await.unwrap().success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_typed_routing_field_gets_an_error_reply_and_the_connection_stays_open() {
    bounded(async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[]).await;
        let mut raw = Raw::connect(&pool).await;
        let cases = [
            (
                rawdoc! { "find": "c", "$db": "app", "maxTimeMS": 1000.5 },
                2,
                "BadValue",
            ),
            (
                rawdoc! { "find": "c", "$db": "app", "lsid": "x" },
                14,
                "TypeMismatch",
            ),
            (
                rawdoc! { "find": "c", "$db": "app", "txnNumber": "1" },
                14,
                "TypeMismatch",
            ),
            (
                rawdoc! { "find": "c", "$db": "app", "$readPreference": "primary" },
                14,
                "TypeMismatch",
            ),
            (
                rawdoc! { "find": "c", "$db": "app", "$readPreference": { "mode": "fastest" } },
                2,
                "BadValue",
            ),
        ];
        let forwarded = pool_stats(&pool).await.get_i64("forwarded").unwrap();
        for (body, expected, name) in &cases {
            let reply = send(&mut raw, body).await;
            assert_eq!(code(&reply), *expected, "{body:?}: {reply}");
            assert_eq!(reply.get_str("codeName").ok(), Some(*name), "{reply}");
        }
        let stats = pool_stats(&pool).await;
        assert_eq!(stats.get_i64("forwarded").unwrap(), forwarded, "{stats}");
        let ping = raw.command(&doc! { "ping": 1, "$db": "admin" }).await;
        assert!(ping.is_ok(), "the connection stays open: {ping:?}");
        assert!(pool.stop().await.unwrap().success());
    })
    .await;
}
