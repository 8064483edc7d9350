//! lambda-sim's lifecycle with real processes: the freeze between invocations, SHUTDOWN with
//! its deadline and SIGKILL of an extension that never exits, Init errors from an extension
//! and from the runtime, invocation errors, timeouts that reset the environment, and process
//! output kept off lambda-sim's stdout. Python fixtures live in `tests/fixtures/lambda/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "lambda_support/fixtures.rs"]
mod fixtures;

use fixtures::{Records, assert_only_json_lines, fixture, sim};
use mongo_pool_testkit::lambda_sim::{Line, SHUTDOWN_BUDGET, Status};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::json;

fn gone(pid: i64) -> bool {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), None).is_err()
}

#[tokio::test]
async fn freeze_stops_processes_between_invocations() {
    let records = Records::new();
    let freeze_ms = 400.0;
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--extension",
            &fixture("ext-ticker"),
            "--invocations",
            "2",
            "--freeze-ms",
            "400",
        ],
    )
    .await;
    assert!(run.success(), "{}", run.stderr);
    let ticks = &records.of_kind("ext-ticker", "ticks")[0];
    // A thread ticking every 10 ms sees a gap only if its whole process was stopped.
    let gap = ticks["max_gap_ms"].as_f64().unwrap();
    assert!(
        gap >= freeze_ms,
        "largest gap between ticks {gap} ms: {ticks}"
    );
    // The runtime was frozen too: the second event reached it at least a freeze later.
    let invokes = run.invokes();
    let first = invokes[0].response.as_ref().unwrap()["received_ms"]
        .as_f64()
        .unwrap();
    let second = invokes[1].response.as_ref().unwrap()["received_ms"]
        .as_f64()
        .unwrap();
    assert!(second - first >= freeze_ms, "{first} -> {second}");
}

#[tokio::test]
async fn shutdown_sigkills_an_extension_that_never_exits_at_the_deadline() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--extension",
            &fixture("ext-stubborn"),
            "--extension",
            &fixture("ext-good"),
            "--shutdown-reason",
            "Custom-Reason",
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_only_json_lines(&run);
    assert_eq!(run.invokes()[0].status, Status::Ok);
    let shutdown = run.shutdown().unwrap();
    assert_eq!(shutdown.killed, ["ext-stubborn"]);
    assert_eq!(shutdown.exits.get("ext-stubborn"), Some(&None));
    assert_eq!(shutdown.exits.get("ext-good"), Some(&Some(0)));
    assert!(
        shutdown.ms >= SHUTDOWN_BUDGET.as_millis() as f64,
        "{shutdown:?}"
    );
    // Both got the same SHUTDOWN; its deadline was at most 2,000 ms ahead when it arrived.
    let stubborn = records.of_kind("ext-stubborn", "event");
    let good = records.of_kind("ext-good", "event");
    let (s_event, g_event) = (
        &stubborn.last().unwrap()["event"],
        &good.last().unwrap()["event"],
    );
    assert_eq!(s_event["eventType"], "SHUTDOWN");
    assert_eq!(s_event, g_event);
    assert_eq!(s_event["shutdownReason"], "Custom-Reason");
    let deadline = s_event["deadlineMs"].as_f64().unwrap();
    let received = stubborn.last().unwrap()["at_ms"].as_f64().unwrap();
    let ahead = deadline - received;
    assert!(
        ahead > 0.0 && ahead <= 2000.0 + 50.0,
        "deadline {ahead} ms ahead"
    );
    let pid = stubborn.last().unwrap()["pid"].as_i64().unwrap();
    assert!(gone(pid), "ext-stubborn ({pid}) is still running");
}

#[tokio::test]
async fn init_error_from_an_extension_fails_init_and_shuts_down() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--extension",
            &fixture("ext-init-error"),
            "--extension",
            &fixture("ext-good"),
            "--invocations",
            "3",
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let init = run.init().unwrap();
    assert_eq!(init.status, Status::Error);
    let error = init.error.as_ref().unwrap();
    assert_eq!(error.source, "ext-init-error");
    assert_eq!(error.error_type, "Extension.ConfigInvalid");
    assert_eq!(error.message, "MONGO_POOL_URI is missing");
    assert!(run.invokes().is_empty());
    let shutdown = run.shutdown().unwrap();
    assert_eq!(shutdown.reason, "failure");
    // It exits 1 after its report, unless the teardown's SIGKILL (it is not subscribed to
    // SHUTDOWN) comes first: both are what Lambda does.
    let exit = shutdown.exits["ext-init-error"];
    assert!(
        exit == Some(1) || shutdown.killed.contains(&"ext-init-error".to_owned()),
        "{shutdown:?}"
    );
    assert!(matches!(
        run.lines.as_slice(),
        [Line::Init(_), Line::Shutdown(_)]
    ));
}

#[tokio::test]
async fn init_error_from_the_runtime_fails_init() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-init-error"),
            "--extension",
            &fixture("ext-good"),
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let error = run.init().unwrap().error.clone().unwrap();
    assert_eq!(error.source, "function");
    assert_eq!(error.error_type, "Runtime.ImportModuleError");
    assert_eq!(error.message, "cannot import handler");
    assert_eq!(
        records.of_kind("fn-init-error", "init_error")[0]["status"],
        202
    );
    // The extension still gets its SHUTDOWN (reason "failure") and exits by itself.
    let events = records.of_kind("ext-good", "event");
    assert_eq!(events.last().unwrap()["event"]["shutdownReason"], "failure");
    let shutdown = run.shutdown().unwrap();
    assert_eq!(shutdown.exits.get("ext-good"), Some(&Some(0)));
    assert!(shutdown.killed.is_empty());
}

#[tokio::test]
async fn invocation_errors_are_reported_with_their_body() {
    let records = Records::new();
    let run = sim(
        &records,
        &["--function", &fixture("fn-error"), "--invocations", "2"],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let invokes = run.invokes();
    assert_eq!(invokes.len(), 2, "an error does not reset the environment");
    assert_eq!(run.inits().len(), 1);
    for invoke in invokes {
        assert_eq!(invoke.status, Status::Error);
        assert_eq!(
            invoke.response,
            Some(json!({"errorMessage": "oops", "errorType": "Handled.Oops", "stackTrace": []}))
        );
        let error = invoke.error.as_ref().unwrap();
        assert_eq!(
            (error.source.as_str(), error.error_type.as_str()),
            ("function", "Handled.Oops")
        );
        assert_eq!(error.message, "oops");
    }
    assert!(
        records
            .of_kind("fn-error", "posted")
            .iter()
            .all(|p| p["status"] == 202)
    );
}

#[tokio::test]
async fn timeout_resets_the_environment() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-sleep"),
            "--extension",
            &fixture("ext-good"),
            "--invocations",
            "2",
            "--timeout-ms",
            "500",
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let phases: Vec<&str> = run
        .lines
        .iter()
        .map(|l| match l {
            Line::Init(_) => "init",
            Line::Invoke(_) => "invoke",
            Line::Shutdown(_) => "shutdown",
        })
        .collect();
    assert_eq!(
        phases,
        ["init", "invoke", "shutdown", "init", "invoke", "shutdown"]
    );
    for invoke in run.invokes() {
        assert_eq!(invoke.status, Status::Timeout);
        assert!(invoke.ms >= 500.0, "{invoke:?}");
        assert_eq!(
            invoke.error.as_ref().unwrap().error_type,
            "Sandbox.Timedout"
        );
    }
    for shutdown in run.shutdowns() {
        assert_eq!(shutdown.reason, "timeout");
        assert_eq!(shutdown.exits.get("ext-good"), Some(&Some(0)));
    }
    // A fresh runtime process after the reset.
    let starts = records.of_kind("fn-sleep", "start");
    assert_eq!(starts.len(), 2);
    assert_ne!(starts[0]["pid"], starts[1]["pid"]);
    assert!(starts.iter().all(|s| gone(s["pid"].as_i64().unwrap())));
}

#[tokio::test]
async fn process_output_goes_to_stderr_or_log_files() {
    let records = Records::new();
    let args = [
        "--function",
        &fixture("fn-echo"),
        "--extension",
        &fixture("ext-good"),
    ];
    let run = sim(&records, &args).await;
    assert!(run.success(), "{}", run.stderr);
    assert_only_json_lines(&run);
    assert!(
        run.stderr.contains("ext-good: registered"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("fn-echo: started"), "{}", run.stderr);

    let logs = records.path().join("logs");
    let logs_arg = logs.display().to_string();
    let mut with_logs = args.to_vec();
    with_logs.extend(["--logs", &logs_arg]);
    let run = sim(&records, &with_logs).await;
    assert!(run.success(), "{}", run.stderr);
    assert_only_json_lines(&run);
    assert!(
        !run.stderr.contains("ext-good: registered"),
        "{}",
        run.stderr
    );
    let ext_log = std::fs::read_to_string(logs.join("ext-good.log")).unwrap();
    let function_log = std::fs::read_to_string(logs.join("function.log")).unwrap();
    assert!(ext_log.contains("ext-good: registered"), "{ext_log}");
    assert!(function_log.contains("fn-echo: started"), "{function_log}");
}

#[tokio::test]
async fn an_event_file_of_json_lines_gives_each_invocation_its_event_in_turn() {
    let records = Records::new();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "{\"action\": \"a\"}\n\n{\"action\": \"b\"}\n").unwrap();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--invocations",
            "3",
            "--event-file",
            events.to_str().unwrap(),
        ],
    )
    .await;
    assert!(run.success(), "{}", run.stderr);
    let seen: Vec<_> = run
        .invokes()
        .iter()
        .map(|i| i.response.as_ref().unwrap()["event"]["action"].clone())
        .collect();
    assert_eq!(seen, [json!("a"), json!("b"), json!("a")]);

    // A file that is one (multi-line) JSON value is one event for every invocation.
    std::fs::write(&events, "{\n  \"action\": \"whole\"\n}\n").unwrap();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--invocations",
            "2",
            "--event-file",
            events.to_str().unwrap(),
        ],
    )
    .await;
    assert!(run.success(), "{}", run.stderr);
    for invoke in run.invokes() {
        assert_eq!(
            invoke.response.as_ref().unwrap()["event"]["action"],
            "whole"
        );
    }
}
