//! The upstream pool and topology in-process against atlas-sim: the `maxPoolSize` bound per
//! member, the wait-queue timeout, recovery after dropped connections, after a freeze with a
//! blackhole, and after a stepdown; `maxConnecting` per member (a silent seed holds up no
//! other); authentications counted one per connection; and spaced retries when STS throttles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common {
    pub mod rig;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::doc;
use common::rig::{
    Rig, connections, env_table, key, ping, run, sim_with_key, total_created, uri_with,
};
use mongo_pool::pool::CheckoutError;
use mongo_pool::topology::Failure;
use mongo_pool_testkit::process::wait_for;
use mongo_pool_wire::inspect::ReadPreferenceMode;

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_pool_size_connections_per_member_under_concurrent_checkouts() {
    let sim = Arc::new(sim_with_key(&[]).await);
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "maxPoolSize=3&waitQueueTimeoutMS=20000",
    )))
    .await;
    let primary = rig.primary().await;
    let member = key(&primary.address);

    // Watch the member's connection count at atlas-sim while the tasks run.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, most) = (Arc::clone(&done), Arc::clone(&most));
        let sim = Arc::clone(&sim);
        let member = member.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                if let Ok(status) = sim.status().await {
                    most.fetch_max(connections(&status, &member, "current"), Ordering::AcqRel);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut tasks = Vec::new();
    let largest_pool = Arc::new(AtomicU64::new(0));
    for _ in 0..16 {
        let topology = Arc::clone(&rig.topology);
        let largest_pool = Arc::clone(&largest_pool);
        tasks.push(tokio::spawn(async move {
            let server = topology
                .select(ReadPreferenceMode::Primary, in_secs(20))
                .await
                .expect("primary");
            let mut conn = server.pool.check_out(in_secs(20)).await.expect("check-out");
            largest_pool.fetch_max(server.pool.sizes().1 as u64, Ordering::AcqRel);
            ping(&mut conn).await.expect("ping");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    done.store(true, Ordering::Release);
    watcher.await.unwrap();

    let status = sim.status().await.unwrap();
    assert!(
        most.load(Ordering::Acquire) <= 3,
        "atlas-sim saw {} connections at once",
        most.load(Ordering::Acquire)
    );
    assert!(connections(&status, &member, "current") <= 3, "{status}");
    assert!(
        connections(&status, &member, "total_created") <= 3,
        "connections were churned: {status}"
    );
    assert!(largest_pool.load(Ordering::Acquire) <= 3);
    assert!(
        rig.metrics.snapshot().checkout_waits > 0,
        "tasks had to wait"
    );
}

#[tokio::test]
async fn a_waiter_gets_a_timeout_after_wait_queue_timeout_when_all_connections_are_held() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "maxPoolSize=2&waitQueueTimeoutMS=700",
    )))
    .await;
    let primary = rig.primary().await;
    let wait = rig.config.uri.wait_queue_timeout;
    assert_eq!(wait, Duration::from_millis(700));

    let first = primary.pool.check_out(in_secs(10)).await.unwrap();
    let second = primary.pool.check_out(in_secs(10)).await.unwrap();
    let started = Instant::now();
    let third = primary.pool.check_out(Instant::now() + wait).await;
    let waited = started.elapsed();
    match third {
        Err(CheckoutError::Timeout { max_size, .. }) => assert_eq!(max_size, 2),
        other => panic!("expected a check-out timeout, got {other:?}"),
    }
    assert!(waited >= wait, "gave up early: {waited:?}");
    assert!(waited < wait + Duration::from_secs(3), "waited {waited:?}");

    // A returned connection serves the next waiter.
    drop(first);
    let mut again = primary.pool.check_out(Instant::now() + wait).await.unwrap();
    ping(&mut again).await.unwrap();
    drop(second);
}

#[tokio::test]
async fn after_drop_connections_the_next_checkout_hands_out_a_working_connection() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let rig = Rig::start(&env_table(&uri_with(&sim.start.uri, "maxPoolSize=2"))).await;
    let primary = rig.primary().await;
    let member = key(&primary.address);
    {
        let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
        ping(&mut conn).await.unwrap();
    }
    assert!(primary.pool.sizes().0 >= 1, "a connection is idle");

    let dropped = sim.post("/drop-connections", None).await.unwrap();
    assert!(dropped["dropped"].as_u64().unwrap() >= 1, "{dropped}");
    wait_for(
        "atlas-sim to close them",
        Duration::from_secs(10),
        || async { connections(&sim.status().await.unwrap(), &member, "current") == 0 },
    )
    .await
    .unwrap();

    // Each idle connection is now closed by the peer: none of them may be handed out.
    for _ in 0..3 {
        let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
        ping(&mut conn)
            .await
            .expect("the connection handed out after /drop-connections works");
    }
}

/// What a Lambda freeze looks like from inside the process: nothing runs (the runtime thread
/// is blocked), then the clock has jumped. Meanwhile atlas-sim stops answering on the
/// connections mongo-pool holds (as a peer that dropped them silently would).
#[tokio::test(flavor = "current_thread")]
async fn after_a_freeze_and_a_blackhole_the_next_checkout_works_within_connect_timeout_plus_one_reconnect()
 {
    let sim = sim_with_key(&["--members", "1"]).await;
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "connectTimeoutMS=2000&heartbeatFrequencyMS=60000",
    )))
    .await;
    let primary = rig.primary().await;
    {
        let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
        ping(&mut conn).await.unwrap();
    }
    let before = rig.metrics.snapshot();

    sim.post("/blackhole?ms=120000", None).await.unwrap();
    std::thread::sleep(mongo_pool::freeze::GAP + Duration::from_millis(500));

    let connect_timeout = rig.config.uri.connect_timeout;
    let started = Instant::now();
    let mut conn = primary
        .pool
        .check_out(Instant::now() + connect_timeout * 3)
        .await
        .expect("a connection after the freeze");
    ping(&mut conn).await.expect("it works");
    let took = started.elapsed();
    // The ping before use gives up within connectTimeoutMS (capped at 2 s), then one new
    // connection is established (local: milliseconds; allow a loaded machine).
    assert!(
        took < connect_timeout + Duration::from_secs(3),
        "took {took:?}"
    );
    let after = rig.metrics.snapshot();
    assert!(after.freezes > before.freezes, "the freeze was noticed");
    assert!(
        after.ping_failures > before.ping_failures,
        "the blackholed connection was pinged and replaced"
    );
}

/// `maxConnecting` is per member: a seed that accepts TCP and then never answers holds only its
/// own slot, so the primary is found and connected to while that seed's attempt still hangs.
#[tokio::test(flavor = "current_thread")]
async fn a_silent_member_does_not_hold_up_the_primarys_connections() {
    let sim = sim_with_key(&[]).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    // The silent seed is listed (and so checked) first; one slot each.
    let uri = sim
        .start
        .uri
        .replacen("mongodb://", &format!("mongodb://{silent_addr},"), 1);
    let rig = Rig::start(&env_table(&uri_with(
        &uri,
        "maxConnecting=1&connectTimeoutMS=30000&serverSelectionTimeoutMS=30000",
    )))
    .await;
    let deadline = in_secs(15);
    let primary = rig
        .topology
        .select(ReadPreferenceMode::Primary, deadline)
        .await
        .expect("the primary is selected while the silent seed hangs");
    let mut conn = primary
        .pool
        .check_out(deadline)
        .await
        .expect("a connection to the primary while the silent seed hangs");
    ping(&mut conn).await.unwrap();
    assert_eq!(Some(key(&primary.address)), sim.start.primary);
    accepted.abort();
}

#[tokio::test]
async fn after_stepdown_a_state_change_error_leads_to_the_new_primary() {
    let sim = sim_with_key(&[]).await;
    // No heartbeat in the test's time: only the reported error can reveal the new primary.
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "heartbeatFrequencyMS=600000",
    )))
    .await;
    let old = rig.primary().await;
    assert_eq!(Some(key(&old.address)), sim.start.primary);
    // Connections whose handshake (a `hello` saying "primary") predates the stepdown.
    {
        let a = old.pool.check_out(in_secs(10)).await.unwrap();
        let b = old.pool.check_out(in_secs(10)).await.unwrap();
        let c = old.pool.check_out(in_secs(10)).await.unwrap();
        drop((a, b, c));
    }

    let stepped = sim.post("/stepdown", None).await.unwrap();
    let new_key = stepped["primary"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key(&old.address));

    let mut conn = old.pool.check_out(in_secs(10)).await.unwrap();
    let reply = run(
        &mut conn,
        doc! { "insert": "c", "documents": [{ "x": 1 }], "$db": "test" },
    )
    .await
    .unwrap();
    let code = reply.get_i32("code").unwrap_or_default();
    assert!(
        mongo_pool::topology::STATE_CHANGE_CODES.contains(&code),
        "the old primary refuses the write with a state-change code: {reply}"
    );
    drop(conn);
    rig.topology
        .report(&old.address, Failure::StateChange(code));

    let new = rig.primary().await;
    assert_eq!(key(&new.address), new_key);
    // It stays found: no later check takes the old primary for primary again.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rig.topology.request_check();
        assert_eq!(key(&rig.primary().await.address), new_key);
    }
    let status = sim.status().await.unwrap();
    assert_eq!(status["primary"].as_str(), Some(new_key.as_str()));
    let mut conn = new.pool.check_out(in_secs(10)).await.unwrap();
    let reply = run(
        &mut conn,
        doc! { "insert": "c", "documents": [{ "x": 1 }], "$db": "test" },
    )
    .await
    .unwrap();
    assert!(mongo_pool::upstream::reply_ok(&reply), "{reply}");
}

#[tokio::test]
async fn after_stepdown_the_heartbeat_finds_the_new_primary() {
    let sim = sim_with_key(&[]).await;
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "heartbeatFrequencyMS=500",
    )))
    .await;
    let old = rig.primary().await;
    // Every member's pool has a connection whose handshake predates the stepdown.
    rig.topology.wait_checked(in_secs(10)).await;
    for server in rig.topology.servers() {
        let mut conn = server.pool.check_out(in_secs(10)).await.unwrap();
        ping(&mut conn).await.unwrap();
    }
    let stepped = sim.post("/stepdown", None).await.unwrap();
    let new_key = stepped["primary"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key(&old.address));

    let topology = Arc::clone(&rig.topology);
    wait_for("the new primary", Duration::from_secs(15), || {
        let topology = Arc::clone(&topology);
        let new_key = new_key.clone();
        async move {
            topology
                .select(ReadPreferenceMode::Primary, in_secs(1))
                .await
                .is_ok_and(|s| key(&s.address) == new_key)
        }
    })
    .await
    .unwrap();
    // And it stays found: the old primary is not taken for primary again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let selected = rig.primary().await;
    assert_eq!(key(&selected.address), new_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentications_equal_connections_created() {
    let sim = sim_with_key(&[]).await;
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "maxPoolSize=3&heartbeatFrequencyMS=600000",
    )))
    .await;
    rig.topology.wait_checked(in_secs(10)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let topology = Arc::clone(&rig.topology);
        tasks.push(tokio::spawn(async move {
            let mode = if i % 2 == 0 {
                ReadPreferenceMode::Primary
            } else {
                ReadPreferenceMode::Secondary
            };
            let server = topology.select(mode, in_secs(20)).await.unwrap();
            let mut conn = server.pool.check_out(in_secs(20)).await.unwrap();
            ping(&mut conn).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Churn: every connection is dropped (once atlas-sim has closed them, none may be handed
    // out) and replaced on demand.
    sim.post("/drop-connections", None).await.unwrap();
    wait_for(
        "atlas-sim to close them",
        Duration::from_secs(10),
        || async {
            let status = sim.status().await.unwrap();
            status["members"]
                .as_object()
                .unwrap()
                .keys()
                .all(|m| connections(&status, m, "current") == 0)
        },
    )
    .await
    .unwrap();
    for server in rig.topology.servers() {
        let mut conn = server.pool.check_out(in_secs(10)).await.unwrap();
        ping(&mut conn).await.unwrap();
    }

    // Let background fills settle, then compare both sides.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = rig.metrics.snapshot();
    let status = sim.status().await.unwrap();
    let successful = status["auth"]["successful"].as_u64().unwrap();
    assert_eq!(metrics.auth_succeeded, metrics.connections_created);
    assert_eq!(metrics.auth_attempts, metrics.auth_succeeded);
    assert_eq!(successful, metrics.auth_succeeded, "{status}");
    assert_eq!(
        total_created(&status),
        metrics.connections_created,
        "{status}"
    );
    assert!(
        metrics.connections_created > 3,
        "there was churn: {metrics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_throttling_leads_to_spaced_retries_then_success() {
    let sim = sim_with_key(&["--members", "1"]).await;
    sim.post("/sts/throttle?times=3", None).await.unwrap();
    let rig = Rig::start(&env_table(&uri_with(
        &sim.start.uri,
        "serverSelectionTimeoutMS=20000",
    )))
    .await;

    // Record when each authentication attempt starts.
    let metrics = Arc::clone(&rig.metrics);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen = 0;
            let mut times = Vec::new();
            loop {
                let finished = done.load(Ordering::Acquire);
                let now = metrics.snapshot().auth_attempts;
                while seen < now {
                    times.push(Instant::now());
                    seen += 1;
                }
                if finished {
                    return times;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let started = Instant::now();
    let primary = rig.primary().await;
    let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
    ping(&mut conn).await.unwrap();
    let took = started.elapsed();
    done.store(true, Ordering::Release);
    let times = sampler.await.unwrap();

    let metrics = rig.metrics.snapshot();
    let status = sim.status().await.unwrap();
    assert_eq!(metrics.auth_failed, 3, "{metrics:?}");
    assert_eq!(status["auth"]["failed"].as_u64(), Some(3), "{status}");
    assert!(times.len() >= 4, "attempts: {}", times.len());
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "attempts {}, gaps {gaps:?}, success after {took:?}, {} failed check-outs",
        times.len(),
        metrics.checkout_failures
    );
    // Equal-jitter exponential backoff from 500 ms: the n-th wait is in
    // [250 ms * 2^(n-1), 500 ms * 2^(n-1)]. Allow sampling slack.
    let floors = [150, 400, 900];
    for (i, floor) in floors.iter().enumerate() {
        assert!(
            gaps[i] >= Duration::from_millis(*floor),
            "retry {} came after {:?} (gaps {gaps:?})",
            i + 1,
            gaps[i]
        );
    }
    assert!(took < Duration::from_secs(15), "success took {took:?}");
    // While backing off, checks fail at once without calling STS; they are paced by the
    // monitor, not spinning.
    assert!(
        metrics.checkout_failures < 100,
        "{} failed check-outs in {took:?}",
        metrics.checkout_failures
    );
    // Every attempt reached atlas-sim's STS step once: no attempt was made during a backoff.
    assert_eq!(
        status["sts_calls"].as_u64(),
        Some(metrics.auth_attempts),
        "{status}"
    );
}
