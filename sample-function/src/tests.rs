#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use lambda_runtime::Context;
use mongo_pool_client::ClientOptions;

/// A handler whose client points at a socket that does not exist: every test here that
/// reaches the database gets the missing-socket error.
fn notes_without_socket() -> Notes {
    let client = Client::new(ClientOptions::new(
        "/nonexistent/mongo-pool-sample/mongo-pool.sock",
    ));
    Notes::new(&client, &Config::from_lookup(|_| None))
}

async fn invoke(notes: &Notes, event: Value) -> Value {
    handler(notes, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap()
}

async fn error_of(event: Value) -> String {
    let response = invoke(&notes_without_socket(), event).await;
    assert_eq!(response["ok"], json!(false), "{response}");
    assert_eq!(
        response["db_ms"],
        json!(0.0),
        "rejected before any db call: {response}"
    );
    response["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_events_get_clear_error_responses() {
    let cases = [
        (json!("put"), "must be a JSON object"),
        (json!({}), "`action` is missing"),
        (json!({"action": 7}), "`action` must be a string"),
        (
            json!({"action": "delete", "id": "a"}),
            "unknown action \"delete\"",
        ),
        (json!({"action": "get"}), "`id` is missing"),
        (json!({"action": "get", "id": 5}), "`id` must be a string"),
        (
            json!({"action": "get", "id": ""}),
            "`id` must be 1 to 256 characters",
        ),
        (json!({"action": "put", "id": "a"}), "`body` is missing"),
        (
            json!({"action": "put", "id": "a", "body": [1]}),
            "`body` must be a JSON object",
        ),
        (json!({"action": "list", "limit": 0}), "at least 1"),
        (json!({"action": "list", "limit": -3}), "at least 1"),
        (json!({"action": "list", "limit": 2.5}), "at least 1"),
        (
            json!({"action": "list", "limit": "10"}),
            "`limit` must be a number",
        ),
    ];
    for (event, expected) in cases {
        let error = error_of(event.clone()).await;
        assert!(error.starts_with("bad event: "), "{event} -> {error}");
        assert!(error.contains(expected), "{event} -> {error}");
    }
}

#[test]
fn valid_events_parse_with_defaults_and_caps() {
    assert_eq!(
        parse(&json!({"action": "list"})).unwrap(),
        Request::List {
            limit: DEFAULT_LIST_LIMIT
        }
    );
    assert_eq!(
        parse(&json!({"action": "list", "limit": 100_000})).unwrap(),
        Request::List {
            limit: MAX_LIST_LIMIT
        }
    );
    assert_eq!(
        parse(&json!({"action": "put", "id": "n1", "body": {"t": "hi", "n": 2}})).unwrap(),
        Request::Put {
            id: "n1".into(),
            body: doc! {"t": "hi", "n": 2_i64}
        }
    );
    assert_eq!(parse(&json!({"action": "ping"})).unwrap(), Request::Ping);
}

#[tokio::test]
async fn a_missing_layer_is_reported_not_panicked() {
    let response = invoke(&notes_without_socket(), json!({"action": "ping"})).await;
    assert_eq!(response["ok"], json!(false), "{response}");
    let error = response["error"].as_str().unwrap();
    assert!(
        error.contains("is the mongo-pool layer attached"),
        "{error}"
    );
    assert!(response["db_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn config_defaults_to_notes_notes_and_reads_the_variables() {
    assert_eq!(
        Config::from_lookup(|_| None),
        Config {
            db: "notes".into(),
            collection: "notes".into()
        }
    );
    let config = Config::from_lookup(|k| match k {
        "NOTES_DB" => Some("app".into()),
        "NOTES_COLLECTION" => Some("memos".into()),
        _ => None,
    });
    assert_eq!(
        (config.db.as_str(), config.collection.as_str()),
        ("app", "memos")
    );
}
