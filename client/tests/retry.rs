//! Retryable writes through mongo-pool, as the retryable-writes spec says: one retry with the
//! same `txnNumber` after a network error or a `RetryableWriteError` label, applied once;
//! multi-document writes never retried; the client reconnects after mongo-pool restarts; a
//! missing socket says what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod rig;
}

use bson::{Document, doc};
use mongo_pool_client::{Client, ClientOptions, Error, RETRYABLE_WRITE_ERROR};
use mongo_pool_testkit::pool_process::MongoPool;
use serde_json::json;
use support::rig::{KEY_ID, Rig, SECRET, bounded, client, sim};

fn docs(rig: &Rig) -> mongo_pool_client::Collection<Document> {
    rig.client.database("app").collection::<Document>("docs")
}

#[tokio::test]
async fn a_retryable_write_across_a_stepdown_is_applied_once() {
    bounded(async {
        // No heartbeat during the test: only the write's own error can reveal the new primary,
        // so the first attempt reaches the old one.
        let sim = sim(&[]).await;
        let uri = format!("{}&heartbeatFrequencyMS=600000", sim.start.uri);
        let pool = MongoPool::start(
            &uri,
            &[
                ("AWS_ACCESS_KEY_ID", KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
            ],
        )
        .await
        .unwrap();
        let client = client(pool.socket_path()).await;
        let rig = Rig { sim, pool, client };
        let docs = docs(&rig);
        docs.insert_one(&doc! {"_id": "before"}).await.unwrap();

        let stepped = rig.sim.post("/stepdown", None).await.unwrap();
        assert_ne!(stepped["primary"], json!(rig.sim.start.primary));
        let inserts_before = rig.commands("insert").await;

        docs.insert_one(&doc! {"_id": "across", "v": 1})
            .await
            .unwrap_or_else(|e| panic!("{e}\nmongo-pool:\n{}", rig.logs()));

        let attempts = rig.commands("insert").await - inserts_before;
        assert_eq!(
            attempts, 2,
            "the old primary refused, the retry went to the new one"
        );
        assert_eq!(
            docs.count_documents(doc! {"_id": "across"}, None)
                .await
                .unwrap(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn a_write_whose_connection_closes_is_retried_once_and_applied_once() {
    bounded(async {
        let rig = Rig::start().await;
        let docs = docs(&rig);
        docs.insert_one(&doc! {"_id": "warm"}).await.unwrap();
        rig.fail_point(
            json!({"times": 1}),
            json!({"failCommands": ["insert"], "closeConnection": true}),
        )
        .await;
        let before = rig.commands("insert").await;
        docs.insert_one(&doc! {"_id": "x"})
            .await
            .unwrap_or_else(|e| panic!("{e}\nmongo-pool:\n{}", rig.logs()));
        assert_eq!(rig.commands("insert").await - before, 2, "one retry");
        assert_eq!(
            docs.count_documents(doc! {"_id": "x"}, None).await.unwrap(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn a_retry_reuses_the_txn_number_so_the_server_does_not_apply_it_twice() {
    bounded(async {
        let rig = Rig::start().await;
        let docs = docs(&rig);
        // The insert runs, then the reply asks for a retry: a retry under a new txnNumber
        // would insert again and fail with a duplicate key.
        rig.fail_point(
            json!({"times": 1}),
            json!({"failCommands": ["insert"],
                   "writeConcernError": {"code": 91, "errmsg": "shutting down"},
                   "errorLabels": ["RetryableWriteError"]}),
        )
        .await;
        let before = rig.commands("insert").await;
        docs.insert_one(&doc! {"_id": "once"}).await.unwrap();
        assert_eq!(rig.commands("insert").await - before, 2, "one retry");
        assert_eq!(docs.count_documents(doc! {}, None).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn update_many_is_not_retried() {
    bounded(async {
        let rig = Rig::start().await;
        let docs = docs(&rig);
        docs.insert_many([doc! {"_id": 1, "n": 0}, doc! {"_id": 2, "n": 0}], None)
            .await
            .unwrap();
        rig.fail_point(
            json!({"times": 1}),
            json!({"failCommands": ["update"], "closeConnection": true}),
        )
        .await;
        let before = rig.commands("update").await;
        let err = docs
            .update_many(doc! {}, doc! {"$inc": {"n": 1}}, None)
            .await
            .unwrap_err();
        assert!(err.is_network(), "{err:?}");
        assert!(!err.contains_label(RETRYABLE_WRITE_ERROR), "{err:?}");
        assert_eq!(rig.commands("update").await - before, 1, "no retry");
        assert_eq!(docs.count_documents(doc! {"n": 1}, None).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_non_retryable_server_error_is_returned_as_is() {
    bounded(async {
        let rig = Rig::start().await;
        let docs = docs(&rig);
        rig.fail_point(
            json!({"times": 1}),
            json!({"failCommands": ["insert"], "errorCode": 2}),
        )
        .await;
        let before = rig.commands("insert").await;
        let err = docs.insert_one(&doc! {"_id": 1}).await.unwrap_err();
        assert_eq!(err.code(), Some(2), "{err:?}");
        assert_eq!(rig.commands("insert").await - before, 1, "no retry");
    })
    .await;
}

#[tokio::test]
async fn the_client_reconnects_after_mongo_pool_restarts() {
    bounded(async {
        let sim = sim(&[]).await;
        let dir = mongo_pool_testkit::pool_process::socket_dir().unwrap();
        let socket = dir.path().join("mongo-pool.sock");
        let socket_env = socket.to_str().unwrap().to_owned();
        let env = [
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("MONGO_POOL_SOCKET", socket_env.as_str()),
        ];
        let first = MongoPool::start(&sim.start.uri, &env).await.unwrap();
        let client = client(&socket).await;
        let docs = client.database("app").collection::<Document>("docs");
        docs.insert_one(&doc! {"_id": 1}).await.unwrap();

        first.stop().await.unwrap();
        let err = docs.find_one(doc! {}, None).await.unwrap_err();
        assert!(
            matches!(err, Error::SocketMissing { .. }) || err.is_network(),
            "{err:?}"
        );

        let second = MongoPool::start(&sim.start.uri, &env).await.unwrap();
        let found = docs
            .find_one(doc! {"_id": 1}, None)
            .await
            .unwrap_or_else(|e| panic!("{e}\nmongo-pool:\n{}", second.logs()));
        assert_eq!(found, Some(doc! {"_id": 1}));
        docs.insert_one(&doc! {"_id": 2}).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_missing_socket_asks_whether_the_layer_is_attached() {
    bounded(async {
        let dir = mongo_pool_testkit::pool_process::socket_dir().unwrap();
        let path = dir.path().join("mongo-pool.sock");
        let err = Client::connect(&path).await.unwrap_err();
        assert!(matches!(err, Error::SocketMissing { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("is the mongo-pool layer attached"), "{text}");
        assert!(text.contains(path.to_str().unwrap()), "{text}");

        // A lazily created client reports the same on its first operation.
        let lazy = Client::new(ClientOptions::new(&path));
        let err = lazy
            .database("app")
            .collection::<Document>("docs")
            .insert_one(&doc! {"a": 1})
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SocketMissing { .. }), "{err:?}");

        // from_lookup falls back to the documented default.
        assert_eq!(
            ClientOptions::from_lookup(|_| None).socket_path,
            std::path::Path::new("/tmp/mongo-pool.sock")
        );
    })
    .await;
}
