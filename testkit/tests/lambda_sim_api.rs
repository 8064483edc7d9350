//! lambda-sim's APIs as processes see them: the Extensions API's registration rules and error
//! bodies, the Runtime API's event headers, INVOKE events that match them, and the environment
//! given to the function and to extensions. Each test runs the real binary with Python
//! fixture processes (`tests/fixtures/lambda/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "lambda_support/fixtures.rs"]
mod fixtures;

use fixtures::{Records, assert_only_json_lines, fixture, sim};
use mongo_pool_testkit::lambda_sim::{ACCOUNT_ID, Status};
use serde_json::{Value, json};

fn probe<'a>(probes: &'a [Value], name: &str) -> &'a Value {
    probes
        .iter()
        .find(|p| p["probe"] == name)
        .unwrap_or_else(|| panic!("no probe {name} in {probes:?}"))
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn registration_rules_follow_lambda() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--extension",
            &fixture("ext-rules"),
            "--event",
            r#"{"probe": true}"#,
        ],
    )
    .await;
    assert!(run.success(), "{}", run.stderr);
    let probes = records.of_kind("ext-rules", "probe");
    let refused = |name: &str, status: u64, error_type: &str| {
        let p = probe(&probes, name);
        assert_eq!(p["status"], status, "{name}: {p}");
        assert_eq!(p["body"]["errorType"], error_type, "{name}: {p}");
        assert!(p["body"]["errorMessage"].is_string(), "{name}: {p}");
    };
    // An internal extension (its name is not its file's) may not subscribe to SHUTDOWN.
    refused("internal_shutdown", 403, "Extension.InvalidEventType");
    refused("unknown_event", 403, "Extension.InvalidEventType");
    refused("no_name", 403, "Extension.InvalidExtensionName");
    refused("bad_body", 403, "InvalidRequestFormat");
    refused(
        "next_without_id",
        403,
        "Extension.MissingExtensionIdentifier",
    );
    refused("next_bad_id", 403, "Extension.InvalidExtensionIdentifier");
    refused(
        "next_unknown_id",
        403,
        "Extension.UnknownExtensionIdentifier",
    );
    refused("register_again", 403, "Extension.InvalidExtensionState");
    refused("init_error_without_type", 403, "Extension.MissingHeader");
    let registered = probe(&probes, "register");
    assert_eq!(registered["status"], 200, "{registered}");
    assert!(is_uuid(registered["id"].as_str().unwrap()), "{registered}");
    let body = &registered["body"];
    assert_eq!(body["functionName"], "lambda-sim-function");
    assert_eq!(body["functionVersion"], "$LATEST");
    assert_eq!(body["handler"], "bootstrap");
    // Without `Lambda-Extension-Accept-Feature: accountId` Lambda leaves the account out.
    assert!(body.get("accountId").is_none(), "{body}");
    // Once Init is over: no registration, no init error; a stale request id is refused.
    let response = run.invokes()[0].response.clone().unwrap();
    assert_eq!(response["late_register"]["status"], 403);
    assert_eq!(
        response["late_register"]["body"]["errorType"],
        "Extension.RegistrationClosed"
    );
    assert_eq!(response["wrong_id"]["status"], 400);
    assert_eq!(
        response["wrong_id"]["body"]["errorType"],
        "InvalidRequestID"
    );
    assert_eq!(response["late_init_error"]["status"], 403);
    assert_eq!(run.shutdown().unwrap().exits["ext-rules"], Some(0));
}

#[tokio::test]
async fn usage_errors_are_refused_before_anything_starts() {
    let records = Records::new();
    let ext = fixture("ext-good");
    let function = fixture("fn-echo");
    let mut eleven = vec!["--function", function.as_str()];
    for _ in 0..11 {
        eleven.extend(["--extension", ext.as_str()]);
    }
    let run = sim(&records, &eleven).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("at most 10"), "{}", run.stderr);

    let twice = [
        "--function",
        &function,
        "--extension",
        &ext,
        "--extension",
        &ext,
    ];
    let run = sim(&records, &twice).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr.contains("two extensions are named ext-good"),
        "{}",
        run.stderr
    );

    let owned = [
        "--function",
        &function,
        "--env",
        "AWS_LAMBDA_RUNTIME_API=1.2.3.4:5",
    ];
    let run = sim(&records, &owned).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr.contains("AWS_LAMBDA_RUNTIME_API"),
        "{}",
        run.stderr
    );

    let bad_event = ["--function", &function, "--event", "{not json"];
    let run = sim(&records, &bad_event).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("not JSON"), "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, "{\"a\": 1}\n{\"b\": oops}\n").unwrap();
    let bad_line = [
        "--function",
        &function,
        "--event-file",
        file.to_str().unwrap(),
    ];
    let run = sim(&records, &bad_line).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    assert!(records.entries("ext-good").is_empty(), "nothing may start");
}

#[tokio::test]
async fn events_carry_every_header_and_invoke_matches_the_runtime_event() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--extension",
            &fixture("ext-good"),
            "--invocations",
            "2",
            "--timeout-ms",
            "2500",
            "--event",
            r#"{"hello": "world"}"#,
            "--env",
            "AWS_REGION=eu-west-1",
            "--env",
            "AWS_LAMBDA_FUNCTION_NAME=my-fn",
        ],
    )
    .await;
    assert!(run.success(), "{}", run.stderr);
    assert_only_json_lines(&run);
    let arn = format!("arn:aws:lambda:eu-west-1:{ACCOUNT_ID}:function:my-fn");
    let parts: Vec<&str> = arn.split(':').collect();
    assert!(parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit()));

    let invokes = run.invokes();
    assert_eq!(invokes.len(), 2);
    let ext_events = records.of_kind("ext-good", "event");
    assert_eq!(ext_events.len(), 3, "{ext_events:?}");
    for (i, invoke) in invokes.iter().enumerate() {
        assert_eq!(invoke.n as usize, i + 1);
        assert_eq!(invoke.status, Status::Ok);
        assert!(invoke.post_runtime_ms.unwrap() >= 0.0);
        let response = invoke.response.as_ref().unwrap();
        assert_eq!(response["event"], json!({"hello": "world"}));
        assert_eq!(response["n"], i + 1, "one runtime process serves both");
        assert_eq!(response["content_type"], "application/json");
        let headers = response["headers"].as_object().unwrap();
        let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
        names.sort_unstable();
        // Client context and Cognito identity only exist for mobile SDK calls: left out.
        assert_eq!(
            names,
            [
                "lambda-runtime-aws-request-id",
                "lambda-runtime-deadline-ms",
                "lambda-runtime-invoked-function-arn",
                "lambda-runtime-trace-id"
            ]
        );
        let request_id = headers["lambda-runtime-aws-request-id"].as_str().unwrap();
        assert_eq!(request_id, invoke.request_id);
        assert!(is_uuid(request_id));
        assert_eq!(headers["lambda-runtime-invoked-function-arn"], arn.as_str());
        let deadline: f64 = headers["lambda-runtime-deadline-ms"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let received = response["received_ms"].as_f64().unwrap();
        let left = deadline - received;
        assert!(
            left > 0.0 && left <= 2500.0 + 50.0,
            "deadline {left} ms ahead"
        );
        let trace = headers["lambda-runtime-trace-id"].as_str().unwrap();
        assert!(
            trace.starts_with("Root=1-")
                && trace.contains(";Parent=")
                && trace.ends_with(";Sampled=0"),
            "{trace}"
        );
        // The extension's INVOKE describes the same invocation.
        let event = &ext_events[i]["event"];
        assert_eq!(event["eventType"], "INVOKE");
        assert_eq!(event["requestId"], request_id);
        assert_eq!(event["invokedFunctionArn"], arn.as_str());
        assert_eq!(event["deadlineMs"].as_f64().unwrap(), deadline);
        assert_eq!(
            event["tracing"],
            json!({"type": "X-Amzn-Trace-Id", "value": trace})
        );
        assert!(is_uuid(ext_events[i]["event_id"].as_str().unwrap()));
    }
    assert_ne!(invokes[0].request_id, invokes[1].request_id);
    let shutdown_event = &ext_events[2]["event"];
    assert_eq!(shutdown_event["eventType"], "SHUTDOWN");
    assert_eq!(shutdown_event["shutdownReason"], "spindown");

    let register = &records.of_kind("ext-good", "register")[0];
    assert_eq!(register["status"], 200);
    assert_eq!(
        register["body"],
        json!({"functionName": "my-fn", "functionVersion": "$LATEST",
               "handler": "bootstrap", "accountId": ACCOUNT_ID})
    );
    let init = run.init().unwrap();
    assert_eq!(init.status, Status::Ok);
    assert!(init.error.is_none());
    let shutdown = run.shutdown().unwrap();
    assert_eq!(shutdown.reason, "spindown");
    assert_eq!(shutdown.exits.get("ext-good"), Some(&Some(0)));
    assert!(shutdown.killed.is_empty());
    assert_eq!(shutdown.function.signal.as_deref(), Some("SIGTERM"));
}

#[tokio::test]
async fn function_and_extensions_get_lambdas_environment() {
    let records = Records::new();
    let run = sim(
        &records,
        &[
            "--function",
            &fixture("fn-echo"),
            "--extension",
            &fixture("ext-good"),
            "--env",
            "FOO=bar",
            "--env",
            "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
            "--memory-mb",
            "512",
        ],
    )
    .await;
    assert!(run.success(), "{}", run.stderr);
    let function_env = run.invokes()[0].response.as_ref().unwrap()["env"].clone();
    let extension_env = records.of_kind("ext-good", "env")[0]["env"].clone();
    for env in [&function_env, &extension_env] {
        assert_eq!(env["FOO"], "bar", "--env reaches every process");
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIDEXAMPLE");
        assert_eq!(env["AWS_REGION"], "us-east-1");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "lambda-sim-function");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "512");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(env["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
        assert_eq!(
            env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "/aws/lambda/lambda-sim-function"
        );
        assert!(
            env["AWS_LAMBDA_LOG_STREAM_NAME"]
                .as_str()
                .unwrap()
                .contains("[$LATEST]")
        );
        assert_eq!(env["TZ"], ":UTC");
        assert!(env["PATH"].is_string());
        let api = env["AWS_LAMBDA_RUNTIME_API"].as_str().unwrap();
        let (host, port) = api.split_once(':').unwrap();
        assert_eq!(host, "127.0.0.1");
        assert!(port.parse::<u16>().unwrap() > 0);
        // Nothing leaks from the host's environment (cargo sets these for tests).
        assert!(env.get("CARGO_MANIFEST_DIR").is_none() && env.get("HOME").is_none());
        assert!(env.get("FIXTURE_OUT").is_some(), "given with --env");
    }
    assert_eq!(
        function_env["AWS_LAMBDA_RUNTIME_API"],
        extension_env["AWS_LAMBDA_RUNTIME_API"]
    );
    assert_eq!(function_env["_HANDLER"], "bootstrap");
    assert!(
        function_env["LAMBDA_TASK_ROOT"]
            .as_str()
            .unwrap()
            .ends_with("fixtures/lambda")
    );
    assert!(
        function_env["AWS_EXECUTION_ENV"]
            .as_str()
            .unwrap()
            .starts_with("AWS_Lambda_")
    );
    for function_only in [
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_EXECUTION_ENV",
        "LAMBDA_RUNTIME_DIR",
    ] {
        assert!(
            extension_env.get(function_only).is_none(),
            "{function_only} is for the function only"
        );
    }
}
