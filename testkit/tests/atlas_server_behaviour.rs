//! atlas-sim behaving as mongod does where issue 15 needs it, checked on the wire with a raw
//! client: a stepdown aborts open transactions (and a committed one stays committed), the lost
//! reply of `closeConnectionAfterApply`, a disconnect killing a read, `maxTimeMS` expiry, member
//! tags and `lastWrite` in hello, change stream batches and resume tokens, and `logout`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "atlas_support/wire_client.rs"]
mod wire_client;

use bson::{Bson, Document, doc};
use serde_json::json;
use wire_client::{
    REPLY_TIMEOUT, Wire, code, labels, ok, start_sim_with_principal, wait_for_status,
};

fn lsid(byte: u8) -> Document {
    doc! { "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![byte; 16] } }
}

fn batch(reply: &Document) -> Vec<Document> {
    let cursor = reply.get_document("cursor").expect("a cursor reply");
    cursor
        .get_array("firstBatch")
        .or_else(|_| cursor.get_array("nextBatch"))
        .expect("a batch")
        .iter()
        .map(|d| d.as_document().expect("a document").clone())
        .collect()
}

fn cursor_id(reply: &Document) -> i64 {
    reply
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("cursor.id")
}

fn txn_insert(session: &Document, txn: i64, id: i32, start: bool) -> Document {
    let mut command = doc! {
        "insert": "tx", "documents": [{ "_id": id }], "lsid": session.clone(), "txnNumber": txn,
        "autocommit": false, "$db": "app",
    };
    if start {
        command.insert("startTransaction", true);
    }
    command
}

fn commit(session: &Document, txn: i64) -> Document {
    doc! {
        "commitTransaction": 1, "lsid": session.clone(), "txnNumber": txn, "autocommit": false,
        "$db": "admin",
    }
}

async fn count_docs(wire: &mut Wire, coll: &str) -> i64 {
    let reply = wire
        .command(doc! {
            "count": coll, "query": {}, "$db": "app",
            "$readPreference": { "mode": "primaryPreferred" },
        })
        .await
        .unwrap();
    assert!(ok(&reply), "{reply}");
    match reply.get("n") {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        other => panic!("count.n: {other:?}"),
    }
}

#[tokio::test]
async fn a_stepdown_aborts_the_open_transaction_everywhere() {
    let sim = start_sim_with_principal(&[]).await;
    let old = sim.start.members[0].clone();
    let mut on_old = Wire::authenticated(&sim, &old).await.unwrap();
    let session = lsid(1);
    let started = on_old
        .command(txn_insert(&session, 1, 1, true))
        .await
        .unwrap();
    assert!(ok(&started), "{started}");

    let stepped = sim.post("/stepdown", None).await.unwrap();
    let new = stepped["primary"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // A later statement on the old primary: not primary, and the transaction may run again.
    let statement = on_old
        .command(txn_insert(&session, 1, 2, false))
        .await
        .unwrap();
    assert_eq!(code(&statement), 10107, "{statement}");
    assert_eq!(labels(&statement), vec!["TransientTransactionError"]);
    // Its commit there: not primary, a retryable write.
    let commit_old = on_old.command(commit(&session, 1)).await.unwrap();
    assert_eq!(code(&commit_old), 10107, "{commit_old}");
    assert_eq!(labels(&commit_old), vec!["RetryableWriteError"]);
    // The commit retried on the new primary: the transaction is gone.
    let mut on_new = Wire::authenticated(&sim, &new).await.unwrap();
    let commit_new = on_new.command(commit(&session, 1)).await.unwrap();
    assert_eq!(code(&commit_new), 251, "{commit_new}");
    assert_eq!(commit_new.get_str("codeName").unwrap(), "NoSuchTransaction");
    assert_eq!(labels(&commit_new), vec!["TransientTransactionError"]);
    assert_eq!(
        count_docs(&mut on_new, "tx").await,
        0,
        "nothing of it was stored"
    );
}

#[tokio::test]
async fn a_committed_transaction_answers_a_retried_commit_with_ok_after_a_stepdown() {
    let sim = start_sim_with_principal(&[]).await;
    let old = sim.start.members[0].clone();
    let mut on_old = Wire::authenticated(&sim, &old).await.unwrap();
    let session = lsid(2);
    assert!(ok(&on_old
        .command(txn_insert(&session, 3, 1, true))
        .await
        .unwrap()));
    let first = on_old.command(commit(&session, 3)).await.unwrap();
    assert!(ok(&first), "{first}");

    let stepped = sim.post("/stepdown", None).await.unwrap();
    let new = stepped["primary"].as_str().unwrap().to_owned();
    let mut on_new = Wire::authenticated(&sim, &new).await.unwrap();
    let retried = on_new.command(commit(&session, 3)).await.unwrap();
    assert!(
        ok(&retried),
        "a retried commit of a committed transaction: {retried}"
    );
    assert_eq!(
        count_docs(&mut on_new, "tx").await,
        1,
        "stored exactly once"
    );
}

#[tokio::test]
async fn replset_step_down_aborts_open_transactions_too() {
    let sim = start_sim_with_principal(&[]).await;
    let old = sim.start.members[0].clone();
    let mut on_old = Wire::authenticated(&sim, &old).await.unwrap();
    let session = lsid(3);
    assert!(ok(&on_old
        .command(txn_insert(&session, 1, 1, true))
        .await
        .unwrap()));
    let mut admin = Wire::authenticated(&sim, &old).await.unwrap();
    let stepdown = admin
        .command(doc! { "replSetStepDown": 10, "$db": "admin" })
        .await
        .unwrap();
    assert!(ok(&stepdown), "{stepdown}");
    let status = sim.status().await.unwrap();
    let new = status["primary"].as_str().unwrap().to_owned();
    let mut on_new = Wire::authenticated(&sim, &new).await.unwrap();
    let commit_new = on_new.command(commit(&session, 1)).await.unwrap();
    assert_eq!(code(&commit_new), 251, "{commit_new}");
    assert_eq!(labels(&commit_new), vec!["TransientTransactionError"]);
}

#[tokio::test]
async fn close_connection_after_apply_applies_the_write_and_loses_the_reply() {
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.members[0].clone();
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    let configured = wire
        .command(doc! {
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["insert"], "closeConnectionAfterApply": true },
            "$db": "admin",
        })
        .await
        .unwrap();
    assert!(ok(&configured), "{configured}");
    wire.send(&doc! { "insert": "lost", "documents": [{ "_id": 1 }], "$db": "app" })
        .await
        .unwrap();
    assert!(
        wire.recv_in_time().await.unwrap().is_none(),
        "the connection closes without a reply"
    );

    // The same through the control API, on a commit.
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    let session = lsid(4);
    assert!(ok(&wire
        .command(txn_insert(&session, 1, 1, true))
        .await
        .unwrap()));
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["commitTransaction"], "closeConnectionAfterApply": true },
        })),
    )
    .await
    .unwrap();
    wire.send(&commit(&session, 1)).await.unwrap();
    assert!(wire.recv_in_time().await.unwrap().is_none());

    let mut check = Wire::authenticated(&sim, &primary).await.unwrap();
    assert_eq!(
        count_docs(&mut check, "lost").await,
        1,
        "the insert applied"
    );
    assert_eq!(count_docs(&mut check, "tx").await, 1, "the commit applied");
    let retried = check.command(commit(&session, 1)).await.unwrap();
    assert!(
        ok(&retried),
        "the commit retry learns it committed: {retried}"
    );
}

async fn block(sim: &mongo_pool_testkit::process::AtlasSim, command: &str, ms: i64) {
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": "alwaysOn",
            "data": { "failCommands": [command], "blockConnection": true, "blockTimeMS": ms },
        })),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_client_that_disconnects_kills_its_blocked_read() {
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.members[0].clone();
    // Far longer than the test waits: only a kill ends it in time.
    block(&sim, "find", 600_000).await;
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    wire.send(&doc! { "find": "c", "filter": {}, "$db": "app" })
        .await
        .unwrap();
    wait_for_status(&sim, "the find to run", |s| {
        s["members"][&primary]["operations"]["running"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o["command"] == "find"))
    })
    .await;
    drop(wire);
    let status = wait_for_status(&sim, "the find to be killed", |s| {
        s["members"][&primary]["operations"]["killed"] == 1
    })
    .await;
    let ops = &status["members"][&primary]["operations"];
    assert_eq!(ops["running"], json!([]), "{status}");
    assert_eq!(ops["killed_by_command"], json!({ "find": 1 }));
}

#[tokio::test]
async fn a_write_whose_client_disconnects_still_completes() {
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.members[0].clone();
    block(&sim, "insert", 300).await;
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    wire.send(&doc! { "insert": "w", "documents": [{ "_id": 1 }], "$db": "app" })
        .await
        .unwrap();
    wait_for_status(&sim, "the insert to run", |s| {
        s["members"][&primary]["operations"]["running"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o["command"] == "insert"))
    })
    .await;
    drop(wire);
    let status = wait_for_status(&sim, "the insert to finish", |s| {
        s["members"][&primary]["operations"]["running"] == json!([])
    })
    .await;
    assert_eq!(status["members"][&primary]["operations"]["killed"], 0);
    sim.post(
        "/failpoint",
        Some(json!({ "configureFailPoint": "failCommand", "mode": "off" })),
    )
    .await
    .unwrap();
    let mut check = Wire::authenticated(&sim, &primary).await.unwrap();
    assert_eq!(count_docs(&mut check, "w").await, 1);
}

#[tokio::test]
async fn max_time_ms_expires_a_blocked_command_with_code_50() {
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.members[0].clone();
    block(&sim, "find", 600_000).await;
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    let reply = wire
        .command(doc! { "find": "c", "filter": {}, "maxTimeMS": 100, "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&reply), 50, "{reply}");
    assert_eq!(reply.get_str("codeName").unwrap(), "MaxTimeMSExpired");
    assert!(labels(&reply).is_empty());
    // The connection stays usable.
    let ping = wire
        .command(doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap();
    assert!(ok(&ping));
}

#[tokio::test]
async fn hello_reports_member_tags_and_a_lagging_last_write_date() {
    let sim = start_sim_with_principal(&[
        "--member-tags",
        "nodeType:ELECTABLE,region:US_EAST_1",
        "--member-tags",
        "",
        "--member-tags",
        "nodeType:ANALYTICS",
        "--secondary-lag-ms",
        "300000",
    ])
    .await;
    let mut hellos = Vec::new();
    for member in &sim.start.members {
        let mut wire = Wire::connect(&sim, member).await.unwrap();
        hellos.push(wire.hello(None).await.unwrap());
    }
    assert_eq!(
        hellos[0].get_document("tags").unwrap(),
        &doc! { "nodeType": "ELECTABLE", "region": "US_EAST_1" }
    );
    assert!(hellos[1].get("tags").is_none(), "{}", hellos[1]);
    assert_eq!(
        hellos[2].get_document("tags").unwrap(),
        &doc! { "nodeType": "ANALYTICS" }
    );
    // How far each member's lastWriteDate is behind the localTime of the same reply.
    let behind = |h: &Document| {
        let now = h.get_datetime("localTime").unwrap().timestamp_millis();
        let last = h
            .get_document("lastWrite")
            .and_then(|w| w.get_datetime("lastWriteDate"))
            .unwrap()
            .timestamp_millis();
        now - last
    };
    // A millisecond may tick between the two clock reads of one reply.
    assert!(
        behind(&hellos[0]) < 60_000,
        "the primary is current: {}",
        hellos[0]
    );
    for secondary in &hellos[1..] {
        let lag = behind(secondary);
        assert!(
            lag >= 299_000,
            "a secondary's lastWriteDate lags by --secondary-lag-ms: {lag} ms"
        );
    }
}

#[test]
fn member_tags_that_are_not_key_value_pairs_fail_at_start_saying_what_to_fix() {
    let output =
        std::process::Command::new(mongo_pool_testkit::process::binary("atlas-sim").unwrap())
            .args([
                "--principal",
                &wire_client::principal_arg(),
                "--member-tags",
                "nodeType",
            ])
            .output()
            .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no start line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("KEY:VALUE"), "{stderr}");
}

#[tokio::test]
async fn a_change_stream_returns_events_with_resume_tokens_and_resumes_after_one() {
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.members[0].clone();
    let mut watcher = Wire::authenticated(&sim, &primary).await.unwrap();
    let mut writer = Wire::authenticated(&sim, &primary).await.unwrap();
    let opened = watcher
        .command(doc! {
            "aggregate": "cs", "pipeline": [{ "$changeStream": {} }], "cursor": {}, "$db": "app",
        })
        .await
        .unwrap();
    assert!(ok(&opened), "{opened}");
    let id = cursor_id(&opened);
    assert_ne!(id, 0, "a change stream cursor stays open");
    assert!(batch(&opened).is_empty());
    assert!(
        opened
            .get_document("cursor")
            .unwrap()
            .contains_key("postBatchResumeToken")
    );

    for command in [
        doc! { "insert": "cs", "documents": [{ "_id": 1, "a": 1 }], "$db": "app" },
        doc! { "insert": "other", "documents": [{ "_id": 9 }], "$db": "app" },
        doc! { "update": "cs", "updates": [{ "q": { "_id": 1 }, "u": { "$set": { "a": 2 } } }], "$db": "app" },
        doc! { "delete": "cs", "deletes": [{ "q": { "_id": 1 }, "limit": 1 }], "$db": "app" },
    ] {
        assert!(ok(&writer.command(command).await.unwrap()));
    }
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    while events.len() < 3 && tokio::time::Instant::now() < deadline {
        let more = watcher
            .command(doc! { "getMore": id, "collection": "cs", "maxTimeMS": 500, "$db": "app" })
            .await
            .unwrap();
        assert!(ok(&more), "{more}");
        let cursor = more.get_document("cursor").unwrap();
        let got = batch(&more);
        if let Some(last) = got.last() {
            assert_eq!(
                cursor.get_document("postBatchResumeToken").unwrap(),
                last.get_document("_id").unwrap(),
                "the batch's resume token is its last event's"
            );
        }
        events.extend(got);
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e.get_str("operationType").unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["insert", "update", "delete"],
        "only this collection's events"
    );
    assert_eq!(
        events[0].get_document("fullDocument").unwrap(),
        &doc! { "_id": 1, "a": 1 }
    );
    assert_eq!(
        events[0].get_document("ns").unwrap(),
        &doc! { "db": "app", "coll": "cs" }
    );
    assert_eq!(
        events[1].get_document("documentKey").unwrap(),
        &doc! { "_id": 1 }
    );
    assert_eq!(
        events[1]
            .get_document("updateDescription")
            .unwrap()
            .get_document("updatedFields")
            .unwrap(),
        &doc! { "a": 2 }
    );
    assert!(events[2].get("fullDocument").is_none());
    for e in &events {
        assert!(e.get_timestamp("clusterTime").is_ok(), "{e}");
    }

    // Resuming after the first event gives the rest, from any member.
    let mut elsewhere = Wire::authenticated(&sim, &sim.start.members[1])
        .await
        .unwrap();
    let resumed = elsewhere
        .command(doc! {
            "aggregate": "cs",
            "pipeline": [{ "$changeStream": { "resumeAfter": events[0].get_document("_id").unwrap().clone() } }],
            "cursor": {}, "$db": "app", "$readPreference": { "mode": "secondaryPreferred" },
        })
        .await
        .unwrap();
    let kinds: Vec<String> = batch(&resumed)
        .iter()
        .map(|e| e.get_str("operationType").unwrap().to_owned())
        .collect();
    assert_eq!(kinds, vec!["update", "delete"], "{resumed}");

    // A cursor the member does not have: CursorNotFound, which drivers resume on.
    let missing = watcher
        .command(doc! { "getMore": 12345_i64, "collection": "cs", "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&missing), 43, "{missing}");
}

#[tokio::test]
async fn logout_ends_the_connections_authentication() {
    let sim = start_sim_with_principal(&[]).await;
    let primary = sim.start.members[0].clone();
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    assert!(ok(&wire
        .command(doc! { "find": "c", "filter": {}, "$db": "app" })
        .await
        .unwrap()));
    let logout = wire
        .command(doc! { "logout": 1, "$db": "$external" })
        .await
        .unwrap();
    assert!(ok(&logout), "{logout}");
    let after = wire
        .command(doc! { "find": "c", "filter": {}, "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&after), 13, "{after}");
    // Another connection is still authenticated: logout is per connection.
    let mut other = Wire::authenticated(&sim, &primary).await.unwrap();
    assert!(ok(&other
        .command(doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap()));
}
