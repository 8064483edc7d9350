//! atlas-sim's topology changes and network faults, seen through the wire with a raw client:
//! stepdown (control API and `replSetStepDown`), a window without a primary, idle disconnects,
//! blackholed connections and the awaitable `hello` that streaming monitors rely on.
//!
//! Time is asserted as ordering or generous bounds only: "not before N ms" (the server waited)
//! and "well before the await time" (the server did not wait), never a tight latency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "atlas_support/wire_client.rs"]
mod wire_client;

use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use mongo_pool_testkit::process::AtlasSim;
use serde_json::json;
use wire_client::{
    REPLY_TIMEOUT, Wire, code, labels, ok, start_sim_with_principal, wait_for_status,
};

fn lsid(byte: u8) -> Document {
    doc! { "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![byte; 16] } }
}

fn insert(txn_number: Option<i64>) -> Document {
    let mut command = doc! { "insert": "t", "documents": [{ "x": 1 }], "$db": "app" };
    if let Some(n) = txn_number {
        command.insert("lsid", lsid(1));
        command.insert("txnNumber", n);
    }
    command
}

fn topology_counter(hello: &Document) -> i64 {
    hello
        .get_document("topologyVersion")
        .unwrap()
        .get_i64("counter")
        .unwrap()
}

#[tokio::test]
async fn stepdown_elects_the_next_member_with_a_higher_election_id() {
    let sim = start_sim_with_principal(&[]).await;
    let old = sim.start.primary.clone().unwrap();
    let mut on_old = Wire::authenticated(&sim, &old).await.unwrap();
    let before = on_old.hello(None).await.unwrap();
    let old_election = before.get_object_id("electionId").unwrap();

    let stepped = sim.post("/stepdown", None).await.unwrap();
    let new = stepped["primary"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(sim.status().await.unwrap()["primary"], json!(new));

    let mut on_new = Wire::authenticated(&sim, &new).await.unwrap();
    let hello = on_new.hello(None).await.unwrap();
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    assert_eq!(hello.get_str("primary").unwrap(), new);
    let new_election = hello.get_object_id("electionId").unwrap();
    assert!(
        new_election.bytes() > old_election.bytes(),
        "{new_election} > {old_election}"
    );
    assert!(topology_counter(&hello) > topology_counter(&before));

    let old_hello = on_old.hello(None).await.unwrap();
    assert!(!old_hello.get_bool("isWritablePrimary").unwrap());
    assert_eq!(old_hello.get_str("primary").unwrap(), new);

    let retryable = on_old.command(insert(Some(1))).await.unwrap();
    assert_eq!(code(&retryable), 10107, "{retryable}");
    assert_eq!(retryable.get_str("codeName").unwrap(), "NotWritablePrimary");
    assert_eq!(labels(&retryable), vec!["RetryableWriteError"]);
    let plain = on_old.command(insert(None)).await.unwrap();
    assert_eq!(code(&plain), 10107, "{plain}");
    assert!(
        labels(&plain).is_empty(),
        "a write without txnNumber is not retryable: {plain}"
    );
    let read = on_old
        .command(doc! { "find": "t", "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&read), 13435, "a primary read on a secondary: {read}");

    let retried = on_new.command(insert(Some(1))).await.unwrap();
    assert!(ok(&retried), "{retried}");

    // replSetStepDown over the wire does the same; a secondary refuses it.
    let refused = on_old
        .command(doc! { "replSetStepDown": 60, "$db": "admin" })
        .await
        .unwrap();
    assert_eq!(code(&refused), 10107);
    let stepped = on_new
        .command(doc! { "replSetStepDown": 60, "$db": "admin" })
        .await
        .unwrap();
    assert!(ok(&stepped), "{stepped}");
    let status = sim.status().await.unwrap();
    assert_ne!(status["primary"], json!(new));
    assert_eq!(status["members"][&new]["state"], "SECONDARY");
}

#[tokio::test]
async fn a_write_in_flight_during_stepdown_is_interrupted_with_11602() {
    let sim = start_sim_with_principal(&[]).await;
    let old = sim.start.primary.clone().unwrap();
    let mut wire = Wire::authenticated(&sim, &old).await.unwrap();
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["insert"], "blockConnection": true, "blockTimeMS": 3000 },
        })),
    )
    .await
    .unwrap();
    wire.send(&insert(Some(5))).await.unwrap();
    wait_for_status(&sim, "the insert to arrive", |s| {
        s["members"][&old]["commands"]["insert"] == 1
    })
    .await;
    sim.post("/stepdown", None).await.unwrap();
    let reply = wire.recv_in_time().await.unwrap().unwrap();
    assert_eq!(code(&reply), 11602, "{reply}");
    assert_eq!(
        reply.get_str("codeName").unwrap(),
        "InterruptedDueToReplStateChange"
    );
    assert_eq!(labels(&reply), vec!["RetryableWriteError"]);
}

#[tokio::test]
async fn without_a_primary_every_member_refuses_writes_until_one_is_elected() {
    let sim = start_sim_with_principal(&[]).await;
    let mut wires = Vec::new();
    for member in &sim.start.members {
        wires.push(Wire::authenticated(&sim, member).await.unwrap());
    }
    let old = sim.start.primary.clone().unwrap();
    let reply = sim.post("/no-primary?ms=3000", None).await.unwrap();
    assert_eq!(reply["primary"], json!(null));
    let status = sim.status().await.unwrap();
    assert_eq!(
        status["primary"],
        json!(null),
        "primary is null while there is none: {status}"
    );
    for wire in &mut wires {
        let hello = wire.hello(None).await.unwrap();
        assert!(!hello.get_bool("isWritablePrimary").unwrap());
        assert!(hello.get("primary").is_none(), "{hello}");
        let refused = wire.command(insert(Some(2))).await.unwrap();
        assert_eq!(code(&refused), 10107, "{refused}");
        assert_eq!(labels(&refused), vec!["RetryableWriteError"]);
    }
    let status = wait_for_status(&sim, "a new primary", |s| !s["primary"].is_null()).await;
    let new = status["primary"].as_str().unwrap().to_owned();
    assert_ne!(new, old, "the next member is elected");
    let index = sim.start.members.iter().position(|m| *m == new).unwrap();
    let accepted = wires[index].command(insert(Some(2))).await.unwrap();
    assert!(ok(&accepted), "{accepted}");
}

#[tokio::test]
async fn a_second_no_primary_window_is_not_cut_short_by_the_first() {
    let sim = start_sim_with_principal(&[]).await;
    sim.post("/no-primary?ms=300", None).await.unwrap();
    sim.post("/no-primary?ms=60000", None).await.unwrap();
    // Well past the first window's end: still no primary.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.status().await.unwrap()["primary"], json!(null));
    sim.post("/stepdown", None).await.unwrap();
    assert!(
        !sim.status().await.unwrap()["primary"].is_null(),
        "a stepdown elects one at once"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_by_the_server_and_a_busy_one_is_not() {
    let sim = start_sim_with_principal(&["--idle-disconnect-ms", "1000"]).await;
    let primary = sim.start.primary.clone().unwrap();
    let mut idle = Wire::authenticated(&sim, &primary).await.unwrap();
    let mut busy = Wire::authenticated(&sim, &primary).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        assert!(ok(&busy
            .command(doc! { "ping": 1, "$db": "admin" })
            .await
            .unwrap()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        idle.closed_by_server_within(REPLY_TIMEOUT).await.unwrap(),
        "the idle connection was closed"
    );
    assert!(
        ok(&busy
            .command(doc! { "ping": 1, "$db": "admin" })
            .await
            .unwrap()),
        "the busy one lives"
    );
    wait_for_status(&sim, "one connection left", |s| {
        s["members"][&primary]["connections"]["current"] == 1
    })
    .await;
}

#[tokio::test]
async fn a_blackholed_connection_answers_only_after_the_window_and_new_connections_work_at_once() {
    const WINDOW_MS: u64 = 4000;
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.primary.clone().unwrap();
    let mut held = Wire::authenticated(&sim, &primary).await.unwrap();
    let blackholed = sim
        .post(&format!("/blackhole?ms={WINDOW_MS}"), None)
        .await
        .unwrap();
    let since = Instant::now();
    assert_eq!(blackholed["connections"], 1);
    held.send(&doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap();

    let mut fresh = Wire::authenticated(&sim, &primary).await.unwrap();
    assert!(ok(&fresh
        .command(doc! { "find": "t", "$db": "app" })
        .await
        .unwrap()));
    let early = tokio::time::timeout(Duration::from_millis(10), held.recv()).await;
    assert!(early.is_err(), "no answer on the blackholed connection yet");
    assert!(
        since.elapsed() < Duration::from_millis(WINDOW_MS),
        "the new connection was served in the window"
    );

    let reply = held
        .recv_in_time()
        .await
        .unwrap()
        .expect("the connection was not closed");
    assert!(ok(&reply), "{reply}");
    assert!(
        since.elapsed() >= Duration::from_millis(WINDOW_MS),
        "not before the window ended"
    );
    assert_eq!(
        sim.status().await.unwrap()["members"][&primary]["connections"]["current"],
        2
    );
}

async fn hello_with(wire: &mut Wire, tv: &Document, max_await_ms: i64) -> (Document, Duration) {
    let started = Instant::now();
    let reply = wire
        .command(doc! {
            "hello": 1, "topologyVersion": tv.clone(), "maxAwaitTimeMS": max_await_ms, "$db": "admin",
        })
        .await
        .unwrap();
    assert!(ok(&reply), "{reply}");
    (reply, started.elapsed())
}

async fn monitor(sim: &AtlasSim, member: &str) -> (Wire, Document) {
    let mut wire = Wire::connect(sim, member).await.unwrap();
    let hello = wire.hello(None).await.unwrap();
    let tv = hello.get_document("topologyVersion").unwrap().clone();
    assert!(
        tv.get_object_id("processId").is_ok() && tv.get_i64("counter").is_ok(),
        "{tv}"
    );
    (wire, tv)
}

#[tokio::test]
async fn awaitable_hello_with_the_current_topology_version_waits_for_max_await_time() {
    let sim = start_sim_with_principal(&[]).await;
    let (mut wire, tv) = monitor(&sim, &sim.start.members[1]).await;
    let (reply, waited) = hello_with(&mut wire, &tv, 800).await;
    assert!(waited >= Duration::from_millis(800), "waited {waited:?}");
    assert_eq!(
        reply.get_document("topologyVersion").unwrap(),
        &tv,
        "nothing changed"
    );
}

#[tokio::test]
async fn awaitable_hello_returns_early_when_a_stepdown_changes_the_topology() {
    let sim = start_sim_with_principal(&[]).await;
    let (mut wire, tv) = monitor(&sim, &sim.start.members[1]).await;
    wire.send(&doc! { "hello": 1, "topologyVersion": tv.clone(), "maxAwaitTimeMS": 60_000, "$db": "admin" })
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), wire.recv()).await;
    assert!(early.is_err(), "the server waits while nothing changes");
    let stepped = sim.post("/stepdown", None).await.unwrap();
    let reply = wire.recv_in_time().await.unwrap().unwrap();
    assert!(topology_counter(&reply) > tv.get_i64("counter").unwrap());
    assert_eq!(
        reply.get_str("primary").unwrap(),
        stepped["primary"].as_str().unwrap()
    );
    assert!(
        reply.get_bool("isWritablePrimary").unwrap(),
        "member 2 is the new primary"
    );
}

#[tokio::test]
async fn awaitable_hello_with_a_stale_topology_version_returns_at_once() {
    let sim = start_sim_with_principal(&[]).await;
    let (mut wire, tv) = monitor(&sim, &sim.start.members[0]).await;
    let mut stale = tv.clone();
    stale.insert("counter", tv.get_i64("counter").unwrap() - 1);
    let mut other_process = tv.clone();
    other_process.insert("processId", bson::oid::ObjectId::new());
    for old in [stale, other_process] {
        let (reply, waited) = hello_with(&mut wire, &old, 60_000).await;
        assert!(
            waited < Duration::from_secs(30),
            "answered at once, not after maxAwaitTimeMS"
        );
        assert_eq!(reply.get_document("topologyVersion").unwrap(), &tv);
    }
    // A hello without maxAwaitTimeMS never waits either.
    let started = Instant::now();
    let plain = wire
        .command(doc! { "hello": 1, "topologyVersion": tv, "$db": "admin" })
        .await
        .unwrap();
    assert!(ok(&plain) && started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn sharded_members_are_mongos_routers_over_one_store() {
    let sim = start_sim_with_principal(&["--topology", "sharded"]).await;
    assert_eq!(sim.start.primary, None);
    assert!(!sim.start.uri.contains("replicaSet"), "{}", sim.start.uri);
    let mut a = Wire::authenticated(&sim, &sim.start.members[0])
        .await
        .unwrap();
    let mut b = Wire::authenticated(&sim, &sim.start.members[2])
        .await
        .unwrap();
    let hello = b.hello(None).await.unwrap();
    assert_eq!(hello.get_str("msg").unwrap(), "isdbgrid");
    assert!(
        hello.get("setName").is_none() && hello.get("hosts").is_none(),
        "{hello}"
    );
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    assert!(ok(&a.command(insert(None)).await.unwrap()));
    assert!(
        ok(&b.command(insert(None)).await.unwrap()),
        "every router takes writes"
    );
    let found = b.command(doc! { "find": "t", "$db": "app" }).await.unwrap();
    let batch = found
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 2, "one shared store");
    let status = sim.status().await.unwrap();
    assert_eq!(status["primary"], json!(null));
    assert!(
        status["members"]
            .as_object()
            .unwrap()
            .values()
            .all(|m| m["state"] == "MONGOS")
    );
    let stepped = sim.post("/stepdown", None).await.unwrap();
    assert_eq!(
        stepped["primary"],
        json!(null),
        "a stepdown changes nothing on routers"
    );
    assert!(matches!(hello.get("electionId"), None | Some(Bson::Null)));
}
