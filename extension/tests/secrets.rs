//! No credential in any output at `MONGO_POOL_LOG=trace`, for every source of the AWS
//! credentials chain and in both log formats.
//!
//! For each source (environment; the ECS container endpoint with an authorization token; EC2
//! IMDSv2; web identity with `AssumeRoleWithWebIdentity`), the real `mongo-pool` binary runs as
//! a sidecar in front of atlas-sim (TLS, MONGODB-AWS), with the endpoint played by a loopback
//! HTTP stub. A driver runs `ping` and `connectionStatus` through the socket, so the
//! credentials are really fetched and used, then mongo-pool is stopped and everything it wrote
//! on stdout and stderr is searched for the secret key, the session token, the endpoint's
//! token (authorization token, IMDSv2 session token, web identity token) and SigV4 signatures.
//!
//! At TRACE the AWS SDK prints every HTTP response it reads, credentials included; these tests
//! fail if mongo-pool's cap on those targets (`config::logging`) is removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common {
    pub mod rig;
}

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bson::doc;
use common::rig::{HttpStub, NO_STS, credentials_json, principals_file, sim};
use mongo_pool_testkit::moto::ACCOUNT;
use mongo_pool_testkit::pool_process::{socket_dir, socket_uri};
use mongo_pool_testkit::process::{AtlasSim, Signal, binary, signal_child};

/// Temporary credentials every endpoint hands out; plain characters, so that any escaping a
/// log format applies (JSON, `Debug`) leaves them whole and findable.
const KEY_ID: &str = "ASIASECRETSTESTKEY01";
const SECRET: &str = "secretsTestSecretAccessKey0123456789abcd";
const TOKEN: &str = "secretsTestSessionToken-IQoJb3JpZ2luX2VjEJr-0123456789";
/// The ECS endpoint's `Authorization` token.
const AUTHORIZATION: &str = "secretsTestContainerAuthorizationToken42";
/// The IMDSv2 session token.
const IMDS_TOKEN: &str = "secretsTestImdsSessionToken-AQAEAFakeTokenValue";
/// The web identity token (a JWT's shape).
const WEB_IDENTITY_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXRzLXRlc3QifQ.secretsTestWebIdentitySignature";

const ROLE: &str = "secrets-role";
const ECS_PATH: &str = "/v2/credentials/task-secrets";
const IMDS_CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/secrets-role";

/// atlas-sim knowing [`KEY_ID`]/[`SECRET`]/[`TOKEN`] as an assumed role of [`ROLE`].
async fn atlas(dir: &Path) -> AtlasSim {
    let caller = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/secrets-test");
    let file = principals_file(dir, KEY_ID, SECRET, TOKEN, &caller);
    sim(&[
        "--members",
        "1",
        "--principals-file",
        file.to_str().unwrap(),
    ])
    .await
}

/// What one run of mongo-pool wrote, and the user the upstream authenticated.
struct Run {
    output: String,
    user: String,
}

/// Starts `mongo-pool` (sidecar, trace logs in `format`) with only `env` besides its own
/// settings, runs `ping` and `connectionStatus` through its socket, stops it with SIGTERM and
/// returns its stdout and stderr.
async fn run_mongo_pool(uri: &str, format: &str, env: &[(&str, &str)]) -> Run {
    let dir = socket_dir().unwrap();
    let socket = dir.path().join("mongo-pool.sock");
    let stdout = dir.path().join("stdout.log");
    let stderr = dir.path().join("stderr.log");
    let mut command = tokio::process::Command::new(binary("mongo-pool").unwrap());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("MONGO_POOL_URI", uri)
        .env("MONGO_POOL_SOCKET", &socket)
        .env("MONGO_POOL_MODE", "sidecar")
        .env("MONGO_POOL_LOG", "trace")
        .env("MONGO_POOL_LOG_FORMAT", format)
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let read = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mongo-pool exited ({status}):\n{}", read(&stderr));
        }
        assert!(
            Instant::now() < deadline,
            "mongo-pool's socket did not accept within 30 s:\n{}",
            read(&stderr)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let commands = async {
        let client = mongodb::Client::with_uri_str(format!("{}/", socket_uri(&socket))).await?;
        let admin = client.database("admin");
        admin.run_command(doc! { "ping": 1 }).await?;
        let status = admin.run_command(doc! { "connectionStatus": 1 }).await?;
        let user = status
            .get_document("authInfo")
            .and_then(|a| a.get_array("authenticatedUsers"))
            .ok()
            .and_then(|users| users.first()?.as_document()?.get_str("user").ok())
            .unwrap_or_default()
            .to_owned();
        Ok::<_, mongodb::error::Error>(user)
    };
    let user = tokio::time::timeout(Duration::from_secs(30), commands)
        .await
        .expect("the commands finish within 30 s")
        .unwrap_or_else(|e| {
            panic!(
                "the commands through mongo-pool failed: {e}\n{}",
                read(&stderr)
            )
        });

    signal_child(&child, Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("mongo-pool exits within 10 s of SIGTERM")
        .unwrap();
    let output = format!("{}{}", read(&stdout), read(&stderr));
    assert!(
        exit.success(),
        "mongo-pool exits 0 on SIGTERM ({exit}):\n{output}"
    );
    Run { output, user }
}

/// Asserts that `run` logged at trace level in `format`, authenticated as [`ROLE`], and holds
/// none of `secrets`, no `Signature=` and no run of 64 hex digits (a SigV4 signature or
/// signing key).
fn assert_clean(case: &str, format: &str, run: &Run, secrets: &[&str]) {
    let output = &run.output;
    let (trace_marker, debug_marker) = if format == "json" {
        ("\"level\":\"TRACE\"", "\"level\":\"DEBUG\"")
    } else {
        ("TRACE", "DEBUG")
    };
    assert!(
        output.contains(trace_marker),
        "{case} ({format}): mongo-pool logged nothing at trace level:\n{output}"
    );
    // rustls (and, for an endpoint source, the AWS SDK) are heard, capped but not silenced:
    // the search below covers what they print.
    let heard: &[&str] = if case == "environment" {
        &["rustls::"]
    } else {
        &["rustls::", "aws_"]
    };
    for target in heard {
        assert!(
            output
                .lines()
                .any(|l| l.contains(target) && l.contains(debug_marker)),
            "{case} ({format}): nothing from {target} at debug level:\n{output}"
        );
    }
    if format == "json" {
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{case}: a line that is not JSON: {line}"
            );
        }
    }
    assert_eq!(
        run.user,
        format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}"),
        "{case} ({format}): authenticated with the endpoint's credentials"
    );
    for secret in secrets.iter().chain(&[SECRET, TOKEN]) {
        if let Some(at) = output.find(secret) {
            panic!(
                "{case} ({format}): a secret is in mongo-pool's output: ...{}...",
                around(output, at)
            );
        }
    }
    if let Some(at) = output.find("Signature=") {
        panic!(
            "{case} ({format}): a SigV4 signature: ...{}...",
            around(output, at)
        );
    }
    if let Some(at) = hex_run(output, 64) {
        panic!(
            "{case} ({format}): 64 hex digits (a signature?): ...{}...",
            around(output, at)
        );
    }
}

fn around(text: &str, at: usize) -> String {
    let mut start = at.saturating_sub(200);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 200).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text[start..end].to_owned()
}

/// Where the first run of `len` ASCII hex digits starts.
fn hex_run(text: &str, len: usize) -> Option<usize> {
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        if b.is_ascii_hexdigit() {
            run += 1;
            if run == len {
                return Some(i + 1 - len);
            }
        } else {
            run = 0;
        }
    }
    None
}

const FORMATS: [&str; 2] = ["text", "json"];

#[tokio::test]
async fn environment_credentials_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = atlas(dir.path()).await;
    for format in FORMATS {
        let run = run_mongo_pool(
            &sim.start.uri,
            format,
            &[
                ("AWS_ACCESS_KEY_ID", KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
                ("AWS_SESSION_TOKEN", TOKEN),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_ENDPOINT_URL_STS", NO_STS),
            ],
        )
        .await;
        assert_clean("environment", format, &run, &[]);
    }
}

#[tokio::test]
async fn ecs_endpoint_credentials_and_authorization_token_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = atlas(dir.path()).await;
    let ecs = HttpStub::start(|request| {
        let authorized =
            request.headers.get("authorization").map(String::as_str) == Some(AUTHORIZATION);
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", ECS_PATH) if authorized => (
                200,
                vec![("content-type".into(), "application/json".into())],
                credentials_json(KEY_ID, SECRET, TOKEN),
            ),
            ("GET", ECS_PATH) => (401, vec![], String::new()),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let full_uri = format!("{}{ECS_PATH}", ecs.url());
    for format in FORMATS {
        let before = ecs.count("GET", ECS_PATH);
        let run = run_mongo_pool(
            &sim.start.uri,
            format,
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTHORIZATION),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_ENDPOINT_URL_STS", NO_STS),
            ],
        )
        .await;
        assert!(
            ecs.count("GET", ECS_PATH) > before,
            "the endpoint was asked"
        );
        assert_clean("ECS endpoint", format, &run, &[AUTHORIZATION]);
    }
}

#[tokio::test]
async fn imdsv2_credentials_and_session_token_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = atlas(dir.path()).await;
    let imds = HttpStub::start(|request| {
        let authorized = request
            .headers
            .get("x-aws-ec2-metadata-token")
            .map(String::as_str)
            == Some(IMDS_TOKEN);
        match (request.method.as_str(), request.path.as_str()) {
            ("PUT", "/latest/api/token") => (
                200,
                vec![(
                    "x-aws-ec2-metadata-token-ttl-seconds".into(),
                    "21600".into(),
                )],
                IMDS_TOKEN.into(),
            ),
            ("GET", _) if !authorized => (401, vec![], String::new()),
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, vec![], ROLE.into()),
            ("GET", IMDS_CREDENTIALS) => (200, vec![], credentials_json(KEY_ID, SECRET, TOKEN)),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    for format in FORMATS {
        let before = imds.count("GET", IMDS_CREDENTIALS);
        let run = run_mongo_pool(
            &sim.start.uri,
            format,
            &[
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url()),
                ("AWS_ENDPOINT_URL_STS", NO_STS),
            ],
        )
        .await;
        assert!(imds.count("PUT", "/latest/api/token") >= 1, "IMDSv2 token");
        assert!(
            imds.count("GET", IMDS_CREDENTIALS) > before,
            "IMDS was asked"
        );
        assert_clean("IMDSv2", format, &run, &[IMDS_TOKEN]);
    }
}

#[tokio::test]
async fn web_identity_token_and_sts_credentials_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = atlas(dir.path()).await;
    let token_file = dir.path().join("web-identity-token");
    std::fs::write(&token_file, WEB_IDENTITY_TOKEN).unwrap();
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}");
    // A loopback STS answering AssumeRoleWithWebIdentity as AWS does.
    let expiration: serde_json::Value =
        serde_json::from_str(&credentials_json(KEY_ID, SECRET, TOKEN)).unwrap();
    let expiration = expiration["Expiration"].as_str().unwrap().to_owned();
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult>\
         <Credentials><AccessKeyId>{KEY_ID}</AccessKeyId>\
         <SecretAccessKey>{SECRET}</SecretAccessKey>\
         <SessionToken>{TOKEN}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <SubjectFromWebIdentityToken>secrets-test</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><AssumedRoleId>AROASECRETSTEST:mongo-pool</AssumedRoleId>\
         <Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/mongo-pool</Arn></AssumedRoleUser>\
         <Audience>sts.amazonaws.com</Audience>\
         </AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>7a62e5ad-secrets-test</RequestId></ResponseMetadata>\
         </AssumeRoleWithWebIdentityResponse>"
    );
    let sts = HttpStub::start(move |request| match request.method.as_str() {
        "POST" => (
            200,
            vec![("content-type".into(), "text/xml".into())],
            body.clone(),
        ),
        _ => (404, vec![], String::new()),
    })
    .await;
    for format in FORMATS {
        let before = sts.count("POST", "/");
        let run = run_mongo_pool(
            &sim.start.uri,
            format,
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
                ("AWS_ROLE_ARN", &role_arn),
                ("AWS_ENDPOINT_URL_STS", &sts.url()),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .await;
        assert!(sts.count("POST", "/") > before, "STS was asked");
        assert_clean("web identity", format, &run, &[WEB_IDENTITY_TOKEN]);
    }
}
