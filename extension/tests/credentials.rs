//! MONGODB-AWS with credentials from each source of the standard chain, against atlas-sim:
//! environment (long-term keys, temporary keys with a session token, read again at each
//! authentication), EC2 IMDSv2 and the ECS container endpoint (loopback stubs), and web
//! identity (moto as STS). Endpoint credentials are fetched once for many connections and
//! fetched again after an authentication failure.
//!
//! Environment and IMDS run in-process over a lookup table. The ECS endpoint and web identity
//! run through the `mongo-pool check` binary with the variables set on the child process:
//! aws-config's ECS provider and its STS client for web identity read
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` / `AWS_CONTAINER_AUTHORIZATION_TOKEN` and
//! `AWS_ENDPOINT_URL_STS` from the process environment, not from mongo-pool's lookup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common {
    pub mod rig;
}

use std::time::{Duration, Instant};

use common::rig::{
    HttpStub, NO_STS, Rig, Table, USER_ARN, authenticated_user, check, credentials_json, env_table,
    ping, principals_file, sim, sim_with_key, uri_with,
};
use mongo_pool::pool::CheckoutError;
use mongo_pool::upstream::connect::ConnectError;
use mongo_pool_testkit::moto::{ACCOUNT, Moto};

const TEMP_KEY: &str = "ASIAMONGOPOOLTEMP01";
const TEMP_SECRET: &str = "temporary-secret";
const TEMP_TOKEN: &str = "session-token-for-the-test";

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// atlas-sim knowing [`KEY_ID`] and the temporary [`TEMP_KEY`] (whose caller is `caller`).
async fn sim_with_temporary_key(
    caller: &str,
    dir: &tempfile::TempDir,
) -> (mongo_pool_testkit::process::AtlasSim, String) {
    let file = principals_file(dir.path(), TEMP_KEY, TEMP_SECRET, TEMP_TOKEN, caller);
    let sim = sim(&[
        "--members",
        "1",
        "--principals-file",
        file.to_str().unwrap(),
    ])
    .await;
    let uri = sim.start.uri.clone();
    (sim, uri)
}

/// The environment without credentials: no key pair, no IMDS unless a test adds it.
fn no_credentials(uri: &str) -> Table {
    Table::new(&[
        ("MONGO_POOL_URI", uri),
        ("AWS_ENDPOINT_URL_STS", NO_STS),
        ("AWS_REGION", "us-east-1"),
    ])
}

#[tokio::test]
async fn environment_long_term_keys_authenticate() {
    let sim = sim_with_key(&["--members", "1"]).await;
    let rig = Rig::start(&env_table(&sim.start.uri)).await;
    let primary = rig.primary().await;
    let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
    ping(&mut conn).await.unwrap();
    assert_eq!(authenticated_user(&mut conn).await.unwrap(), USER_ARN);
}

#[tokio::test]
async fn environment_temporary_keys_authenticate_with_their_session_token() {
    let dir = tempfile::tempdir().unwrap();
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/lambda-role/my-function");
    let (_sim, uri) = sim_with_temporary_key(&caller, &dir).await;
    let table = no_credentials(&uri);
    table.set("AWS_ACCESS_KEY_ID", TEMP_KEY);
    table.set("AWS_SECRET_ACCESS_KEY", TEMP_SECRET);
    table.set("AWS_SESSION_TOKEN", TEMP_TOKEN);
    table.set("AWS_EC2_METADATA_DISABLED", "true");
    let rig = Rig::start(&table).await;
    let primary = rig.primary().await;
    let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
    ping(&mut conn).await.unwrap();
    assert_eq!(
        authenticated_user(&mut conn).await.unwrap(),
        format!("arn:aws:iam::{ACCOUNT}:role/lambda-role")
    );

    // The token is really checked: without it the same keys are refused.
    let table = no_credentials(&uri);
    table.set("AWS_ACCESS_KEY_ID", TEMP_KEY);
    table.set("AWS_SECRET_ACCESS_KEY", TEMP_SECRET);
    table.set("AWS_EC2_METADATA_DISABLED", "true");
    let rig = Rig::start(&table).await;
    let servers = rig.topology.servers();
    match servers[0].pool.check_out(in_secs(10)).await {
        Err(CheckoutError::Connect(e)) => assert!(e.is_auth(), "{e}"),
        other => panic!("expected an authentication failure, got {other:?}"),
    }
}

#[tokio::test]
async fn environment_credentials_are_read_again_at_each_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/rotated-role/my-function");
    let (_sim, uri) = sim_with_temporary_key(&caller, &dir).await;
    let table = env_table(&uri_with(&uri, "maxPoolSize=2"));
    let rig = Rig::start(&table).await;
    let primary = rig.primary().await;
    let mut first = primary.pool.check_out(in_secs(10)).await.unwrap();
    assert_eq!(authenticated_user(&mut first).await.unwrap(), USER_ARN);

    // Lambda rotates the execution role's keys in place; the next connection uses the new ones.
    table.set("AWS_ACCESS_KEY_ID", TEMP_KEY);
    table.set("AWS_SECRET_ACCESS_KEY", TEMP_SECRET);
    table.set("AWS_SESSION_TOKEN", TEMP_TOKEN);
    let mut second = primary.pool.check_out(in_secs(10)).await.unwrap();
    assert_eq!(
        authenticated_user(&mut second).await.unwrap(),
        format!("arn:aws:iam::{ACCOUNT}:role/rotated-role")
    );
    drop(first);
}

const IMDS_TOKEN: &str = "imds-session-token";
const IMDS_ROLE: &str = "ec2-role";
const IMDS_CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/ec2-role";

/// An IMDSv2 stub: PUT a token, then GET the role and its credentials with it.
async fn imds_stub() -> HttpStub {
    HttpStub::start(|request| {
        let authorized = request
            .headers
            .get("x-aws-ec2-metadata-token")
            .map(String::as_str)
            == Some(IMDS_TOKEN);
        match (request.method.as_str(), request.path.as_str()) {
            ("PUT", "/latest/api/token")
                if request
                    .headers
                    .contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
            {
                (
                    200,
                    vec![(
                        "x-aws-ec2-metadata-token-ttl-seconds".into(),
                        "21600".into(),
                    )],
                    IMDS_TOKEN.into(),
                )
            }
            ("GET", _) if !authorized => (401, vec![], String::new()),
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                (200, vec![], IMDS_ROLE.into())
            }
            ("GET", IMDS_CREDENTIALS) => (
                200,
                vec![],
                credentials_json(TEMP_KEY, TEMP_SECRET, TEMP_TOKEN),
            ),
            _ => (404, vec![], String::new()),
        }
    })
    .await
}

#[tokio::test]
async fn imdsv2_credentials_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{IMDS_ROLE}/i-0123456789");
    let (_sim, uri) = sim_with_temporary_key(&caller, &dir).await;
    let imds = imds_stub().await;
    let table = no_credentials(&uri);
    table.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url());
    let rig = Rig::start(&table).await;
    let primary = rig.primary().await;
    let mut conn = primary.pool.check_out(in_secs(10)).await.unwrap();
    ping(&mut conn).await.unwrap();
    assert_eq!(
        authenticated_user(&mut conn).await.unwrap(),
        format!("arn:aws:iam::{ACCOUNT}:role/{IMDS_ROLE}")
    );
    assert!(imds.count("PUT", "/latest/api/token") >= 1, "IMDSv2 token");
    assert!(imds.count("GET", IMDS_CREDENTIALS) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_credentials_are_fetched_once_for_many_connections_and_again_after_an_auth_failure()
 {
    let dir = tempfile::tempdir().unwrap();
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{IMDS_ROLE}/i-0123456789");
    let (sim, uri) = sim_with_temporary_key(&caller, &dir).await;
    let imds = imds_stub().await;
    let table = no_credentials(&uri_with(&uri, "maxPoolSize=4&heartbeatFrequencyMS=600000"));
    table.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url());
    let rig = Rig::start(&table).await;
    let primary = rig.primary().await;

    // Four connections at once: four authentications, one credentials fetch.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(primary.pool.check_out(in_secs(10)).await.unwrap());
    }
    assert_eq!(primary.pool.sizes().1, 4);
    drop(held);
    let before = rig.metrics.snapshot();
    assert!(before.auth_succeeded >= 4, "{before:?}");
    assert_eq!(imds.count("GET", IMDS_CREDENTIALS), 1, "fetched once");

    // The next authentication fails (atlas-sim says code 18): the cache is dropped, and the
    // next attempt, after the backoff, fetches the credentials again.
    sim.post("/sts/throttle?times=1", None).await.unwrap();
    primary.pool.clear();
    match primary.pool.check_out(in_secs(10)).await {
        Err(CheckoutError::Connect(ConnectError::Auth { .. })) => {}
        other => panic!("expected the throttled authentication to fail, got {other:?}"),
    }
    assert_eq!(imds.count("GET", IMDS_CREDENTIALS), 1, "not fetched yet");
    let deadline = in_secs(15);
    let mut conn = loop {
        match primary.pool.check_out(in_secs(10)).await {
            Ok(conn) => break conn,
            Err(CheckoutError::Connect(ConnectError::Backoff { .. }))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("check-out after the backoff: {e}"),
        }
    };
    ping(&mut conn).await.unwrap();
    assert_eq!(
        imds.count("GET", IMDS_CREDENTIALS),
        2,
        "fetched again after the failure"
    );
}

#[tokio::test]
async fn ecs_container_endpoint_credentials_authenticate() {
    const PATH: &str = "/v2/credentials/task-1234";
    const AUTHORIZATION: &str = "container-authorization-token";
    let dir = tempfile::tempdir().unwrap();
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/ecs-task-role/task-1234");
    let (_sim, uri) = sim_with_temporary_key(&caller, &dir).await;
    let ecs = HttpStub::start(|request| {
        let authorized =
            request.headers.get("authorization").map(String::as_str) == Some(AUTHORIZATION);
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", PATH) if authorized => (
                200,
                vec![("content-type".into(), "application/json".into())],
                credentials_json(TEMP_KEY, TEMP_SECRET, TEMP_TOKEN),
            ),
            ("GET", PATH) => (401, vec![], String::new()),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let full_uri = format!("{}{PATH}", ecs.url());
    let run = check(&[
        ("MONGO_POOL_URI", &uri),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTHORIZATION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_STS", NO_STS),
        ("AWS_REGION", "us-east-1"),
    ])
    .await;
    assert!(run.success, "check failed:\n{}", run.output);
    assert!(run.output.contains("Container"), "{}", run.output);
    assert!(
        run.output.contains(&format!(
            "authenticated as arn:aws:iam::{ACCOUNT}:role/ecs-task-role"
        )),
        "{}",
        run.output
    );
    assert!(ecs.count("GET", PATH) >= 1);
}

#[tokio::test]
async fn web_identity_credentials_from_sts_authenticate() {
    let moto = Moto::start().await.expect("moto starts");
    let role = moto.create_role("irsa-role").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl",
    )
    .unwrap();
    let sim = sim(&["--members", "1", "--sts-url", &moto.url, "--user", &role]).await;
    // AssumeRoleWithWebIdentity is unsigned (the token is the proof); moto would authenticate
    // it, so let exactly that one call through. GetCallerIdentity, which atlas-sim forwards,
    // is verified.
    moto.allow_unsigned(1).await.unwrap();
    let run = check(&[
        ("MONGO_POOL_URI", &sim.start.uri),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", &role),
        ("AWS_ENDPOINT_URL_STS", &moto.url),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ])
    .await;
    assert!(run.success, "check failed:\n{}", run.output);
    assert!(run.output.contains("WebIdentity"), "{}", run.output);
    assert!(
        run.output.contains(&format!("authenticated as {role}")),
        "{}",
        run.output
    );
    let status = sim.status().await.unwrap();
    assert_eq!(status["auth"]["failed"].as_u64(), Some(0), "{status}");
}
