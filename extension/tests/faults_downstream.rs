//! Faults on mongo-pool's own side, with real processes and trace logs checked for secrets:
//! a flood of bad downstream input (11: each bad connection closed and logged, the others
//! unaffected, memory flat), SHUTDOWN while a request is in flight under lambda-sim (9), wrong
//! credentials and an unknown database user against a moto-verified atlas-sim (7), and TLS
//! that cannot be turned off (a certificate for another host fails clearly; the URI options
//! that would disable verification are refused at start).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faults_support {
    pub mod harness;
}
mod common {
    pub mod bad_frames;
    pub mod rig;
}

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, doc};
use common::bad_frames::{claims_two_gib, compressed_with_bogus_size, unknown_op_code};
use faults_support::harness::{
    Fault, all_closed, assert_no_secret, assert_no_secret_strings, assert_no_secret_values,
    stop_and_read, tail, total, uri_with, without_reply_dumps, without_rustls_records,
};
use mongo_pool_testkit::lambda_sim::{self, Status};
use mongo_pool_testkit::moto::Moto;
use mongo_pool_testkit::pool_process::{MongoPool, socket_dir};
use mongo_pool_testkit::process::wait_for;
use mongo_pool_testkit::process::{AtlasSim, binary};
use mongo_pool_wire::OpMsgBuilder;
use mongodb::Collection;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const LIMIT: Duration = Duration::from_secs(120);

async fn bounded<F: std::future::Future<Output = ()>>(scenario: F) {
    tokio::time::timeout(LIMIT, scenario)
        .await
        .expect("the scenario finishes in time");
}

// ---- 11. Bad downstream input: closed, logged, others unaffected, memory flat ------------------

/// 1 MiB of pseudo-random bytes (xorshift, seeded per connection).
fn garbage(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn half_a_hello() -> Vec<u8> {
    let body = bson::rawdoc! { "hello": 1, "$db": "admin" };
    let frame = OpMsgBuilder::new(&body).request_id(9).build().unwrap();
    let bytes = frame.as_bytes();
    bytes[..bytes.len() / 2].to_vec()
}

/// Sends `bytes` (ignoring write errors: mongo-pool may close before it has read them all)
/// and expects the connection closed within 10 s, with no reply.
async fn expect_closed(socket: PathBuf, case: &'static str, bytes: Vec<u8>) {
    let mut stream = UnixStream::connect(&socket).await.unwrap();
    let _ = stream.write_all(&bytes).await;
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{case}: the connection is still open after 10 s"));
    match read {
        Ok(0) => {}
        // Closed with unread input: the peer sees a reset.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{case}: expected the connection closed, got {n} bytes"),
        Err(e) => panic!("{case}: expected the connection closed, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_downstream_input_closes_each_bad_connection_and_memory_stays_flat() {
    bounded(async {
        let mut fault = Fault::start(&["--members", "1"], "", &[]).await;
        let client = fault.client("maxPoolSize=1").await;
        let coll: Collection<Document> = client.database("app").collection("alive");
        coll.insert_one(doc! { "_id": 0 }).await.unwrap();
        let rss_before = fault.rss_kib();

        // Two rounds, so growth that the first round's warm-up would hide shows in the second.
        let per_kind = 40;
        let mut bad = 0;
        let mut rss_rounds = Vec::new();
        for round in 0..2u64 {
            let mut tasks = Vec::new();
            for i in 0..per_kind {
                let socket = fault.pool.socket_path().to_owned();
                let seed = round * 1000 + i;
                tasks.push(tokio::spawn(expect_closed(
                    socket.clone(),
                    "a claimed 2 GiB message",
                    claims_two_gib(),
                )));
                tasks.push(tokio::spawn(expect_closed(
                    socket.clone(),
                    "1 MiB of garbage",
                    garbage(seed),
                )));
                tasks.push(tokio::spawn(expect_closed(
                    socket.clone(),
                    "an unknown op code",
                    unknown_op_code(),
                )));
                tasks.push(tokio::spawn(expect_closed(
                    socket.clone(),
                    "OP_COMPRESSED with a bogus size",
                    compressed_with_bogus_size(),
                )));
                if i < 10 {
                    // Closed after PARTIAL_MESSAGE_LIMIT (5 s), all at once.
                    tasks.push(tokio::spawn(expect_closed(
                        socket,
                        "half a frame, then silence",
                        half_a_hello(),
                    )));
                }
            }
            bad += tasks.len();
            // Meanwhile the driver's connection keeps working.
            for n in 0..20 {
                let id = i64::try_from(round * 100 + n + 1).unwrap();
                coll.insert_one(doc! { "_id": id }).await.unwrap();
                assert!(coll.find_one(doc! { "_id": id }).await.unwrap().is_some());
            }
            for task in tasks {
                task.await.unwrap();
            }
            assert!(fault.pool.is_running().unwrap(), "mongo-pool is still running");
            rss_rounds.push(fault.rss_kib());
        }
        let rss_after = fault.rss_kib();

        assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 41);
        let stats = client
            .database("admin")
            .run_command(doc! { "mongoPoolStats": 1 })
            .await
            .unwrap();
        let malformed = stats
            .get_document("downstreamConnections")
            .unwrap()
            .get_i64("malformed")
            .unwrap();
        assert_eq!(
            malformed,
            i64::try_from(bad).unwrap(),
            "every bad connection is counted: {stats}"
        );
        // Generous: allocator caches and a few buffers, not a claimed message.
        let bound = 48 * 1024;
        assert!(
            rss_after <= rss_before + bound,
            "mongo-pool's RSS grew from {rss_before} KiB to {rss_after} KiB (rounds: {rss_rounds:?}) \
             after {bad} bad connections"
        );
        eprintln!(
            "{bad} bad connections (2 GiB claims, 1 MiB garbage floods, unknown op codes, bogus \
             OP_COMPRESSED, stalled half frames): RSS {rss_before} KiB before, {rss_rounds:?} KiB \
             after each round"
        );
        client.shutdown().await;
        let logs = fault.finish().await;
        let warnings = logs
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("malformed"))
            .count();
        assert_eq!(
            warnings,
            bad,
            "one warning per bad connection:\n{}",
            tail(&logs)
        );
    })
    .await;
}

// ---- 9. SHUTDOWN while a request is in flight (lambda-sim) -----------------------------------

fn path(p: impl Into<PathBuf>) -> String {
    p.into().to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_in_the_middle_of_a_request_exits_0_in_time_closes_everything_and_ends_sessions() {
    bounded(async {
        let dir = socket_dir().unwrap();
        let sim = faults_support::harness::sim(dir.path(), &[]).await;
        // Every `find` hangs for 3 s on the server: the second invocation (a `get`) is still
        // waiting for its reply when its 1.5 s timeout resets the environment, and SHUTDOWN
        // reaches mongo-pool with that request in flight.
        sim.post(
            "/failpoint",
            Some(json!({
                "configureFailPoint": "failCommand", "mode": "alwaysOn",
                "data": {"failCommands": ["find"], "blockConnection": true, "blockTimeMS": 3000},
            })),
        )
        .await
        .unwrap();
        let events = dir.path().join("events.jsonl");
        std::fs::write(
            &events,
            "{\"action\": \"put\", \"id\": \"s1\", \"body\": {\"n\": 1}}\n\
             {\"action\": \"get\", \"id\": \"s1\"}\n",
        )
        .unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let socket = dir.path().join("mongo-pool.sock");
        let mut args: Vec<String> = vec![
            "--function".into(),
            path(binary("bootstrap").unwrap()),
            "--extension".into(),
            path(binary("mongo-pool").unwrap()),
            "--logs".into(),
            path(&logs),
            "--invocations".into(),
            "2".into(),
            "--event-file".into(),
            path(&events),
            "--timeout-ms".into(),
            "1500".into(),
        ];
        for env in [
            format!("MONGO_POOL_URI={}", sim.start.uri),
            format!("MONGO_POOL_SOCKET={}", socket.display()),
            format!("AWS_ACCESS_KEY_ID={}", faults_support::harness::KEY_ID),
            format!("AWS_SECRET_ACCESS_KEY={}", faults_support::harness::SECRET),
            format!("AWS_SESSION_TOKEN={}", faults_support::harness::TOKEN),
            "MONGO_POOL_LOG=trace".to_owned(),
            "NOTES_DB=faults".to_owned(),
            "NOTES_COLLECTION=notes".to_owned(),
        ] {
            args.push("--env".into());
            args.push(env);
        }
        let run = lambda_sim::run(&args).await.expect("lambda-sim runs");
        let invokes = run.invokes();
        assert_eq!(invokes.len(), 2, "{}", run.stdout);
        assert_eq!(invokes[0].status, Status::Ok, "{:?}", invokes[0]);
        assert_eq!(
            invokes[1].status,
            Status::Timeout,
            "the get was in flight: {:?}",
            invokes[1]
        );
        let shutdowns = run.shutdowns();
        let shutdown = shutdowns.first().expect("a shutdown line");
        assert_eq!(shutdown.reason, "timeout", "{shutdown:?}");
        assert_eq!(
            shutdown.exits.get("mongo-pool"),
            Some(&Some(0)),
            "mongo-pool exits 0: {shutdown:?}"
        );
        assert!(
            !shutdown.killed.iter().any(|k| k == "mongo-pool"),
            "mongo-pool is never the reason for SIGKILL: {shutdown:?}"
        );
        assert!(
            shutdown.ms < 2000.0,
            "shutdown took {} ms, past the 2,000 ms deadline",
            shutdown.ms
        );

        // Every upstream connection closed (the blocked one too, once atlas-sim's 3 s block
        // lets it see the close), and the function's session ended.
        let (closed, status) = all_closed(&sim, Duration::from_secs(5)).await;
        assert!(closed, "connections left open: {status}");
        assert!(
            total(&status, "commands", "endSessions") >= 1,
            "endSessions received: {status}"
        );
        let log = std::fs::read_to_string(logs.join("mongo-pool.log")).unwrap();
        assert!(log.contains("mongo-pool stopped"), "{}", tail(&log));
        faults_support::harness::assert_logs_clean(&log, &[]);
        assert_no_secret(
            "lambda-sim's output",
            &format!("{}{}", run.stdout, run.stderr),
        );
        eprintln!(
            "SHUTDOWN (reason timeout) with a find in flight: {} ms, exits {:?}",
            shutdown.ms, shutdown.exits
        );
    })
    .await;
}

// ---- 7. Wrong secret, unknown user ---------------------------------------------------------

/// mongo-pool with these credentials in front of `sim`, diagnosing with STS at `sts`.
async fn pool_with(sim: &AtlasSim, sts: &str, key: &str, secret: &str, token: &str) -> MongoPool {
    let env = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", token),
        ("AWS_ENDPOINT_URL_STS", sts),
        ("MONGO_POOL_LOG", "trace"),
    ];
    MongoPool::start(
        &uri_with(&sim.start.uri, "serverSelectionTimeoutMS=5000"),
        &env,
    )
    .await
    .expect("mongo-pool starts")
}

/// The first query through `pool`'s socket once mongo-pool's authentication has failed:
/// its error and how long it took.
async fn first_query(pool: &MongoPool) -> (mongodb::error::Error, Duration) {
    let client = mongodb::Client::with_uri_str(format!(
        "{}/?serverSelectionTimeoutMS=20000",
        pool.socket_uri()
    ))
    .await
    .unwrap();
    let coll: Collection<Document> = client.database("app").collection("denied");
    let started = Instant::now();
    let err = coll
        .find_one(doc! {})
        .await
        .expect_err("Atlas rejects the credentials");
    let took = started.elapsed();
    client.shutdown().await;
    (err, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_or_unknown_user_fails_the_first_query_fast_with_an_actionable_message() {
    bounded(async {
        let moto = Moto::start().await.expect("moto starts");
        let role = moto.create_role("fault-app-role").await.unwrap();
        let assumed = moto.assume_role(&role, "fault-session").await.unwrap();
        let token = assumed.token.clone().expect("a session token");
        let wrong = format!("{}x", assumed.secret);
        let other_user = format!(
            "arn:aws:iam::{}:role/another-role",
            mongo_pool_testkit::moto::ACCOUNT
        );
        let sim = AtlasSim::start([
            "--members",
            "1",
            "--sts-url",
            moto.url.as_str(),
            "--user",
            other_user.as_str(),
        ])
        .await
        .expect("atlas-sim starts");
        let secrets = [assumed.secret.as_str(), wrong.as_str(), token.as_str()];

        let cases = [
            ("a wrong secret", wrong.as_str(), "STS rejected the credentials".to_owned()),
            (
                "a role Atlas has no user for",
                assumed.secret.as_str(),
                format!("Atlas needs a database user for ARN {role}"),
            ),
        ];
        for (case, secret, message) in cases {
            let before = sim.status().await.unwrap();
            let started = Instant::now();
            let pool = pool_with(&sim, &moto.url, &assumed.key_id, secret, &token).await;
            let failed_before = before["auth"]["failed"].as_u64().unwrap();
            wait_for("the first authentication to fail", Duration::from_secs(20), || {
                let sim = &sim;
                async move {
                    sim.status()
                        .await
                        .is_ok_and(|s| s["auth"]["failed"].as_u64().unwrap() > failed_before)
                }
            })
            .await
            .unwrap();
            // mongo-pool asks STS itself once per failure episode; give it a moment.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (err, took) = first_query(&pool).await;
            let text = format!("{err}");
            assert!(
                text.contains(&message),
                "{case}: the error says what to fix ({message}): {text}"
            );
            // "Under a second": the error is ready, nothing waits for serverSelectionTimeoutMS
            // (5 s here). The bound leaves room for a loaded machine.
            assert!(
                took < Duration::from_millis(1500),
                "{case}: the first query failed after {took:?}"
            );

            // No hammering: a few attempts in the window, not one per request or a hot loop.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = sim.status().await.unwrap();
            let window = started.elapsed();
            let attempts = after["sts_calls"].as_u64().unwrap() - before["sts_calls"].as_u64().unwrap();
            assert!(
                attempts <= 10,
                "{case}: {attempts} STS calls in {window:?}: {after}"
            );
            let (exit, logs) = stop_and_read(pool).await;
            assert!(exit.success(), "{case}: {exit}\n{}", tail(&logs));
            assert!(logs.contains("TRACE"), "{case}: trace logs");
            // rustls's trace records carry public handshake values (randoms, session ids).
            assert_no_secret_values(
                &format!("{case}: mongo-pool's log (rustls records left out)"),
                &without_rustls_records(&logs),
                &secrets,
            );
            assert_no_secret_strings(&format!("{case}: mongo-pool's log"), &logs, &secrets);
            assert_no_secret_values(
                &format!("{case}: the error the client saw"),
                &without_reply_dumps(&format!("{err:?}")),
                &secrets,
            );
            eprintln!(
                "{case}: first query failed after {took:?}; {attempts} STS calls in {window:?}; {text}"
            );
        }
    })
    .await;
}

// ---- TLS verification cannot be turned off ---------------------------------------------------

/// A TLS listener on 127.0.0.1 presenting a certificate for `wrong.example` (signed by the CA
/// in the returned file); it never answers anything else.
async fn tls_server_for_another_host(dir: &Path) -> (u16, PathBuf, tokio::task::JoinHandle<()>) {
    let ca = mongo_pool_testkit::certs::generate(dir, &[]).unwrap();
    let other = mongo_pool_testkit::certs::generate_with_names(
        dir,
        "other-host",
        &["wrong.example".to_owned()],
        false,
    )
    .unwrap();
    let config = mongo_pool_testkit::certs::server_config(&other).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                }
            });
        }
    });
    (port, ca.ca_file, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_fails_clearly_and_verification_cannot_be_turned_off() {
    bounded(async {
        let dir = socket_dir().unwrap();
        let (port, ca_file, server) = tls_server_for_another_host(dir.path()).await;
        let ca = ca_file.to_str().unwrap().replace('/', "%2F");
        let uri = format!(
            "mongodb://127.0.0.1:{port}/?tls=true&tlsCAFile={ca}&authMechanism=MONGODB-AWS\
             &connectTimeoutMS=2000&serverSelectionTimeoutMS=1500"
        );
        let key = faults_support::harness::KEY_ID;
        let secret = faults_support::harness::SECRET;
        let token = faults_support::harness::TOKEN;

        // `mongo-pool check` stops at TLS and says why.
        let run = common::rig::check(&[
            ("MONGO_POOL_URI", &uri),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", token),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .await;
        assert!(!run.success, "check fails:\n{}", run.output);
        assert!(
            run.output.contains("check failed at step tls"),
            "check names the TLS step:\n{}",
            run.output
        );
        let lower = run.output.to_ascii_lowercase();
        assert!(
            lower.contains("certificate") && lower.contains("127.0.0.1"),
            "the cause names the certificate and the host it was not valid for:\n{}",
            run.output
        );
        assert_no_secret("mongo-pool check's output", &run.output);

        // Through the socket, the first query's error says the same.
        let pool = faults_support::harness::start_pool(&uri, "", &[]).await;
        let client = mongodb::Client::with_uri_str(format!(
            "{}/?serverSelectionTimeoutMS=20000",
            pool.socket_uri()
        ))
        .await
        .unwrap();
        let err = client
            .database("app")
            .collection::<Document>("tls")
            .find_one(doc! {})
            .await
            .expect_err("no connection to a host with another host's certificate");
        client.shutdown().await;
        let text = format!("{err}");
        assert!(
            text.to_ascii_lowercase().contains("certificate"),
            "the error names the certificate: {text}"
        );
        let (exit, logs) = stop_and_read(pool).await;
        assert!(exit.success(), "{exit}");
        faults_support::harness::assert_logs_clean(&logs, &[format!("{err:?}")]);

        // Options that would switch verification off are refused at start, with a message.
        for option in [
            "tlsInsecure",
            "tlsAllowInvalidCertificates",
            "tlsAllowInvalidHostnames",
        ] {
            let mut env = faults_support::harness::POOL_ENV.to_vec();
            env.truncate(3);
            let mut refused =
                MongoPool::spawn(&uri_with(&uri, &format!("{option}=true")), &env).unwrap();
            let exit = refused.wait_exit(Duration::from_secs(30)).await.unwrap();
            let logs = refused.logs();
            assert!(!exit.success(), "{option}=true is refused: {exit}\n{logs}");
            assert!(
                logs.contains(option) && logs.contains("MONGO_POOL_URI"),
                "the message names {option} and the variable:\n{logs}"
            );
            assert!(
                std::fs::symlink_metadata(refused.socket_path()).is_err(),
                "{option}=true: no socket was served"
            );
        }
        server.abort();
        eprintln!("another host's certificate: {text}");
    })
    .await;
}
