//! A driver that closes its connection while its request runs upstream (issue 15, mongo-pool
//! item 3), with real processes: atlas-sim, the `mongo-pool` binary, a raw wire-protocol
//! connection on its socket and the Rust `mongodb` driver.
//!
//! The upstream connection running the request is closed, not returned to the pool, so
//! atlas-sim (like mongod since 4.2) kills the operation: nothing runs on. The member is not
//! taken for failed: its pool is not cleared, no connection but the closed one is replaced,
//! and the next client is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::time::Duration;

use bson::{Document, doc, rawdoc};
use downstream_support::rig::{auth_successful, client, pool, pool_stats, sim};
use mongo_pool_testkit::process::wait_for;
use mongo_pool_wire::OpMsgBuilder;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;

const LIMIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(30);

/// Finds running now, over every member.
fn running_finds(status: &Value) -> usize {
    status["members"]
        .as_object()
        .expect("members in /status")
        .values()
        .flat_map(|m| {
            m["operations"]["running"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|op| op["command"] == "find")
        .count()
}

/// Finds killed because their client went away, over every member.
fn killed_finds(status: &Value) -> u64 {
    status["members"]
        .as_object()
        .expect("members in /status")
        .values()
        .filter_map(|m| m["operations"]["killed_by_command"]["find"].as_u64())
        .sum()
}

/// The primary's pool in a `mongoPoolStats` reply.
fn primary_pool(stats: &Document) -> Document {
    stats
        .get_array("pools")
        .unwrap()
        .iter()
        .filter_map(|p| p.as_document())
        .find(|p| p.get_str("state").ok() == Some("Primary"))
        .cloned()
        .unwrap_or_else(|| panic!("a primary pool in {stats}"))
}

fn closed_upstream(stats: &Document) -> i64 {
    stats
        .get_document("upstreamConnections")
        .unwrap()
        .get_i64("closed")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_that_disconnects_mid_find_gets_its_operation_killed_and_nothing_else_changes() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "minPoolSize=3&heartbeatFrequencyMS=60000", &[]).await;
        wait_for("three pooled connections", WAIT, || {
            let pool = &pool;
            async move { primary_pool(&pool_stats(pool).await).get_i64("total").ok() == Some(3) }
        })
        .await
        .unwrap();
        let before = pool_stats(&pool).await;
        let auth_before = auth_successful(&sim.status().await.unwrap());
        sim.post(
            "/failpoint",
            Some(json!({
                "configureFailPoint": "failCommand", "mode": "alwaysOn",
                "data": {"failCommands": ["find"], "blockConnection": true, "blockTimeMS": 600_000},
            })),
        )
        .await
        .unwrap();

        // A find that blocks upstream; its driver gives up (closes the socket) meanwhile.
        let mut driver = UnixStream::connect(pool.socket_path()).await.unwrap();
        let find = OpMsgBuilder::new(&rawdoc! { "find": "c", "filter": {}, "$db": "app" })
            .request_id(7)
            .build()
            .unwrap();
        driver.write_all(find.as_bytes()).await.unwrap();
        wait_for("the find to run upstream", WAIT, || {
            let sim = &sim;
            async move { running_finds(&sim.status().await.unwrap()) == 1 }
        })
        .await
        .unwrap();
        drop(driver);

        wait_for("atlas-sim to kill the abandoned find", WAIT, || {
            let sim = &sim;
            async move {
                let status = sim.status().await.unwrap();
                running_finds(&status) == 0 && killed_finds(&status) >= 1
            }
        })
        .await
        .unwrap();
        let status = sim.status().await.unwrap();
        assert_eq!(running_finds(&status), 0, "nothing runs on: {status}");
        assert_eq!(
            killed_finds(&status),
            1,
            "exactly one find killed: {status}"
        );

        sim.post(
            "/failpoint",
            Some(json!({"configureFailPoint": "failCommand", "mode": "off"})),
        )
        .await
        .unwrap();
        // The next client is served, by the same member and pool.
        let next = client(&pool, "").await;
        let coll = next.database("app").collection::<Document>("c");
        coll.insert_one(doc! { "after": true }).await.unwrap();
        assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);

        let after = pool_stats(&pool).await;
        assert_eq!(
            primary_pool(&after).get_i64("generation").ok(),
            primary_pool(&before).get_i64("generation").ok(),
            "no pool clear: {after}"
        );
        assert!(
            after.get_i64("abandoned").unwrap() - before.get_i64("abandoned").unwrap() == 1,
            "the request is counted as abandoned: {after}"
        );
        assert_eq!(
            closed_upstream(&after) - closed_upstream(&before),
            1,
            "exactly the upstream connection running the find was closed: {after}"
        );
        let auth_after = auth_successful(&sim.status().await.unwrap());
        assert!(
            auth_after - auth_before <= 1,
            "no re-authentication beyond replacing the closed connection: {auth_before} -> \
             {auth_after}"
        );
        next.shutdown().await;
        assert!(pool.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}
