//! The official Rust driver (`mongodb` 3.x, MONGODB-AWS over TLS) pointed straight at
//! atlas-sim: store semantics through the wire (a representative CRUD, query, update and
//! aggregate set; the store's unit tests cover the details), cursors across batches,
//! transactions, retryable writes the driver retries after a fail point, and a stepdown the
//! driver follows. If the driver cannot tell atlas-sim from a server, tests built on it mean
//! something.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "atlas_support/wire_client.rs"]
mod wire_client;

use std::time::Duration;

use bson::{Bson, Document, doc};
use mongo_pool_testkit::process::AtlasSim;
use mongodb::error::ErrorKind;
use mongodb::options::{AuthMechanism, ClientOptions, Credential, IndexOptions};
use mongodb::{Client, Collection, Cursor, IndexModel};
use serde_json::json;
use wire_client::{KEY_ID, SECRET, USER_ARN, start_sim, start_sim_with_principal};

/// A driver client for `uri` with MONGODB-AWS credentials given explicitly (not from the
/// environment: tests never set variables).
async fn client_for(uri: &str, key_id: &str, secret: &str, token: Option<&str>) -> Client {
    let mut options = ClientOptions::parse(uri).await.unwrap();
    let mut credential = Credential::builder()
        .username(key_id.to_owned())
        .password(secret.to_owned())
        .mechanism(AuthMechanism::MongoDbAws)
        .source("$external".to_owned())
        .build();
    if let Some(token) = token {
        credential.mechanism_properties = Some(doc! { "AWS_SESSION_TOKEN": token });
    }
    options.credential = Some(credential);
    options.server_selection_timeout = Some(Duration::from_secs(15));
    options.connect_timeout = Some(Duration::from_secs(10));
    options.app_name = Some("atlas-driver-test".to_owned());
    // After a network error the driver waits for its monitor to see the server again; the
    // streaming monitor's awaitable hello lasts up to this long (the default is 10 s).
    options.heartbeat_freq = Some(Duration::from_millis(500));
    Client::with_options(options).unwrap()
}

async fn client(sim: &AtlasSim) -> Client {
    client_for(&sim.start.uri, KEY_ID, SECRET, None).await
}

async fn collect(mut cursor: Cursor<Document>) -> Vec<Document> {
    let mut out = Vec::new();
    while cursor.advance().await.unwrap() {
        out.push(cursor.deserialize_current().unwrap());
    }
    out
}

fn ids(docs: &[Document]) -> Vec<Bson> {
    docs.iter().map(|d| d.get("_id").unwrap().clone()).collect()
}

/// The server's error code, also when the driver wraps it (an authentication failure).
fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        _ => std::error::Error::source(error)
            .and_then(|s| {
                s.downcast_ref::<mongodb::error::Error>()
                    .or_else(|| s.downcast_ref::<Box<mongodb::error::Error>>().map(|b| &**b))
            })
            .and_then(server_code),
    }
}

#[tokio::test]
async fn driver_crud_queries_updates_and_aggregates_round_trip() {
    let sim = start_sim_with_principal(&[]).await;
    let client = client(&sim).await;
    let db = client.database("shop");
    let items: Collection<Document> = db.collection("items");

    let docs: Vec<Document> = (0..30)
        .map(|i| doc! { "_id": i, "sku": format!("s{i:02}"), "qty": i % 7, "tags": if i % 2 == 0 { vec!["even"] } else { vec!["odd"] }, "meta": { "shelf": i / 10 } })
        .collect();
    assert_eq!(
        items.insert_many(docs).await.unwrap().inserted_ids.len(),
        30
    );
    items
        .insert_one(doc! { "_id": "x", "sku": "extra" })
        .await
        .unwrap();

    // Queries: comparison and logical operators, dotted paths, sort/skip/limit/projection.
    let found = collect(
        items
            .find(doc! { "qty": { "$gte": 3, "$lt": 6 }, "meta.shelf": { "$in": [0, 2] }, "tags": "even" })
            .sort(doc! { "_id": -1 })
            .skip(1)
            .limit(3)
            .projection(doc! { "sku": 1, "_id": 1 })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        found,
        vec![
            doc! { "_id": 24, "sku": "s24" },
            doc! { "_id": 4, "sku": "s04" }
        ],
        "matches 26, 24 and 4; skip 1"
    );
    assert_eq!(
        collect(items.find(doc! {}).limit(5).await.unwrap())
            .await
            .len(),
        5
    );
    let or = items
        .count_documents(
            doc! { "$or": [{ "_id": "x" }, { "qty": { "$nin": [0, 1, 2, 3, 4, 5] } }] },
        )
        .await
        .unwrap();
    assert_eq!(or, 1 + 4, "x plus the four documents with qty 6");
    assert_eq!(
        items
            .count_documents(doc! { "qty": { "$exists": false } })
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        items
            .count_documents(doc! { "qty": { "$not": { "$gt": 1 } } })
            .await
            .unwrap(),
        10 + 1
    );
    assert_eq!(
        items
            .count_documents(doc! { "sku": { "$ne": "extra" } })
            .await
            .unwrap(),
        30
    );

    // A cursor across many batches: getMore goes back to the member that opened it.
    let all = collect(
        items
            .find(doc! { "tags": "odd" })
            .sort(doc! { "_id": 1 })
            .batch_size(4)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        ids(&all),
        (0..30)
            .filter(|i| i % 2 == 1)
            .map(Bson::Int32)
            .collect::<Vec<_>>()
    );
    let status = sim.status().await.unwrap();
    let primary = sim.start.primary.clone().unwrap();
    assert!(
        status["members"][&primary]["commands"]["getMore"]
            .as_u64()
            .unwrap()
            >= 3,
        "{status}"
    );

    // Updates: operators, replacement, multi, upsert, findAndModify.
    let set = items
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "meta.color": "red" }, "$inc": { "qty": 10 }, "$push": { "tags": "sale" }, "$unset": { "sku": "" } })
        .await
        .unwrap();
    assert_eq!((set.matched_count, set.modified_count), (1, 1));
    let one = items.find_one(doc! { "_id": 1 }).await.unwrap().unwrap();
    assert_eq!(
        one,
        doc! { "_id": 1, "qty": 11, "tags": ["odd", "sale"], "meta": { "shelf": 0, "color": "red" } }
    );
    let many = items
        .update_many(
            doc! { "meta.shelf": 2 },
            doc! { "$set": { "archived": true } },
        )
        .await
        .unwrap();
    assert_eq!(many.modified_count, 10);
    let upsert = items
        .update_one(
            doc! { "_id": "new" },
            doc! { "$set": { "qty": 1 }, "$setOnInsert": { "created": true } },
        )
        .upsert(true)
        .await
        .unwrap();
    assert_eq!(upsert.upserted_id, Some(Bson::String("new".into())));
    assert_eq!(
        items
            .find_one(doc! { "_id": "new" })
            .await
            .unwrap()
            .unwrap(),
        doc! { "_id": "new", "qty": 1, "created": true }
    );
    let replaced = items
        .replace_one(doc! { "_id": "x" }, doc! { "sku": "replaced" })
        .await
        .unwrap();
    assert_eq!(replaced.modified_count, 1);
    assert_eq!(
        items.find_one(doc! { "_id": "x" }).await.unwrap().unwrap(),
        doc! { "_id": "x", "sku": "replaced" }
    );
    let before = items
        .find_one_and_update(doc! { "_id": 2 }, doc! { "$inc": { "qty": 100 } })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        before.get_i32("qty").unwrap(),
        2,
        "the document before the update"
    );
    assert_eq!(
        items
            .find_one(doc! { "_id": 2 })
            .await
            .unwrap()
            .unwrap()
            .get_i32("qty")
            .unwrap(),
        102
    );

    // Distinct and aggregate.
    let mut shelves = items.distinct("meta.shelf", doc! {}).await.unwrap();
    shelves.sort_by_key(|b| b.as_i32());
    assert_eq!(
        shelves,
        vec![Bson::Int32(0), Bson::Int32(1), Bson::Int32(2)]
    );
    let grouped = collect(
        items
            .aggregate(vec![
                doc! { "$match": { "meta.shelf": { "$exists": true } } },
                doc! { "$group": { "_id": "$meta.shelf", "n": { "$sum": 1 }, "qty": { "$sum": "$qty" } } },
                doc! { "$sort": { "_id": 1 } },
                doc! { "$skip": 1 },
                doc! { "$limit": 1 },
                doc! { "$project": { "n": 1 } },
            ])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(grouped, vec![doc! { "_id": 1, "n": 10 }]);
    let counted = collect(
        items
            .aggregate(vec![
                doc! { "$match": { "archived": true } },
                doc! { "$count": "archived" },
            ])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(counted, vec![doc! { "archived": 10 }]);

    // Deletes.
    assert_eq!(
        items
            .delete_one(doc! { "_id": "new" })
            .await
            .unwrap()
            .deleted_count,
        1
    );
    assert_eq!(
        items
            .delete_many(doc! { "archived": true })
            .await
            .unwrap()
            .deleted_count,
        10
    );
    assert_eq!(items.count_documents(doc! {}).await.unwrap(), 21);

    // Catalog: unique indexes are enforced, listed and dropped; collections and databases.
    let users: Collection<Document> = db.collection("users");
    let index = IndexModel::builder()
        .keys(doc! { "email": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("email_1".to_owned())
                .build(),
        )
        .build();
    users.create_index(index).await.unwrap();
    users
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .unwrap();
    let duplicate = users
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .unwrap_err();
    match duplicate.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => assert_eq!(e.code, 11000),
        other => panic!("expected a duplicate key error, got {other:?}"),
    }
    let mut index_names = users.list_index_names().await.unwrap();
    index_names.sort();
    assert_eq!(index_names, vec!["_id_", "email_1"]);
    users.drop_index("email_1").await.unwrap();
    users
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .unwrap();
    let mut names = db.list_collection_names().await.unwrap();
    names.sort();
    assert_eq!(names, vec!["items", "users"]);
    db.create_collection("empty").await.unwrap();
    users.drop().await.unwrap();
    let mut names = db.list_collection_names().await.unwrap();
    names.sort();
    assert_eq!(names, vec!["empty", "items"]);
    assert!(
        client
            .list_database_names()
            .await
            .unwrap()
            .contains(&"shop".to_owned())
    );
    db.drop().await.unwrap();
    assert!(
        !client
            .list_database_names()
            .await
            .unwrap()
            .contains(&"shop".to_owned())
    );

    let status = client
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .unwrap();
    let user = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap()[0]
        .clone();
    assert_eq!(
        user,
        Bson::Document(doc! { "user": USER_ARN, "db": "$external" })
    );
    client.shutdown().await;
}

#[tokio::test]
async fn driver_transactions_commit_and_abort() {
    let sim = start_sim_with_principal(&[]).await;
    let client = client(&sim).await;
    let coll: Collection<Document> = client.database("app").collection("tx");
    coll.insert_one(doc! { "_id": "seed" }).await.unwrap();

    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    coll.insert_one(doc! { "_id": "committed" })
        .session(&mut session)
        .await
        .unwrap();
    coll.update_one(doc! { "_id": "seed" }, doc! { "$set": { "touched": true } })
        .session(&mut session)
        .await
        .unwrap();
    let inside = coll
        .count_documents(doc! {})
        .session(&mut session)
        .await
        .unwrap();
    assert_eq!(inside, 2);
    assert!(
        coll.find_one(doc! { "_id": "committed" })
            .await
            .unwrap()
            .is_none(),
        "not visible before commit"
    );
    session.commit_transaction().await.unwrap();
    assert!(
        coll.find_one(doc! { "_id": "committed" })
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        coll.find_one(doc! { "_id": "seed" })
            .await
            .unwrap()
            .unwrap()
            .get_bool("touched")
            .unwrap()
    );

    session.start_transaction().await.unwrap();
    coll.insert_one(doc! { "_id": "aborted" })
        .session(&mut session)
        .await
        .unwrap();
    session.abort_transaction().await.unwrap();
    assert!(
        coll.find_one(doc! { "_id": "aborted" })
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 2);
    // shutdown() waits for every session handle to be dropped.
    drop(session);
    client.shutdown().await;
}

#[tokio::test]
async fn driver_retries_a_write_after_a_retryable_write_concern_error_and_it_is_applied_once() {
    let sim = start_sim_with_principal(&[]).await;
    let client = client(&sim).await;
    let coll: Collection<Document> = client.database("app").collection("retry");
    coll.insert_one(doc! { "_id": "counter", "n": 0 })
        .await
        .unwrap();
    // The write is applied, then the reply says it may not be durable: the driver retries with
    // the same lsid + txnNumber, and the server must not apply it again.
    client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": {
                "failCommands": ["update"], "errorLabels": ["RetryableWriteError"],
                "writeConcernError": { "code": 91, "errmsg": "Replication is being shut down" },
            },
        })
        .await
        .unwrap();
    coll.update_one(doc! { "_id": "counter" }, doc! { "$inc": { "n": 1 } })
        .await
        .unwrap();
    assert_eq!(
        coll.find_one(doc! { "_id": "counter" })
            .await
            .unwrap()
            .unwrap()
            .get_i32("n")
            .unwrap(),
        1
    );
    let primary = sim.start.primary.clone().unwrap();
    let status = sim.status().await.unwrap();
    assert_eq!(
        status["members"][&primary]["commands"]["update"], 2,
        "the first attempt and the retry"
    );

    // A network error before the write ran: the retry applies it, once.
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["insert"], "closeConnection": true },
        })),
    )
    .await
    .unwrap();
    coll.insert_one(doc! { "_id": "after-close" })
        .await
        .unwrap();
    assert_eq!(
        coll.count_documents(doc! { "_id": "after-close" })
            .await
            .unwrap(),
        1
    );
    client.shutdown().await;
}

#[tokio::test]
async fn driver_follows_a_stepdown_to_the_new_primary() {
    let sim = start_sim_with_principal(&[]).await;
    let client = client(&sim).await;
    let coll: Collection<Document> = client.database("app").collection("failover");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    let stepped = sim.post("/stepdown", None).await.unwrap();
    let new = stepped["primary"].as_str().unwrap().to_owned();
    for i in 2..=5 {
        coll.insert_one(doc! { "_id": i }).await.unwrap();
    }
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 5);
    let status = sim.status().await.unwrap();
    assert!(
        status["members"][&new]["commands"]["insert"]
            .as_u64()
            .unwrap()
            >= 1,
        "{status}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn driver_with_a_wrong_secret_fails_with_18() {
    let sim = start_sim_with_principal(&[]).await;
    let member = &sim.start.members[0];
    let ca = sim.start.ca_file.as_ref().unwrap().display().to_string();
    let uri = format!("mongodb://{member}/?directConnection=true&tls=true&tlsCAFile={ca}");
    let client = client_for(&uri, KEY_ID, "not-the-secret", None).await;
    let error = client
        .database("app")
        .collection::<Document>("x")
        .find_one(doc! {})
        .await
        .unwrap_err();
    assert_eq!(server_code(&error), Some(18), "{error}");
    assert!(
        error.to_string().contains("Authentication failed"),
        "{error}"
    );
    let status = sim.status().await.unwrap();
    assert!(status["auth"]["failed"].as_u64().unwrap() >= 1);
    assert!(!status.to_string().contains("not-the-secret"));
}

#[tokio::test]
async fn driver_with_temporary_credentials_and_a_session_token_is_the_role_user() {
    let dir = tempfile::tempdir().unwrap();
    let principals = dir.path().join("principals.json");
    std::fs::write(
        &principals,
        json!([{
            "key_id": "ASIATESTTEMPORARY", "secret": "temporary-secret", "session_token": "the-token",
            "arn": "arn:aws:sts::123456789012:assumed-role/app-role/app-session",
        }])
        .to_string(),
    )
    .unwrap();
    let sim = start_sim(&[
        "--principals-file",
        principals.to_str().unwrap(),
        "--user",
        "arn:aws:iam::123456789012:role/app-role",
    ])
    .await;
    let member = &sim.start.members[0];
    let ca = sim.start.ca_file.as_ref().unwrap().display().to_string();
    let uri = format!("mongodb://{member}/?directConnection=true&tls=true&tlsCAFile={ca}");

    let client = client_for(
        &uri,
        "ASIATESTTEMPORARY",
        "temporary-secret",
        Some("the-token"),
    )
    .await;
    let status = client
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .unwrap();
    let users = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    assert_eq!(
        users[0].as_document().unwrap().get_str("user").unwrap(),
        "arn:aws:iam::123456789012:role/app-role"
    );
    client.shutdown().await;

    let wrong_token = client_for(
        &uri,
        "ASIATESTTEMPORARY",
        "temporary-secret",
        Some("other-token"),
    )
    .await;
    let error = wrong_token
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await;
    // ping needs no authentication on a server, but the driver authenticates the connection
    // first: the handshake fails with 18.
    let error = error.unwrap_err();
    assert_eq!(server_code(&error), Some(18), "{error}");
}

#[tokio::test]
async fn driver_does_crud_on_a_sharded_cluster_through_any_router() {
    let sim = start_sim_with_principal(&["--topology", "sharded"]).await;
    let client = client(&sim).await;
    let coll: Collection<Document> = client.database("app").collection("sharded");
    coll.insert_many((0..50).map(|i| doc! { "_id": i }))
        .await
        .unwrap();
    let all = collect(coll.find(doc! {}).batch_size(8).await.unwrap()).await;
    assert_eq!(all.len(), 50);
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    coll.delete_many(doc! { "_id": { "$lt": 10 } })
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 40);
    drop(session);
    client.shutdown().await;
}

#[tokio::test]
async fn driver_retries_a_commit_whose_reply_is_lost_and_it_is_stored_once() {
    let sim = start_sim_with_principal(&[]).await;
    let client = client(&sim).await;
    let coll: Collection<Document> = client.database("app").collection("lost_commit");
    coll.insert_one(doc! { "_id": "seed" }).await.unwrap();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    coll.insert_one(doc! { "_id": "once" })
        .session(&mut session)
        .await
        .unwrap();
    // The commit applies and the connection closes unanswered: the driver retries the commit
    // (transactions spec, "Retrying commitTransaction"), and the server, which remembers the
    // commit, answers ok.
    sim.post(
        "/failpoint",
        Some(json!({
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["commitTransaction"], "closeConnectionAfterApply": true },
        })),
    )
    .await
    .unwrap();
    session.commit_transaction().await.unwrap();
    assert_eq!(
        coll.count_documents(doc! { "_id": "once" }).await.unwrap(),
        1
    );
    let primary = sim.start.primary.clone().unwrap();
    let status = sim.status().await.unwrap();
    assert_eq!(
        status["members"][&primary]["commands"]["commitTransaction"], 2,
        "the lost commit and its retry: {status}"
    );
    drop(session);
    client.shutdown().await;
}

#[tokio::test]
async fn driver_change_stream_loses_no_event_across_a_stepdown_and_dropped_connections() {
    use futures_util::StreamExt as _;

    let sim = start_sim_with_principal(&[]).await;
    let client = client(&sim).await;
    let coll: Collection<Document> = client.database("app").collection("stream");
    let mut stream = coll
        .watch()
        .max_await_time(Duration::from_millis(200))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for (id, fault) in [
        (1, None),
        (2, Some("/stepdown")),
        (3, Some("/drop-connections")),
    ] {
        if let Some(path) = fault {
            sim.post(path, None).await.unwrap();
        }
        coll.insert_one(doc! { "_id": id }).await.unwrap();
        let event = tokio::time::timeout(wire_client::REPLY_TIMEOUT, stream.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .unwrap();
        assert_eq!(
            event.operation_type,
            mongodb::change_stream::event::OperationType::Insert
        );
        seen.push(event.document_key.unwrap().get_i32("_id").unwrap());
    }
    assert_eq!(seen, vec![1, 2, 3]);
    drop(stream);
    client.shutdown().await;
}
