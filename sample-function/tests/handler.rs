//! The notes handler against a real mongo-pool (sidecar) + atlas-sim, invoked the way
//! `lambda_runtime` invokes it (`LambdaEvent::new`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use mongo_pool_client::Client;
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::AtlasSim;
use sample_function::{Config, Notes, handler};
use serde_json::{Value, json};

const KEY_ID: &str = "AKIDSAMPLEFUNCTION";
const SECRET: &str = "sample-function-secret";

async fn invoke(notes: &Notes, event: Value) -> Value {
    let response = handler(notes, LambdaEvent::new(event.clone(), Context::default()))
        .await
        .unwrap();
    assert!(
        response["db_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{event} -> {response}"
    );
    response
}

#[tokio::test]
async fn the_notes_api_works_through_mongo_pool() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let principal = format!("{KEY_ID}:{SECRET}");
        let sim = AtlasSim::start(["--principal", principal.as_str()])
            .await
            .unwrap();
        let pool = MongoPool::start(
            &sim.start.uri,
            &[
                ("AWS_ACCESS_KEY_ID", KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
            ],
        )
        .await
        .unwrap();
        let client = Client::connect(pool.socket_path()).await.unwrap();
        let config = Config::from_lookup(|k| (k == "NOTES_COLLECTION").then(|| "memos".into()));
        let notes = Notes::new(&client, &config);

        let ping = invoke(&notes, json!({"action": "ping"})).await;
        assert_eq!(ping["ok"], json!(true), "{ping}");
        assert!(
            ping["db_ms"].as_f64().unwrap() > 0.0,
            "a real round trip takes time"
        );

        let put = invoke(
            &notes,
            json!({"action": "put", "id": "n1", "body": {"text": "hello", "tags": ["a"]}}),
        )
        .await;
        assert_eq!(
            put,
            json!({"ok": true, "id": "n1", "created": true, "db_ms": put["db_ms"]})
        );
        let replaced = invoke(
            &notes,
            json!({"action": "put", "id": "n1", "body": {"text": "hello again"}}),
        )
        .await;
        assert_eq!(replaced["created"], json!(false), "{replaced}");

        let got = invoke(&notes, json!({"action": "get", "id": "n1"})).await;
        assert_eq!(got["ok"], json!(true), "{got}");
        assert_eq!(got["note"]["id"], json!("n1"));
        assert_eq!(
            got["note"]["body"],
            json!({"text": "hello again"}),
            "replaced, not merged"
        );

        let missing = invoke(&notes, json!({"action": "get", "id": "nope"})).await;
        assert_eq!(missing["ok"], json!(true));
        assert_eq!(missing["note"], Value::Null);

        for i in 2..=4 {
            invoke(
                &notes,
                json!({"action": "put", "id": format!("n{i}"), "body": {"i": i}}),
            )
            .await;
        }
        let list = invoke(&notes, json!({"action": "list", "limit": 3})).await;
        assert_eq!(list["count"], json!(3), "{list}");
        assert_eq!(list["notes"].as_array().unwrap().len(), 3);
        let all = invoke(&notes, json!({"action": "list"})).await;
        assert_eq!(all["count"], json!(4), "{all}");

        // The notes landed where the configuration says.
        let stored = client
            .database("notes")
            .collection::<bson::Document>("memos")
            .count_documents(bson::doc! {}, None)
            .await
            .unwrap();
        assert_eq!(stored, 4);
    })
    .await
    .expect("the test finishes within 120 s");
}
