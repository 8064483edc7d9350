//! `mongo-pool check`, the binary, against atlas-sim (and moto as the STS Atlas forwards to):
//! it passes through `mongodb://` and `mongodb+srv://` for a replica set and a sharded cluster
//! and prints the authenticated ARN; it fails clearly, non-zero, naming the step, for a wrong
//! CA, an unreachable host (within `connectTimeoutMS`), credentials STS rejects, and a
//! principal Atlas has no database user for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common {
    pub mod rig;
}

use std::time::Duration;

use common::rig::{KEY_ID, NO_STS, SECRET, SRV_NAME, USER_ARN, check, sim, sim_with_key, uri_with};
use mongo_pool_testkit::moto::{ACCOUNT, Moto};

/// The environment of a `check` run with the key atlas-sim knows.
fn env_with_key(uri: &str) -> Vec<(&str, &str)> {
    vec![
        ("MONGO_POOL_URI", uri),
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_STS", NO_STS),
    ]
}

fn assert_passed(run: &common::rig::CheckRun, what: &str) {
    assert!(run.success, "{what}: check failed:\n{}", run.output);
    assert!(
        run.output.contains("check passed"),
        "{what}: no summary line:\n{}",
        run.output
    );
}

fn assert_failed_at(run: &common::rig::CheckRun, step: &str, cause: &str) {
    assert!(!run.success, "check passed unexpectedly:\n{}", run.output);
    assert!(
        run.output.contains(&format!("check failed at step {step}")),
        "expected a failure at step {step}:\n{}",
        run.output
    );
    assert!(
        run.output.contains(cause),
        "expected the cause to mention {cause:?}:\n{}",
        run.output
    );
}

#[tokio::test]
async fn check_passes_for_a_replica_set_through_mongodb_and_mongodb_srv_and_prints_the_arn() {
    // Members that call themselves by IP address, for mongodb://.
    let plain = sim_with_key(&[]).await;
    let run = check(&env_with_key(&plain.start.uri)).await;
    assert_passed(&run, "mongodb://");
    assert!(run.output.contains(USER_ARN), "no ARN:\n{}", run.output);
    assert!(
        run.output.contains("replica set sim"),
        "no replica set:\n{}",
        run.output
    );

    // Members that call themselves by the names atlas-sim's DNS serves, for mongodb+srv://.
    let sim = sim_with_key(&["--srv", SRV_NAME, "--dns-port", "0"]).await;
    let dns = sim.start.dns.clone().expect("dns");

    // With a mistyped option: drivers ignore unknown options, and so does the check, but it
    // says which option was probably meant.
    let srv_uri = sim.start.srv_uri.clone().expect("srv uri");
    let separator = if srv_uri.contains('?') { '&' } else { '?' };
    let srv_uri = format!("{srv_uri}{separator}maxPoolSze=5");
    let mut env = env_with_key(&srv_uri);
    env.push(("MONGO_POOL_DNS_SERVER", &dns));
    let run = check(&env).await;
    assert_passed(&run, "mongodb+srv://");
    assert!(run.output.contains(USER_ARN), "no ARN:\n{}", run.output);
    assert!(
        run.output.contains("3 hosts") && run.output.contains(SRV_NAME),
        "no SRV step:\n{}",
        run.output
    );
    assert!(
        run.output
            .contains("does not know, ignored: maxPoolSze (did you mean maxPoolSize?)"),
        "no note on the mistyped option:\n{}",
        run.output
    );
}

#[tokio::test]
async fn check_passes_for_a_sharded_cluster_through_mongodb_and_mongodb_srv_and_prints_the_arn() {
    let sim = sim_with_key(&[
        "--topology",
        "sharded",
        "--members",
        "2",
        "--srv",
        SRV_NAME,
        "--dns-port",
        "0",
    ])
    .await;
    let dns = sim.start.dns.clone().expect("dns");

    let run = check(&env_with_key(&sim.start.uri)).await;
    assert_passed(&run, "mongodb://");
    assert!(run.output.contains(USER_ARN), "no ARN:\n{}", run.output);
    assert!(
        run.output.contains("mongos routers"),
        "not seen as sharded:\n{}",
        run.output
    );

    let srv_uri = sim.start.srv_uri.clone().expect("srv uri");
    let mut env = env_with_key(&srv_uri);
    env.push(("MONGO_POOL_DNS_SERVER", &dns));
    let run = check(&env).await;
    assert_passed(&run, "mongodb+srv://");
    assert!(run.output.contains(USER_ARN), "no ARN:\n{}", run.output);
    assert!(
        run.output.contains("mongos routers"),
        "not seen as sharded:\n{}",
        run.output
    );
}

#[tokio::test]
async fn check_fails_at_tls_when_tls_ca_file_is_another_ca() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = mongo_pool_testkit::certs::CertAuthority::create(other.path()).unwrap();
    let right_ca = sim.start.ca_file.clone().expect("ca file");
    let uri = sim.start.uri.replace(
        right_ca.to_str().unwrap(),
        other_ca.ca_file().to_str().unwrap(),
    );
    assert_ne!(uri, sim.start.uri, "the CA file is in the URI");

    let run = check(&env_with_key(&uri)).await;
    assert_failed_at(&run, "tls", "TLS handshake failed");
    assert!(
        run.output.to_ascii_lowercase().contains("certificate"),
        "the cause names the certificate:\n{}",
        run.output
    );
}

#[tokio::test]
async fn check_fails_at_tcp_for_a_closed_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let uri = format!(
        "mongodb://127.0.0.1:{port}/?tls=true&authMechanism=MONGODB-AWS&connectTimeoutMS=1000"
    );
    let run = check(&env_with_key(&uri)).await;
    assert_failed_at(&run, "tcp", "refused");
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

#[tokio::test]
async fn check_fails_within_connect_timeout_for_a_host_that_never_answers() {
    // The kernel completes the TCP handshake into the backlog; nothing ever reads or answers,
    // as with a blackholed or frozen server.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let uri = format!(
        "mongodb://127.0.0.1:{port}/?tls=true&authMechanism=MONGODB-AWS&connectTimeoutMS=1000"
    );
    let run = check(&env_with_key(&uri)).await;
    assert_failed_at(&run, "tls", "within 1s (connectTimeoutMS)");
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "gave up before connectTimeoutMS: {:?}",
        run.elapsed
    );
    // connectTimeoutMS plus process start-up, with room for a loaded machine.
    assert!(
        run.elapsed < Duration::from_secs(8),
        "took {:?}",
        run.elapsed
    );
    drop(silent);
}

#[tokio::test]
async fn check_says_sts_rejected_the_credentials_for_a_wrong_secret() {
    let moto = Moto::start().await.expect("moto starts");
    let user = moto.create_user("app").await.unwrap();
    let sim = sim(&["--members", "1", "--sts-url", &moto.url]).await;
    let wrong = format!("{}x", user.secret);
    let run = check(&[
        ("MONGO_POOL_URI", &sim.start.uri),
        ("AWS_ACCESS_KEY_ID", &user.key_id),
        ("AWS_SECRET_ACCESS_KEY", &wrong),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_STS", &moto.url),
        ("AWS_REGION", "us-east-1"),
    ])
    .await;
    assert_failed_at(&run, "auth", "STS rejected the credentials");
    assert!(
        run.output.contains("SignatureDoesNotMatch"),
        "the STS code is named:\n{}",
        run.output
    );
    assert!(
        !run.output.contains(&wrong) && !run.output.contains(&user.secret),
        "a secret was printed:\n{}",
        run.output
    );
}

#[tokio::test]
async fn check_names_the_caller_arn_and_the_user_atlas_needs_when_there_is_no_database_user() {
    let moto = Moto::start().await.expect("moto starts");
    let role = moto.create_role("app-role").await.unwrap();
    let assumed = moto.assume_role(&role, "lambda-session").await.unwrap();
    let token = assumed.token.clone().expect("session token");
    // Atlas has a database user, but not for this role.
    let other_user = format!("arn:aws:iam::{ACCOUNT}:role/another-role");
    let sim = sim(&[
        "--members",
        "1",
        "--sts-url",
        &moto.url,
        "--user",
        &other_user,
    ])
    .await;
    let env = [
        ("MONGO_POOL_URI", sim.start.uri.as_str()),
        ("AWS_ACCESS_KEY_ID", &assumed.key_id),
        ("AWS_SECRET_ACCESS_KEY", &assumed.secret),
        ("AWS_SESSION_TOKEN", &token),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_STS", &moto.url),
        ("AWS_REGION", "us-east-1"),
    ];
    let run = check(&env).await;
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/app-role/lambda-session");
    assert_eq!(assumed.arn, caller);
    assert_failed_at(&run, "auth", &format!("authenticating as ARN {caller}"));
    assert!(
        run.output
            .contains(&format!("Atlas needs a database user for ARN {role}")),
        "the role ARN Atlas needs is named:\n{}",
        run.output
    );
    assert!(
        !run.output.contains(&token) && !run.output.contains(&assumed.secret),
        "a secret was printed:\n{}",
        run.output
    );

    // With that user in place, the same credentials pass (moto verifies the signature).
    let with_user =
        common::rig::sim(&["--members", "1", "--sts-url", &moto.url, "--user", &role]).await;
    let mut env = env;
    env[0].1 = &with_user.start.uri;
    let run = check(&env).await;
    assert_passed(&run, "assumed role with a database user");
    assert!(
        run.output.contains(&format!("authenticated as {role}")),
        "{}",
        run.output
    );
}

#[tokio::test]
async fn check_with_a_uri_for_another_replica_set_fails_at_topology_not_silently() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let uri = uri_with(
        &sim.start.uri.replace("replicaSet=sim", "replicaSet=other"),
        "serverSelectionTimeoutMS=1500",
    );
    let run = check(&env_with_key(&uri)).await;
    assert_failed_at(&run, "topology", "another replica set");
}

/// `mongo-pool` (serve, sidecar) with `uri`: it must exit 2 at once, saying `expected`.
async fn serve_refuses(uri: &str, expected: &str) {
    serve_refuses_with(uri, &[], expected).await;
}

/// [`serve_refuses`] with `env` added; returns what it wrote.
async fn serve_refuses_with(uri: &str, env: &[(&str, &str)], expected: &str) -> String {
    let mut all = vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    all.extend_from_slice(env);
    let mut pool = mongo_pool_testkit::pool_process::MongoPool::spawn(uri, &all).unwrap();
    let exit = pool.wait_exit(Duration::from_secs(20)).await.unwrap();
    let logs = pool.logs();
    assert_eq!(exit.code(), Some(2), "{uri}: exit status {exit}:\n{logs}");
    assert!(logs.contains("invalid configuration"), "{uri}:\n{logs}");
    assert!(
        logs.contains(expected),
        "{uri}: expected {expected:?}:\n{logs}"
    );
    logs
}

/// `mongo-pool check` with `uri`: it must fail at start, saying `expected`.
async fn check_refuses(uri: &str, expected: &str) {
    let run = check(&env_with_key(uri)).await;
    assert!(!run.success, "{uri}: check passed:\n{}", run.output);
    assert!(
        run.output.contains("invalid configuration") && run.output.contains(expected),
        "{uri}: expected {expected:?}:\n{}",
        run.output
    );
}

#[tokio::test]
async fn a_tls_ca_file_that_is_not_a_small_regular_file_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let fifo = fifo.to_str().unwrap().to_owned();
    let big = big.to_str().unwrap().to_owned();
    let directory = dir.path().to_str().unwrap().to_owned();
    for (path, expected) in [
        ("/dev/zero", "is a character device, not a regular file"),
        ("/dev/urandom", "is a character device, not a regular file"),
        (fifo.as_str(), "is a FIFO (named pipe), not a regular file"),
        (directory.as_str(), "is a directory, not a regular file"),
        (big.as_str(), "is larger than 1048576 bytes (1 MiB)"),
    ] {
        // Nothing listens on port 1: the start must fail on the file, before any connection.
        let uri = format!(
            "mongodb://127.0.0.1:1/?tls=true&tlsCAFile={}",
            path.replace('/', "%2F")
        );
        let expected = format!("tlsCAFile {path} {expected}");
        check_refuses(&uri, &expected).await;
        serve_refuses(&uri, &expected).await;
    }
}

#[tokio::test]
async fn tls_off_to_a_host_that_is_not_loopback_stops_the_start_with_a_message() {
    for uri in [
        "mongodb://cluster0-shard-00-00.abcde.mongodb.net:27017/?authMechanism=MONGODB-AWS",
        "mongodb://10.1.2.3:27017/?tls=false",
        "mongodb://127.0.0.1:1,db.internal:27017/?replicaSet=rs0",
    ] {
        check_refuses(uri, "is not a loopback address").await;
        serve_refuses(uri, "Add tls=true").await;
    }
}

#[tokio::test]
async fn a_mongo_pool_log_that_is_not_the_syntax_stops_the_start_with_the_syntax() {
    for (filter, hint) in [
        ("warning", "did you mean warn?"),
        ("verbose", "did you mean trace?"),
        ("mongo-pool=debug", "did you mean mongo_pool?"),
    ] {
        let logs = serve_refuses_with(
            "mongodb://127.0.0.1:1/",
            &[("MONGO_POOL_LOG", filter)],
            hint,
        )
        .await;
        assert!(
            logs.contains(
                "expected a level (off, error, warn, info, debug, trace) or comma-separated \
                 target=level directives"
            ),
            "{filter}: the syntax is given:\n{logs}"
        );
    }
}

#[tokio::test]
async fn empty_variables_start_normally_and_lambdas_log_controls_apply() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let mut pool = mongo_pool_testkit::pool_process::MongoPool::start(
        &sim.start.uri,
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("MONGO_POOL_LOG", ""),
            ("MONGO_POOL_LOG_FORMAT", ""),
            ("MONGO_POOL_MAX_CLIENTS", ""),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ],
    )
    .await
    .unwrap();
    let health = mongo_pool_testkit::pool_process::health(pool.socket_path())
        .await
        .unwrap();
    let logs = stop_and_read(&mut pool).await;
    assert!(health.status.success(), "{}\n{logs}", health.output);
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log at all");
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line that is not JSON ({e}): {line}"));
        assert!(record["level"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"DEBUG\"")
            && l.contains("treated as unset")
            && l.contains("MONGO_POOL_LOG")),
        "AWS_LAMBDA_LOG_LEVEL=DEBUG applies and the empty variable is noted:\n{logs}"
    );
}

#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let mut pool = mongo_pool_testkit::pool_process::MongoPool::start(
        &sim.start.uri,
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("MONGO_POOL_LOG", "debug"),
        ],
    )
    .await
    .unwrap();
    let logs = stop_and_read(&mut pool).await;
    assert!(logs.contains("mongo-pool is serving"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape in a log file:\n{logs:?}"
    );
}

/// Stops `pool` with SIGTERM, waits for it to exit 0, and returns everything it wrote.
async fn stop_and_read(pool: &mut mongo_pool_testkit::pool_process::MongoPool) -> String {
    pool.signal(mongo_pool_testkit::process::Signal::SIGTERM)
        .unwrap();
    let exit = pool.wait_exit(Duration::from_secs(10)).await.unwrap();
    let logs = pool.logs();
    assert!(
        exit.success(),
        "mongo-pool exits 0 on SIGTERM ({exit}):\n{logs}"
    );
    logs
}
