//! atlas-sim through the wire with a raw client (`atlas_support/wire_client.rs`): the
//! handshake and authentication gate, per-member cursors, retryable-write dedup, transactions,
//! fail points, `serverStatus` and `/status`. Each test starts its own atlas-sim (TLS, three
//! members, ephemeral ports on 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "atlas_support/wire_client.rs"]
mod wire_client;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use serde_json::{Value, json};
use wire_client::{
    KEY_ID, Keys, REPLY_TIMEOUT, USER_ARN, Wire, code, labels, ok, start_sim_with_principal,
};

fn members(sim: &mongo_pool_testkit::process::AtlasSim) -> (String, String, String) {
    let m = &sim.start.members;
    (m[0].clone(), m[1].clone(), m[2].clone())
}

fn lsid(byte: u8) -> Document {
    doc! { "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![byte; 16] } }
}

fn first_batch(reply: &Document) -> Vec<Document> {
    reply
        .get_document("cursor")
        .and_then(|c| {
            c.get_array("firstBatch")
                .or_else(|_| c.get_array("nextBatch"))
        })
        .expect("a cursor reply")
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

async fn insert_numbers(wire: &mut Wire, coll: &str, n: i32) {
    let docs: Vec<Document> = (0..n).map(|i| doc! { "_id": i, "n": i }).collect();
    let reply = wire
        .command(doc! { "insert": coll, "documents": docs, "$db": "app" })
        .await
        .unwrap();
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply.get_i32("n").unwrap(), n);
}

async fn count(wire: &mut Wire, coll: &str, filter: Document) -> i64 {
    let reply = wire
        .command(doc! {
            "count": coll, "query": filter, "$db": "app",
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
async fn unauthenticated_connections_may_only_handshake_ping_and_authenticate() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::connect(&sim, &primary).await.unwrap();
    let hello = wire.hello(None).await.unwrap();
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    assert!(ok(&wire
        .command(doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap()));
    let build = wire
        .command(doc! { "buildInfo": 1, "$db": "admin" })
        .await
        .unwrap();
    assert!(ok(&build) && build.get_str("version").is_ok(), "{build}");

    for command in [
        doc! { "find": "notes", "$db": "app" },
        doc! { "insert": "notes", "documents": [{ "x": 1 }], "$db": "app" },
        doc! { "serverStatus": 1, "$db": "admin" },
        doc! { "connectionStatus": 1, "$db": "admin" },
    ] {
        let reply = wire.command(command.clone()).await.unwrap();
        assert_eq!(code(&reply), 13, "{command} -> {reply}");
        assert_eq!(reply.get_str("codeName").unwrap(), "Unauthorized");
    }

    let reply = wire.authenticate(&Keys::test()).await.unwrap();
    assert!(ok(&reply), "{reply}");
    assert!(reply.get_bool("done").unwrap());
    let status = wire
        .command(doc! { "connectionStatus": 1, "$db": "admin" })
        .await
        .unwrap();
    let users = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    assert_eq!(
        users,
        &vec![Bson::Document(doc! { "user": USER_ARN, "db": "$external" })]
    );
    let found = wire
        .command(doc! { "find": "notes", "$db": "app" })
        .await
        .unwrap();
    assert!(ok(&found), "{found}");
}

#[tokio::test]
async fn unknown_commands_fail_with_59_on_every_member_authenticated_or_not() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, secondary, _) = members(&sim);
    let mut anonymous = Wire::connect(&sim, &secondary).await.unwrap();
    let reply = anonymous
        .command(doc! { "frobnicate": 1, "$db": "admin" })
        .await
        .unwrap();
    assert_eq!(code(&reply), 59, "{reply}");
    assert_eq!(reply.get_str("codeName").unwrap(), "CommandNotFound");
    for member in [&primary, &secondary] {
        let mut wire = Wire::authenticated(&sim, member).await.unwrap();
        let reply = wire
            .command(doc! { "frobnicate": 1, "$db": "app" })
            .await
            .unwrap();
        assert_eq!(code(&reply), 59, "{member}: {reply}");
        assert_eq!(reply.get_str("codeName").unwrap(), "CommandNotFound");
    }
}

#[tokio::test]
async fn op_query_hello_is_answered_and_op_query_find_is_refused() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::connect(&sim, &primary).await.unwrap();
    let hello = wire
        .op_query(doc! { "isMaster": 1, "helloOk": true })
        .await
        .unwrap();
    assert!(ok(&hello), "{hello}");
    assert!(hello.get_bool("ismaster").unwrap());
    assert_eq!(hello.get_str("setName").unwrap(), "sim");
    assert!(hello.get_bool("helloOk").unwrap());
    assert!(hello.get_document("topologyVersion").is_ok());
    assert_eq!(hello.get_i32("logicalSessionTimeoutMinutes").unwrap(), 30);

    let find = wire.op_query(doc! { "find": "notes" }).await.unwrap();
    assert!(!ok(&find), "{find}");
    assert_eq!(code(&find), 352, "{find}");
    assert_eq!(
        find.get_str("codeName").unwrap(),
        "UnsupportedOpQueryCommand"
    );
    // The connection is still usable with OP_MSG.
    assert!(ok(&wire
        .command(doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap()));
}

#[tokio::test]
async fn hello_reports_replica_set_membership_and_sasl_mechanisms() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, secondary, _) = members(&sim);
    let mut wire = Wire::connect(&sim, &secondary).await.unwrap();
    let hello = wire
        .command(doc! { "hello": 1, "saslSupportedMechs": "$external.x", "$db": "admin" })
        .await
        .unwrap();
    assert!(!hello.get_bool("isWritablePrimary").unwrap());
    assert!(hello.get_bool("secondary").unwrap());
    assert_eq!(hello.get_str("primary").unwrap(), primary);
    assert_eq!(hello.get_str("me").unwrap(), secondary);
    let hosts: Vec<&str> = hello
        .get_array("hosts")
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        sim.start
            .members
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(
        hello.get("electionId").is_none(),
        "only the primary reports electionId"
    );
    assert_eq!(
        hello.get_array("saslSupportedMechs").unwrap(),
        &vec![Bson::String("MONGODB-AWS".into())]
    );
    for field in [
        "maxBsonObjectSize",
        "maxMessageSizeBytes",
        "maxWriteBatchSize",
        "maxWireVersion",
        "setVersion",
    ] {
        assert!(hello.get(field).is_some(), "hello lacks {field}: {hello}");
    }
    assert!(hello.get("$clusterTime").is_some() && hello.get("operationTime").is_some());
}

#[tokio::test]
async fn a_cursor_lives_on_the_member_that_opened_it() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, secondary, _) = members(&sim);
    let mut a = Wire::authenticated(&sim, &primary).await.unwrap();
    let mut b = Wire::authenticated(&sim, &secondary).await.unwrap();
    insert_numbers(&mut a, "nums", 10).await;

    let opened = a
        .command(doc! { "find": "nums", "sort": { "n": 1 }, "batchSize": 3, "$db": "app" })
        .await
        .unwrap();
    let id = cursor_id(&opened);
    assert_ne!(id, 0);
    assert_eq!(first_batch(&opened).len(), 3);
    let other = a
        .command(doc! { "find": "nums", "batchSize": 3, "$db": "app" })
        .await
        .unwrap();
    assert_ne!(cursor_id(&other), id, "cursor ids are not reused");

    let wrong = b
        .command(doc! { "getMore": id, "collection": "nums", "batchSize": 3, "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&wrong), 43, "{wrong}");
    assert_eq!(wrong.get_str("codeName").unwrap(), "CursorNotFound");
    let killed_elsewhere = b
        .command(doc! { "killCursors": "nums", "cursors": [id], "$db": "app" })
        .await
        .unwrap();
    assert_eq!(
        killed_elsewhere.get_array("cursorsNotFound").unwrap(),
        &vec![Bson::Int64(id)]
    );

    let more = a
        .command(doc! { "getMore": id, "collection": "nums", "batchSize": 3, "$db": "app" })
        .await
        .unwrap();
    assert!(ok(&more), "{more}");
    let ns: Vec<i32> = first_batch(&more)
        .iter()
        .map(|d| d.get_i32("n").unwrap())
        .collect();
    assert_eq!(ns, vec![3, 4, 5]);
    assert_eq!(cursor_id(&more), id);

    let killed = a
        .command(doc! { "killCursors": "nums", "cursors": [id], "$db": "app" })
        .await
        .unwrap();
    assert_eq!(
        killed.get_array("cursorsKilled").unwrap(),
        &vec![Bson::Int64(id)]
    );
    let gone = a
        .command(doc! { "getMore": id, "collection": "nums", "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&gone), 43, "{gone}");
}

#[tokio::test]
async fn a_cursor_is_exhausted_after_the_last_batch_and_reports_id_zero() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut a = Wire::authenticated(&sim, &primary).await.unwrap();
    insert_numbers(&mut a, "nums", 7).await;
    let opened = a
        .command(doc! { "find": "nums", "batchSize": 5, "$db": "app" })
        .await
        .unwrap();
    let id = cursor_id(&opened);
    let last = a
        .command(doc! { "getMore": id, "collection": "nums", "batchSize": 5, "$db": "app" })
        .await
        .unwrap();
    assert_eq!(first_batch(&last).len(), 2);
    assert_eq!(cursor_id(&last), 0);
    let single = a
        .command(doc! { "find": "nums", "batchSize": 2, "singleBatch": true, "$db": "app" })
        .await
        .unwrap();
    assert_eq!((first_batch(&single).len(), cursor_id(&single)), (2, 0));
    let wrong_ns = a
        .command(doc! { "find": "nums", "batchSize": 2, "$db": "app" })
        .await
        .unwrap();
    let other = a
        .command(doc! { "getMore": cursor_id(&wrong_ns), "collection": "other", "$db": "app" })
        .await
        .unwrap();
    assert_eq!(
        code(&other),
        13,
        "a getMore on another namespace is Unauthorized: {other}"
    );
}

#[tokio::test]
async fn a_retryable_write_sent_twice_is_applied_once_with_the_same_reply() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    insert_numbers(&mut wire, "counters", 1).await;

    let update = doc! {
        "update": "counters",
        "updates": [{ "q": { "_id": 0 }, "u": { "$inc": { "n": 10 } } }],
        "lsid": lsid(1), "txnNumber": 7_i64, "$db": "app",
    };
    let first = wire.command(update.clone()).await.unwrap();
    let retry = wire.command(update.clone()).await.unwrap();
    assert!(ok(&first), "{first}");
    let strip = |d: &Document| {
        let mut d = d.clone();
        d.remove("$clusterTime");
        d.remove("operationTime");
        d
    };
    assert_eq!(strip(&first), strip(&retry));
    assert_eq!(
        (
            first.get_i32("n").unwrap(),
            first.get_i32("nModified").unwrap()
        ),
        (1, 1)
    );
    assert_eq!(
        count(&mut wire, "counters", doc! { "n": 10 }).await,
        1,
        "applied once"
    );

    // A retry on another connection (as after a network error) is deduplicated too.
    let mut other = Wire::authenticated(&sim, &primary).await.unwrap();
    let again = other.command(update.clone()).await.unwrap();
    assert_eq!(strip(&again), strip(&first));
    assert_eq!(count(&mut wire, "counters", doc! { "n": 10 }).await, 1);

    // A new txnNumber (or another session) is a new write.
    let mut next = update.clone();
    next.insert("txnNumber", 8_i64);
    assert!(ok(&wire.command(next).await.unwrap()));
    let mut other_session = update;
    other_session.insert("lsid", lsid(2));
    assert!(ok(&wire.command(other_session).await.unwrap()));
    assert_eq!(count(&mut wire, "counters", doc! { "n": 30 }).await, 1);

    let insert = doc! {
        "insert": "log", "documents": [{ "_id": "once" }], "lsid": lsid(3), "txnNumber": 1_i64, "$db": "app",
    };
    let first = wire.command(insert.clone()).await.unwrap();
    let retry = wire.command(insert).await.unwrap();
    assert_eq!(strip(&first), strip(&retry));
    assert!(
        retry.get("writeErrors").is_none(),
        "a retried insert is not a duplicate key: {retry}"
    );
    assert_eq!(count(&mut wire, "log", doc! {}).await, 1);
}

#[tokio::test]
async fn a_transaction_applies_on_commit_and_is_dropped_on_abort() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    let mut outside = Wire::authenticated(&sim, &primary).await.unwrap();

    let session = lsid(9);
    let started = wire
        .command(doc! {
            "insert": "tx", "documents": [{ "_id": 1 }], "lsid": session.clone(), "txnNumber": 1_i64,
            "startTransaction": true, "autocommit": false, "$db": "app",
        })
        .await
        .unwrap();
    assert!(ok(&started), "{started}");
    let inside = wire
        .command(doc! {
            "find": "tx", "filter": {}, "lsid": session.clone(), "txnNumber": 1_i64, "autocommit": false, "$db": "app",
        })
        .await
        .unwrap();
    assert_eq!(
        first_batch(&inside).len(),
        1,
        "the transaction sees its own write"
    );
    assert_eq!(
        count(&mut outside, "tx", doc! {}).await,
        0,
        "nothing is visible before commit"
    );
    let commit = wire
        .command(doc! {
            "commitTransaction": 1, "lsid": session.clone(), "txnNumber": 1_i64, "autocommit": false, "$db": "admin",
        })
        .await
        .unwrap();
    assert!(ok(&commit), "{commit}");
    assert_eq!(count(&mut outside, "tx", doc! {}).await, 1);

    let started = wire
        .command(doc! {
            "insert": "tx", "documents": [{ "_id": 2 }], "lsid": session.clone(), "txnNumber": 2_i64,
            "startTransaction": true, "autocommit": false, "$db": "app",
        })
        .await
        .unwrap();
    assert!(ok(&started), "{started}");
    let abort = wire
        .command(doc! {
            "abortTransaction": 1, "lsid": session.clone(), "txnNumber": 2_i64, "autocommit": false, "$db": "admin",
        })
        .await
        .unwrap();
    assert!(ok(&abort), "{abort}");
    assert_eq!(
        count(&mut outside, "tx", doc! {}).await,
        1,
        "the aborted insert is dropped"
    );

    for command in [
        doc! { "commitTransaction": 1, "lsid": session.clone(), "txnNumber": 5_i64, "autocommit": false, "$db": "admin" },
        doc! { "abortTransaction": 1, "lsid": session.clone(), "txnNumber": 5_i64, "autocommit": false, "$db": "admin" },
        doc! {
            "insert": "tx", "documents": [{ "_id": 3 }], "lsid": session.clone(), "txnNumber": 5_i64,
            "autocommit": false, "$db": "app",
        },
    ] {
        let reply = wire.command(command.clone()).await.unwrap();
        assert_eq!(code(&reply), 251, "{command} -> {reply}");
        assert_eq!(reply.get_str("codeName").unwrap(), "NoSuchTransaction");
        assert_eq!(labels(&reply), vec!["TransientTransactionError"]);
    }
    assert_eq!(count(&mut outside, "tx", doc! {}).await, 1);
}

async fn configure(wire: &mut Wire, mode: Bson, data: Document) -> Document {
    let reply = wire
        .command(doc! { "configureFailPoint": "failCommand", "mode": mode, "data": data, "$db": "admin" })
        .await
        .unwrap();
    assert!(ok(&reply), "{reply}");
    reply
}

#[tokio::test]
async fn fail_point_fails_the_next_n_matching_commands_with_its_code_and_labels() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    configure(
        &mut wire,
        Bson::Document(doc! { "times": 2 }),
        doc! { "failCommands": ["insert"], "errorCode": 91, "errorLabels": ["RetryableWriteError"] },
    )
    .await;
    assert!(
        ok(&wire
            .command(doc! { "find": "fp", "$db": "app" })
            .await
            .unwrap()),
        "other commands pass"
    );
    for _ in 0..2 {
        let reply = wire
            .command(doc! { "insert": "fp", "documents": [{ "x": 1 }], "$db": "app" })
            .await
            .unwrap();
        assert_eq!(code(&reply), 91, "{reply}");
        assert_eq!(reply.get_str("codeName").unwrap(), "ShutdownInProgress");
        assert_eq!(labels(&reply), vec!["RetryableWriteError"]);
    }
    let third = wire
        .command(doc! { "insert": "fp", "documents": [{ "x": 1 }], "$db": "app" })
        .await
        .unwrap();
    assert!(ok(&third), "{third}");
    assert_eq!(
        count(&mut wire, "fp", doc! {}).await,
        1,
        "failed commands did not run"
    );

    configure(
        &mut wire,
        Bson::String("alwaysOn".into()),
        doc! { "failCommands": ["find"], "errorCode": 2 },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            code(
                &wire
                    .command(doc! { "find": "fp", "$db": "app" })
                    .await
                    .unwrap()
            ),
            2
        );
    }
    configure(&mut wire, Bson::String("off".into()), doc! {}).await;
    assert!(ok(&wire
        .command(doc! { "find": "fp", "$db": "app" })
        .await
        .unwrap()));
}

#[tokio::test]
async fn fail_point_from_the_control_api_closes_the_connection_without_a_reply() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["find"], "closeConnection": true },
        })),
    )
    .await
    .unwrap();
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    wire.send(&doc! { "find": "fp", "$db": "app" })
        .await
        .unwrap();
    assert_eq!(
        wire.recv_in_time().await.unwrap(),
        None,
        "closed without a reply"
    );
    let mut again = Wire::authenticated(&sim, &primary).await.unwrap();
    assert!(
        ok(&again
            .command(doc! { "find": "fp", "$db": "app" })
            .await
            .unwrap()),
        "times: 1 is used up"
    );

    let refused = sim
        .post(
            "/failpoint",
            Some(json!({ "configureFailPoint": "nope", "mode": "alwaysOn" })),
        )
        .await;
    assert!(refused.is_err(), "an unknown fail point is a 400");
}

#[tokio::test]
async fn fail_point_block_connection_delays_the_reply_then_runs_the_command() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    configure(
        &mut wire,
        Bson::Document(doc! { "times": 1 }),
        doc! { "failCommands": ["insert"], "blockConnection": true, "blockTimeMS": 400 },
    )
    .await;
    let started = Instant::now();
    let reply = wire
        .command(doc! { "insert": "fp", "documents": [{ "x": 1 }], "$db": "app" })
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "blocked for blockTimeMS"
    );
    assert!(ok(&reply), "then the command runs: {reply}");
    assert_eq!(count(&mut wire, "fp", doc! {}).await, 1);
}

#[tokio::test]
async fn fail_point_with_app_name_fails_only_that_application() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut victim = Wire::connect(&sim, &primary).await.unwrap();
    victim.hello(Some("victim")).await.unwrap();
    assert!(ok(&victim.authenticate(&Keys::test()).await.unwrap()));
    let mut bystander = Wire::connect(&sim, &primary).await.unwrap();
    bystander.hello(Some("bystander")).await.unwrap();
    assert!(ok(&bystander.authenticate(&Keys::test()).await.unwrap()));
    configure(
        &mut bystander,
        Bson::String("alwaysOn".into()),
        doc! { "failCommands": ["ping", "find"], "errorCode": 11600, "appName": "victim" },
    )
    .await;
    for _ in 0..2 {
        assert!(ok(&bystander
            .command(doc! { "find": "fp", "$db": "app" })
            .await
            .unwrap()));
        let failed = victim
            .command(doc! { "find": "fp", "$db": "app" })
            .await
            .unwrap();
        assert_eq!(code(&failed), 11600, "{failed}");
        assert_eq!(failed.get_str("codeName").unwrap(), "InterruptedAtShutdown");
    }
}

#[tokio::test]
async fn fail_point_write_concern_error_is_attached_after_the_write_applies() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    let wce = doc! { "code": 91, "codeName": "ShutdownInProgress", "errmsg": "Replication is being shut down" };
    configure(
        &mut wire,
        Bson::Document(doc! { "times": 1 }),
        doc! { "failCommands": ["insert"], "writeConcernError": wce.clone() },
    )
    .await;
    let reply = wire
        .command(doc! { "insert": "fp", "documents": [{ "x": 1 }], "$db": "app" })
        .await
        .unwrap();
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply.get_document("writeConcernError").unwrap(), &wce);
    assert_eq!(
        count(&mut wire, "fp", doc! {}).await,
        1,
        "the write was applied"
    );
}

#[tokio::test]
async fn server_status_counts_connections_and_aws_authentications() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::authenticated(&sim, &primary).await.unwrap();
    let mut bad = Wire::connect(&sim, &primary).await.unwrap();
    let wrong = Keys {
        secret: "wrong".into(),
        ..Keys::test()
    };
    let denied = bad.authenticate(&wrong).await.unwrap();
    assert_eq!(code(&denied), 18, "{denied}");
    assert_eq!(denied.get_str("errmsg").unwrap(), "Authentication failed.");
    assert_eq!(denied.get_str("codeName").unwrap(), "AuthenticationFailed");

    let status = wire
        .command(doc! { "serverStatus": 1, "$db": "admin" })
        .await
        .unwrap();
    let connections = status.get_document("connections").unwrap();
    assert_eq!(connections.get_i64("current").unwrap(), 2);
    assert_eq!(connections.get_i64("totalCreated").unwrap(), 2);
    let aws = status
        .get_document("security")
        .and_then(|s| s.get_document("authentication"))
        .and_then(|a| a.get_document("mechanisms"))
        .and_then(|m| m.get_document("MONGODB-AWS"))
        .and_then(|m| m.get_document("authenticate"))
        .unwrap();
    assert_eq!(
        (
            aws.get_i64("received").unwrap(),
            aws.get_i64("successful").unwrap()
        ),
        (2, 1)
    );

    let control = sim.status().await.unwrap();
    assert_eq!(control["auth"]["received"], 2);
    assert_eq!(control["auth"]["successful"], 1);
    assert_eq!(control["auth"]["failed"], 1);
    let cause = control["auth"]["last_failure"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(cause.contains("signature"), "{cause}");
    assert!(
        !control.to_string().contains("wrong\""),
        "secrets never reach /status"
    );
}

#[tokio::test]
async fn a_caller_who_is_not_a_database_user_gets_the_same_masked_error() {
    let sim =
        start_sim_with_principal(&["--user", "arn:aws:iam::123456789012:user/someone-else"]).await;
    let (primary, _, _) = members(&sim);
    let mut wire = Wire::connect(&sim, &primary).await.unwrap();
    let denied = wire.authenticate(&Keys::test()).await.unwrap();
    assert_eq!(
        (code(&denied), denied.get_str("errmsg").unwrap()),
        (18, "Authentication failed.")
    );
    let status = sim.status().await.unwrap();
    assert!(
        status["auth"]["last_failure"]
            .as_str()
            .unwrap()
            .contains(KEY_ID),
        "{status}"
    );
    let find = wire
        .command(doc! { "find": "x", "$db": "app" })
        .await
        .unwrap();
    assert_eq!(code(&find), 13, "still unauthenticated");
}

#[tokio::test]
async fn sts_throttling_fails_the_next_n_authentications() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, _, _) = members(&sim);
    sim.post("/sts/throttle?times=1", None).await.unwrap();
    let mut wire = Wire::connect(&sim, &primary).await.unwrap();
    assert_eq!(code(&wire.authenticate(&Keys::test()).await.unwrap()), 18);
    let status = sim.status().await.unwrap();
    assert!(
        status["auth"]["last_failure"]
            .as_str()
            .unwrap()
            .contains("Throttling"),
        "{status}"
    );
    assert!(
        ok(&wire.authenticate(&Keys::test()).await.unwrap()),
        "only one was throttled"
    );
    assert_eq!(sim.status().await.unwrap()["sts_calls"], 2);
}

#[tokio::test]
async fn status_has_the_documented_shape_and_counts_commands_per_member_as_received() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, secondary, third) = members(&sim);
    let mut a = Wire::authenticated(&sim, &primary).await.unwrap();
    for _ in 0..3 {
        a.command(doc! { "find": "s", "$db": "app" }).await.unwrap();
    }
    let mut b = Wire::connect(&sim, &secondary).await.unwrap();
    b.hello(None).await.unwrap();
    // Refused commands are counted too: they were received.
    assert_eq!(
        code(&b.command(doc! { "find": "s", "$db": "app" }).await.unwrap()),
        13
    );
    assert_eq!(
        code(
            &b.command(doc! { "nosuchcommand": 1, "$db": "app" })
                .await
                .unwrap()
        ),
        59
    );
    assert_eq!(code(&b.op_query(doc! { "count": "s" }).await.unwrap()), 352);

    let status = sim.status().await.unwrap();
    let top: BTreeSet<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        top.is_superset(&BTreeSet::from(["primary", "members", "auth", "sts_calls"])),
        "{status}"
    );
    assert_eq!(status["primary"], json!(primary));
    let keys: BTreeSet<&str> = status["members"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([primary.as_str(), secondary.as_str(), third.as_str()])
    );
    let a_status = &status["members"][&primary];
    assert_eq!(a_status["state"], "PRIMARY");
    assert_eq!(
        a_status["connections"],
        json!({ "current": 1, "total_created": 1 })
    );
    assert_eq!(a_status["commands"]["find"], 3);
    assert_eq!(a_status["commands"]["saslStart"], 1);
    assert_eq!(a_status["commands"]["saslContinue"], 1);
    assert_eq!(a_status["commands"]["hello"], 1);
    let b_status = &status["members"][&secondary];
    assert_eq!(b_status["state"], "SECONDARY");
    assert_eq!(
        b_status["commands"],
        json!({ "hello": 1, "find": 1, "nosuchcommand": 1, "count": 1 }),
        "per member, by name, as received"
    );
    assert_eq!(status["members"][&third]["commands"], json!({}));
    assert_eq!(
        status["members"][&third]["connections"],
        json!({ "current": 0, "total_created": 0 })
    );
    let auth: BTreeSet<&str> = status["auth"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(auth.is_superset(&BTreeSet::from([
        "received",
        "successful",
        "failed",
        "last_failure"
    ])));
    assert_eq!(status["auth"]["last_failure"], Value::Null);
    assert_eq!(status["sts_calls"], 1);

    drop(a);
    wait_for_current(&sim, &primary, 0).await;
}

async fn wait_for_current(sim: &mongo_pool_testkit::process::AtlasSim, member: &str, n: u64) {
    wire_client::wait_for_status(sim, "connections.current", |s| {
        s["members"][member]["connections"]["current"] == n
    })
    .await;
}

#[tokio::test]
async fn drop_connections_closes_every_open_connection() {
    let sim = start_sim_with_principal(&[]).await;
    let (primary, secondary, _) = members(&sim);
    let mut a = Wire::authenticated(&sim, &primary).await.unwrap();
    let mut b = Wire::authenticated(&sim, &secondary).await.unwrap();
    let dropped = sim.post("/drop-connections", None).await.unwrap();
    assert_eq!(dropped["dropped"], 2);
    assert!(a.closed_by_server_within(REPLY_TIMEOUT).await.unwrap());
    assert!(b.closed_by_server_within(REPLY_TIMEOUT).await.unwrap());
    let mut c = Wire::authenticated(&sim, &primary).await.unwrap();
    assert!(ok(&c
        .command(doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap()));
}

#[tokio::test]
async fn help_documents_every_option_of_the_command_line_contract() {
    let bin = mongo_pool_testkit::process::binary("atlas-sim").unwrap();
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--members",
        "--port",
        "--topology",
        "--tls",
        "--no-tls",
        "--state-dir",
        "--principal ",
        "--principals-file",
        "--sts-url",
        "--user",
        "--sts-host",
        "--sts-delay-ms",
        "--latency-ms",
        "--max-wire-version",
        "--idle-disconnect-ms",
        "--control-port",
        "--srv",
        "--dns-port",
        "--member-tags",
        "--secondary-lag-ms",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
    for endpoint in [
        "/status",
        "/stepdown",
        "/no-primary",
        "/drop-connections",
        "/blackhole",
        "/failpoint",
        "/sts/throttle",
    ] {
        assert!(help.contains(endpoint), "--help lacks {endpoint}");
    }
    assert!(
        help.contains("closeConnectionAfterApply"),
        "--help lacks atlas-sim's own fail-point option"
    );
}

#[tokio::test]
async fn the_start_line_follows_the_contract_and_sigterm_exits_zero() {
    let sim = start_sim_with_principal(&[]).await;
    let start = &sim.start;
    let ca = start.ca_file.as_ref().expect("ca_file with TLS");
    assert!(ca.exists());
    assert_eq!(start.members.len(), 3);
    assert_eq!(start.primary.as_deref(), Some(start.members[0].as_str()));
    assert!(
        start
            .uri
            .starts_with(&format!("mongodb://{}/?", start.members.join(","))),
        "{}",
        start.uri
    );
    for part in [
        "replicaSet=sim",
        "tls=true",
        "tlsCAFile=",
        "authMechanism=MONGODB-AWS",
        "authSource=%24external",
    ] {
        assert!(start.uri.contains(part), "{} lacks {part}", start.uri);
    }
    assert!(start.control.starts_with("http://127.0.0.1:"));
    assert!(start.srv_uri.is_none() && start.dns.is_none());
    assert!(sim.stop().await.unwrap().success(), "SIGTERM exits 0");
}

#[tokio::test]
async fn no_tls_serves_plain_tcp_and_latency_delays_every_reply() {
    let sim =
        start_sim_with_principal(&["--no-tls", "--latency-ms", "300", "--members", "1"]).await;
    assert!(sim.start.ca_file.is_none());
    assert!(!sim.start.uri.contains("tls="), "{}", sim.start.uri);
    let mut wire = Wire::connect(&sim, &sim.start.members[0]).await.unwrap();
    let started = Instant::now();
    assert!(ok(&wire
        .command(doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap()));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "--latency-ms is added"
    );
}

#[tokio::test]
async fn without_state_dir_the_certificates_go_to_a_temp_dir_removed_at_exit() {
    use tokio::io::AsyncBufReadExt as _;

    let binary = mongo_pool_testkit::process::binary("atlas-sim").unwrap();
    let mut child = tokio::process::Command::new(binary)
        .args([
            "--members",
            "1",
            "--principal",
            &wire_client::principal_arg(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("no start line within 30 s")
    .unwrap()
    .expect("atlas-sim exited before its start line");
    let start: Value = serde_json::from_str(&line).unwrap();
    let ca_file = std::path::PathBuf::from(start["ca_file"].as_str().unwrap());
    let dir = ca_file.parent().unwrap().to_path_buf();
    assert!(ca_file.is_file(), "{} is missing", ca_file.display());

    mongo_pool_testkit::process::signal_child(&child, mongo_pool_testkit::process::Signal::SIGTERM)
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("atlas-sim did not exit within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
