//! mongo-pool as a real Lambda extension: lambda-sim runs the `mongo-pool` binary as an external
//! extension and the sample function (`bootstrap`) as the runtime, against atlas-sim over TLS
//! with IAM auth. Everything is a real process; the assertions read lambda-sim's JSON lines,
//! mongo-pool's closing summary (its JSON log) and atlas-sim's `/status`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongo_pool_testkit::lambda_sim::{self, SimRun, Status};
use mongo_pool_testkit::pool_process::socket_dir;
use mongo_pool_testkit::process::{AtlasSim, binary};
use serde_json::{Value, json};

const KEY_ID: &str = "ASIALAMBDATESTKEY001";
const SECRET: &str = "lambda-test-secret";
const TOKEN: &str = "lambda-test-session-token";
const CALLER_ARN: &str = "arn:aws:sts::123456789012:assumed-role/notes-role/notes-function";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/notes-role";

/// atlas-sim knowing the execution role's temporary credentials, plus `args`.
async fn atlas(dir: &Path, args: &[&str]) -> AtlasSim {
    let principals = dir.join("principals.json");
    let body = json!([{ "key_id": KEY_ID, "secret": SECRET, "session_token": TOKEN,
                        "arn": CALLER_ARN }]);
    std::fs::write(&principals, body.to_string()).unwrap();
    let principals = principals.to_str().unwrap().to_owned();
    let mut all = vec!["--principals-file", &principals, "--user", ROLE_ARN];
    all.extend_from_slice(args);
    AtlasSim::start(&all).await.expect("atlas-sim starts")
}

/// One Lambda environment: mongo-pool + the sample function, with the role's credentials and
/// `uri`, logs in `dir/logs`, and `extra` lambda-sim arguments.
async fn lambda(dir: &Path, uri: &str, extra: &[&str]) -> SimRun {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let socket = dir.join("mongo-pool.sock");
    let mut args: Vec<String> = vec![
        "--function".into(),
        path(binary("bootstrap").unwrap()),
        "--extension".into(),
        path(binary("mongo-pool").unwrap()),
        "--logs".into(),
        path(logs),
    ];
    for env in [
        format!("MONGO_POOL_URI={uri}"),
        format!("MONGO_POOL_SOCKET={}", socket.display()),
        format!("AWS_ACCESS_KEY_ID={KEY_ID}"),
        format!("AWS_SECRET_ACCESS_KEY={SECRET}"),
        format!("AWS_SESSION_TOKEN={TOKEN}"),
        "NOTES_DB=lambda".to_owned(),
        "NOTES_COLLECTION=notes".to_owned(),
    ] {
        args.push("--env".into());
        args.push(env);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    lambda_sim::run(&args).await.expect("lambda-sim runs")
}

fn path(p: impl Into<PathBuf>) -> String {
    p.into().to_str().unwrap().to_owned()
}

/// mongo-pool's closing summary line (`"mongo-pool stopped"`) from its JSON log.
fn summary(dir: &Path) -> Value {
    let log =
        std::fs::read_to_string(dir.join("logs").join("mongo-pool.log")).expect("mongo-pool's log");
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "mongo-pool stopped")
        .map(|v| v["fields"].clone())
        .unwrap_or_else(|| panic!("no summary line in mongo-pool's log:\n{log}"))
}

/// Sum of `members.*.<section>.<field>` in atlas-sim's status.
fn total(status: &Value, section: &str, field: &str) -> u64 {
    status["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m[section][field].as_u64().unwrap_or(0))
        .sum()
}

/// atlas-sim's status once it has no open connection, or after `limit`.
async fn status_when_closed(sim: &AtlasSim, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let status = sim.status().await.unwrap();
        if total(&status, "connections", "current") == 0 || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_all_ok(run: &SimRun, invocations: usize) {
    let init = run.init().expect("an init line");
    assert_eq!(init.status, Status::Ok, "init: {init:?}\n{}", run.stderr);
    let invokes = run.invokes();
    assert_eq!(invokes.len(), invocations, "{}", run.stdout);
    for invoke in invokes {
        assert_eq!(invoke.status, Status::Ok, "{invoke:?}");
        let response = invoke.response.as_ref().expect("a response");
        assert_eq!(response["ok"], true, "invocation {}: {response}", invoke.n);
        assert!(response["db_ms"].is_number(), "{response}");
    }
    let shutdown = run.shutdown().expect("a shutdown line");
    assert_eq!(
        shutdown.exits.get("mongo-pool"),
        Some(&Some(0)),
        "{shutdown:?}"
    );
    assert!(shutdown.killed.is_empty(), "{shutdown:?}");
    assert!(
        shutdown.ms < 2000.0,
        "shutdown took {} ms, past the 2,000 ms deadline",
        shutdown.ms
    );
    assert!(run.success(), "lambda-sim failed:\n{}", run.stdout);
}

#[tokio::test]
async fn warm_invocations_reuse_connections_and_shutdown_closes_everything() {
    let dir = socket_dir().unwrap();
    let sim = atlas(dir.path(), &[]).await;
    let event = json!({"action": "put", "id": "n1", "body": {"text": "hello"}}).to_string();
    let mut runs = Vec::new();
    for (i, invocations) in [2usize, 8].into_iter().enumerate() {
        let run_dir = dir.path().join(format!("run{i}"));
        let n = invocations.to_string();
        let run = lambda(
            &run_dir,
            &sim.start.uri,
            &["--invocations", &n, "--event", &event, "--freeze-ms", "50"],
        )
        .await;
        assert_all_ok(&run, invocations);
        let status = status_when_closed(&sim, Duration::from_secs(1)).await;
        assert_eq!(
            total(&status, "connections", "current"),
            0,
            "atlas-sim still has connections a second after SHUTDOWN: {status}"
        );
        runs.push((summary(&run_dir), status));
    }
    for (summary, _) in &runs {
        assert_eq!(
            summary["authentications"], summary["upstream_connections_created"],
            "one authentication per connection: {summary}"
        );
    }
    // Six more warm invocations cost no connection and no authentication.
    assert_eq!(
        runs[0].0["authentications"], runs[1].0["authentications"],
        "2 invocations: {}, 8 invocations: {}",
        runs[0].0, runs[1].0
    );
    // atlas-sim agrees, and received endSessions for the sessions the function used.
    let (first, second) = (&runs[0].1, &runs[1].1);
    let auths = |s: &Value| s["auth"]["successful"].as_u64().unwrap();
    assert_eq!(
        auths(second) - auths(first),
        runs[1].0["authentications"].as_u64().unwrap()
    );
    let end_sessions = |s: &Value| total(s, "commands", "endSessions");
    assert!(end_sessions(first) >= 1, "no endSessions: {first}");
    assert!(end_sessions(second) > end_sessions(first), "{second}");
}

#[tokio::test]
async fn first_invocation_after_a_freeze_longer_than_the_idle_disconnect_succeeds() {
    let dir = socket_dir().unwrap();
    let sim = atlas(dir.path(), &["--idle-disconnect-ms", "300"]).await;
    let event = json!({"action": "put", "id": "f1", "body": {"n": 1}}).to_string();
    let run = lambda(
        dir.path(),
        &sim.start.uri,
        &[
            "--invocations",
            "3",
            "--event",
            &event,
            "--freeze-ms",
            "1000",
        ],
    )
    .await;
    assert_all_ok(&run, 3);
    // The freezes really outlived the connections: mongo-pool had to open new ones.
    let summary = summary(dir.path());
    let status = status_when_closed(&sim, Duration::from_secs(1)).await;
    let created = total(&status, "connections", "total_created");
    assert_eq!(
        summary["upstream_connections_created"].as_u64(),
        Some(created)
    );
    assert!(
        created > 3,
        "no connection was replaced after the freezes: {summary}"
    );
    assert_eq!(total(&status, "connections", "current"), 0, "{status}");
}

#[tokio::test]
async fn bad_uri_is_reported_with_init_error_config_invalid() {
    let dir = socket_dir().unwrap();
    let run = lambda(
        dir.path(),
        "mongodb://cluster0.example.net/?authMechanism=SCRAM-SHA-256",
        &["--invocations", "1"],
    )
    .await;
    assert!(!run.success(), "{}", run.stdout);
    let init = run.init().expect("an init line");
    assert_eq!(init.status, Status::Error, "{init:?}");
    let error = init.error.as_ref().expect("the init error");
    assert_eq!(error.source, "mongo-pool");
    assert_eq!(error.error_type, "Extension.ConfigInvalid");
    assert!(
        error.message.contains("MONGO_POOL_URI") && error.message.contains("MONGODB-AWS"),
        "the message says what to fix: {}",
        error.message
    );
    assert!(run.invokes().is_empty(), "{}", run.stdout);
}

#[tokio::test]
async fn unreachable_atlas_with_fail_fast_is_reported_as_connect_failed() {
    let dir = socket_dir().unwrap();
    // A port where nothing listens: every connection attempt is refused at once.
    let uri = "mongodb://127.0.0.1:9/?authMechanism=MONGODB-AWS&authSource=%24external\
               &serverSelectionTimeoutMS=1000";
    let fail_fast = [
        "--invocations",
        "1",
        "--env",
        "MONGO_POOL_INIT_FAIL_FAST=true",
    ];
    let run = lambda(dir.path(), uri, &fail_fast).await;
    assert!(!run.success(), "{}", run.stdout);
    let init = run.init().expect("an init line");
    let error = init.error.as_ref().expect("the init error");
    assert_eq!(error.error_type, "Extension.ConnectFailed", "{init:?}");
    assert!(
        error.message.contains("127.0.0.1:9"),
        "the message names the unreachable member: {}",
        error.message
    );
}
