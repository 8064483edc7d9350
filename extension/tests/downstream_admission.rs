//! The `MONGO_POOL_MAX_CLIENTS` cap, through the real `mongo-pool` binary: at the cap the
//! longest-idle connection is closed to admit a newcomer, a connection with a request in flight
//! never is; when every connection is busy a newcomer waits briefly and gets a clear error; a
//! flood of refusals writes a couple of WARN lines that count every refusal, not one per
//! connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::time::{Duration, Instant};

use bson::{Document, doc};
use downstream_support::rig::{Raw, pool, pool_stats, sim};
use mongo_pool::listener::{OVER_CAP_WAIT, REFUSAL_LOG_INTERVAL};
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::{AtlasSim, wait_for};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(120);

fn hello() -> Document {
    doc! { "hello": 1, "$db": "admin" }
}

fn ping() -> Document {
    doc! { "ping": 1, "$db": "admin" }
}

fn find() -> Document {
    doc! { "find": "things", "filter": {}, "$db": "app" }
}

/// A connection that has had a reply (so it holds a slot).
async fn served(pool: &MongoPool) -> Raw {
    let mut raw = Raw::connect(pool).await;
    let reply = raw.command(&hello()).await.unwrap();
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
    raw
}

/// The next `times` `find`s hang upstream for `block`.
async fn block_finds(sim: &AtlasSim, times: u64, block: Duration) {
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": {"times": times},
            "data": {"failCommands": ["find"], "blockConnection": true,
                     "blockTimeMS": u64::try_from(block.as_millis()).unwrap()},
        })),
    )
    .await
    .unwrap();
}

/// `find`s atlas-sim has received, over all members.
async fn finds_received(sim: &AtlasSim) -> u64 {
    let status = sim.status().await.unwrap();
    status["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["commands"]["find"].as_u64().unwrap_or(0))
        .sum()
}

/// Sends a `find` on `raw` in the background and waits until it has reached atlas-sim (so it
/// is in flight in mongo-pool); the task returns the connection and the reply.
async fn find_in_flight(
    sim: &AtlasSim,
    mut raw: Raw,
) -> tokio::task::JoinHandle<(Raw, anyhow::Result<Document>)> {
    let before = finds_received(sim).await;
    let task = tokio::spawn(async move {
        let reply = raw.command(&find()).await;
        (raw, reply)
    });
    wait_for(
        "the find reaches atlas-sim",
        Duration::from_secs(30),
        || async { finds_received(sim).await > before },
    )
    .await
    .unwrap();
    task
}

fn assert_closed(result: anyhow::Result<Document>, what: &str) {
    assert!(
        result.is_err(),
        "{what} is closed, yet answered: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_is_closed_to_admit_a_new_one() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[("MONGO_POOL_MAX_CLIENTS", "2")]).await;
        let mut oldest = served(&pool).await;
        let mut newer = served(&pool).await;

        // A third is admitted and served; the longest-idle one made room.
        let mut third = served(&pool).await;
        assert_closed(oldest.command(&ping()).await, "the longest-idle connection");
        let reply = newer.command(&ping()).await.unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        let reply = third.command(&ping()).await.unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        drop((newer, third));

        let stats = pool_stats(&pool).await;
        let refused = stats
            .get_document("downstreamConnections")
            .unwrap()
            .get_i64("refused")
            .unwrap();
        assert_eq!(refused, 0, "nobody was refused: {stats}");
        assert!(pool.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_connection_with_a_request_in_flight_is_not_closed() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[("MONGO_POOL_MAX_CLIENTS", "2")]).await;
        block_finds(&sim, 1, Duration::from_secs(3)).await;
        // `busy` has gone longest since its last request started, but that request is in
        // flight; `idle` answered its last request after.
        let busy = served(&pool).await;
        let mut idle = served(&pool).await;
        let busy = find_in_flight(&sim, busy).await;

        let mut third = served(&pool).await;
        assert_closed(idle.command(&ping()).await, "the idle connection");
        let (mut busy, reply) = busy.await.unwrap();
        let reply = reply.expect("the request in flight is answered");
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        let reply = busy.command(&ping()).await.unwrap();
        assert_eq!(
            reply.get_f64("ok").unwrap(),
            1.0,
            "and its connection still serves"
        );
        let reply = third.command(&ping()).await.unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        assert!(pool.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_one_more_gets_an_error_after_a_brief_wait() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[("MONGO_POOL_MAX_CLIENTS", "2")]).await;
        block_finds(&sim, 2, Duration::from_secs(8)).await;
        let first = find_in_flight(&sim, served(&pool).await).await;
        let second = find_in_flight(&sim, served(&pool).await).await;

        // A third waits briefly, then its first request gets a clear error.
        let started = Instant::now();
        let mut third = Raw::connect(&pool).await;
        let reply = third.command(&hello()).await.unwrap();
        let waited = started.elapsed();
        assert_eq!(reply.get_f64("ok").unwrap(), 0.0, "{reply}");
        let errmsg = reply.get_str("errmsg").unwrap();
        assert!(errmsg.contains("MONGO_POOL_MAX_CLIENTS"), "{errmsg}");
        assert!(
            waited >= OVER_CAP_WAIT.saturating_sub(Duration::from_millis(100)),
            "refused after {waited:?}, before the brief wait ({OVER_CAP_WAIT:?})"
        );
        assert_closed(third.command(&hello()).await, "the refused connection");

        // The busy ones get their replies and keep serving.
        let (mut first, reply) = first.await.unwrap();
        assert_eq!(reply.unwrap().get_f64("ok").unwrap(), 1.0);
        let (second, reply) = second.await.unwrap();
        assert_eq!(reply.unwrap().get_f64("ok").unwrap(), 1.0);
        let reply = first.command(&ping()).await.unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        drop((first, second));

        let stats = pool_stats(&pool).await;
        let refused = stats
            .get_document("downstreamConnections")
            .unwrap()
            .get_i64("refused")
            .unwrap();
        assert_eq!(refused, 1, "{stats}");
        assert!(
            pool.logs().contains("MONGO_POOL_MAX_CLIENTS"),
            "the refusal is logged:\n{}",
            pool.logs()
        );
        assert!(pool.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
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

/// The refusal WARN lines in `logs`, with the count each carries.
fn refusal_lines(logs: &str) -> Vec<(String, u64)> {
    plain(logs)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("refusing a downstream connection"))
        .map(|l| {
            let suppressed = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("suppressed="))
                .unwrap_or_else(|| panic!("no count in {l}"))
                .parse()
                .unwrap();
            (l.to_owned(), suppressed)
        })
        .collect()
}

/// Opens `n` connections at once; each must be refused.
async fn refused_flood(pool: &MongoPool, n: usize) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut raw = Raw::connect(pool).await;
        tasks.push(tokio::spawn(async move { raw.command(&hello()).await }));
    }
    for task in tasks {
        let reply = task.await.unwrap().unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 0.0, "refused: {reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_connections_logs_a_couple_of_lines_that_count_them_all() {
    const FLOOD: usize = 40;
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[("MONGO_POOL_MAX_CLIENTS", "1")]).await;
        // The one slot stays busy for the whole test.
        block_finds(&sim, 1, Duration::from_secs(60)).await;
        let _busy = find_in_flight(&sim, served(&pool).await).await;

        refused_flood(&pool, FLOOD).await;
        let lines = refusal_lines(&pool.logs());
        assert!(
            !lines.is_empty() && lines.len() <= 2,
            "{FLOOD} refusals, {} lines:\n{lines:#?}",
            lines.len()
        );
        // One more once the interval has passed: its line counts the ones left out.
        tokio::time::sleep(REFUSAL_LOG_INTERVAL).await;
        refused_flood(&pool, 1).await;
        let lines = refusal_lines(&pool.logs());
        assert!(lines.len() <= 3, "{lines:#?}");
        let counted: u64 = lines.iter().map(|(_, n)| n + 1).sum();
        assert_eq!(
            counted,
            u64::try_from(FLOOD + 1).unwrap(),
            "every refusal is a line or in a line's count:\n{lines:#?}"
        );
        assert!(
            lines.last().unwrap().1 > 0,
            "the last line carries a count: {lines:#?}"
        );
        assert!(pool.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}
