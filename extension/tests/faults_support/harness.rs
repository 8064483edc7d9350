//! The fault suite's shared harness: atlas-sim knowing one set of temporary credentials (with a
//! session token) for an assumed role, and the `mongo-pool` binary in front of it as a real
//! sidecar process with `MONGO_POOL_LOG=trace`. Every error a downstream client saw is
//! recorded with [`Fault::saw`]; [`Fault::finish`] stops mongo-pool and asserts that neither
//! its logs (every line, every level, every crate) nor those errors contain the secret key, the
//! session token or a SigV4 signature.
//!
//! Each `faults_*.rs` file declares `mod faults_support { pub mod harness; }`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::{AtlasSim, wait_for};
use serde_json::{Value, json};

/// The temporary access key id (an `ASIA` key, as Lambda gives its functions).
pub const KEY_ID: &str = "ASIAFAULTSUITEKEY001";
/// Its secret key: a value that cannot appear in a log by chance.
pub const SECRET: &str = "faultSuiteSecretKey/4wQ7+zR2kP9mN3bV8cX1";
/// Its session token.
pub const TOKEN: &str = "FaultSuiteSessionToken//IQoJb3JpZ2luX2VjEJr+tokenBody0123456789";
/// The caller ARN atlas-sim gives these credentials.
pub const CALLER_ARN: &str = "arn:aws:sts::123456789012:assumed-role/fault-role/fault-function";
/// The database user Atlas has for that caller.
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/fault-role";

/// The environment every fault test gives mongo-pool besides its URI: the temporary
/// credentials and trace logging.
pub const POOL_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("AWS_SESSION_TOKEN", TOKEN),
    ("MONGO_POOL_LOG", "trace"),
];

/// `uri` with `options` (`a=1&b=2`) appended.
pub fn uri_with(uri: &str, options: &str) -> String {
    if options.is_empty() {
        return uri.to_owned();
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{options}")
}

/// atlas-sim with the temporary credentials of [`KEY_ID`] and a database user for
/// [`ROLE_ARN`], plus `args`. The principals file lives in `dir`.
pub async fn sim(dir: &Path, args: &[&str]) -> AtlasSim {
    let principals = dir.join("principals.json");
    let body = json!([{ "key_id": KEY_ID, "secret": SECRET, "session_token": TOKEN,
                        "arn": CALLER_ARN }]);
    std::fs::write(&principals, body.to_string()).unwrap();
    let principals = principals.to_str().unwrap().to_owned();
    let mut all = vec!["--principals-file", principals.as_str(), "--user", ROLE_ARN];
    all.extend_from_slice(args);
    AtlasSim::start(&all).await.expect("atlas-sim starts")
}

/// One fault scenario: atlas-sim, mongo-pool (trace logs, temporary credentials) and what the
/// downstream clients saw.
pub struct Fault {
    pub sim: AtlasSim,
    pub pool: MongoPool,
    seen: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Fault {
    /// atlas-sim with `sim_args`, then mongo-pool with `uri_options` added to its URI and
    /// `extra_env` after [`POOL_ENV`].
    pub async fn start(sim_args: &[&str], uri_options: &str, extra_env: &[(&str, &str)]) -> Fault {
        let dir = mongo_pool_testkit::pool_process::socket_dir().unwrap();
        let sim = sim(dir.path(), sim_args).await;
        Fault::with_sim(sim, dir, uri_options, extra_env).await
    }

    /// mongo-pool in front of an atlas-sim the test started itself (with [`sim`] in `dir`).
    pub async fn with_sim(
        sim: AtlasSim,
        dir: tempfile::TempDir,
        uri_options: &str,
        extra_env: &[(&str, &str)],
    ) -> Fault {
        let pool = start_pool(&sim.start.uri, uri_options, extra_env).await;
        Fault {
            sim,
            pool,
            seen: Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    /// [`Fault::finish`], then asserts that Atlas has no connection from mongo-pool left open
    /// (polled for up to 3 s after the exit).
    pub async fn finish_all_closed(self) -> String {
        let Fault {
            sim, pool, seen, ..
        } = self;
        let (exit, logs) = stop_and_read(pool).await;
        assert!(
            exit.success(),
            "mongo-pool exits 0 on SIGTERM ({exit}); log tail:\n{}",
            tail(&logs)
        );
        let (closed, status) = all_closed(&sim, Duration::from_secs(3)).await;
        assert!(
            closed,
            "mongo-pool exited, but Atlas still has connections from it: {status}"
        );
        assert_logs_clean(&logs, &seen.lock().unwrap());
        logs
    }

    /// A `mongodb` driver on mongo-pool's socket with `options` in its URI.
    pub async fn client(&self, options: &str) -> mongodb::Client {
        let uri = uri_with(&format!("{}/", self.pool.socket_uri()), options);
        mongodb::Client::with_uri_str(&uri)
            .await
            .unwrap_or_else(|e| panic!("a client for {uri}: {e}"))
    }

    /// Records an error a downstream client saw (its full `Debug` form, labels and sources
    /// included), for the secrets check in [`Fault::finish`].
    pub fn saw(&self, error: &dyn std::fmt::Debug) {
        self.seen
            .lock()
            .unwrap()
            .push(without_reply_dumps(&format!("{error:?}")));
    }

    /// Everything recorded with [`Fault::saw`].
    pub fn errors(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// mongo-pool's resident set now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pool.pid().expect("mongo-pool is running"))
    }

    /// Stops mongo-pool (SIGTERM; it must exit 0 within 10 s), then checks its whole log and
    /// every recorded client error for secrets. Returns the log.
    pub async fn finish(self) -> String {
        let Fault { pool, seen, .. } = self;
        let (exit, logs) = stop_and_read(pool).await;
        assert!(
            exit.success(),
            "mongo-pool exits 0 on SIGTERM ({exit}); log tail:\n{}",
            tail(&logs)
        );
        assert_logs_clean(&logs, &seen.lock().unwrap());
        logs
    }
}

/// Asserts that `logs` (trace level) and every entry of `errors` are free of secrets. The
/// records of rustls are left out of the hex-run check only: at trace level it prints the
/// handshake messages, whose random values and key shares are public 32-byte values.
pub fn assert_logs_clean(logs: &str, errors: &[String]) {
    assert!(
        logs.contains("TRACE"),
        "mongo-pool logged at trace level:\n{}",
        tail(logs)
    );
    assert_no_secret_strings("mongo-pool's log", logs, &[SECRET, TOKEN]);
    assert_no_secret(
        "mongo-pool's log (rustls records left out)",
        &without_rustls_records(logs),
    );
    for error in errors {
        assert_no_secret("an error a client saw", error);
    }
}

/// `logs` without the records (a record and its continuation lines) whose target is rustls.
pub fn without_rustls_records(logs: &str) -> String {
    let mut out = String::with_capacity(logs.len());
    let mut in_rustls = false;
    for line in logs.lines() {
        let plain: String = strip_ansi(line);
        let starts_record = plain.len() > 5
            && plain.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && plain.as_bytes()[4] == b'-'
            || plain.starts_with('{');
        if starts_record {
            in_rustls = plain.contains(" rustls::") || plain.contains("\"target\":\"rustls");
        }
        if !in_rustls {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `line` without ANSI colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// SIGTERM, then waits (at most 10 s); returns the exit status and the whole log.
pub async fn stop_and_read(mut pool: MongoPool) -> (std::process::ExitStatus, String) {
    if pool.is_running().unwrap() {
        pool.signal(mongo_pool_testkit::process::Signal::SIGTERM)
            .unwrap();
    }
    let exit = pool.wait_exit(Duration::from_secs(10)).await.unwrap();
    (exit, pool.logs())
}

/// mongo-pool with [`POOL_ENV`] in front of `uri` (+ `uri_options`), plus `extra_env`.
pub async fn start_pool(uri: &str, uri_options: &str, extra_env: &[(&str, &str)]) -> MongoPool {
    let mut env: Vec<(&str, &str)> = POOL_ENV.to_vec();
    env.extend_from_slice(extra_env);
    MongoPool::start(&uri_with(uri, uri_options), &env)
        .await
        .expect("mongo-pool starts")
}

/// Asserts that `text` holds neither [`SECRET`], [`TOKEN`], a `Signature=` nor a run of 64
/// hex digits (a SigV4 signature or signing key), also percent- or JSON-escaped.
pub fn assert_no_secret(what: &str, text: &str) {
    assert_no_secret_values(what, text, &[SECRET, TOKEN]);
}

/// Asserts that `text` holds none of `secrets` (nor their first 24 characters, nor their
/// percent-encoded forms), no `Signature=` and no run of 64 hex digits.
pub fn assert_no_secret_values(what: &str, text: &str, secrets: &[&str]) {
    assert_no_secret_strings(what, text, secrets);
    if let Some(at) = text.find("Signature=") {
        panic!(
            "{what} contains a SigV4 signature: ...{}...",
            context(text, at, 10)
        );
    }
    if let Some(at) = hex_run(text, 64) {
        panic!(
            "{what} contains a run of 64 hex digits (a signature?): ...{}...",
            context(text, at, 64)
        );
    }
}

/// Asserts that `text` holds none of `secrets` (nor their first 24 characters, nor their
/// percent-encoded forms) and no `Signature=`.
pub fn assert_no_secret_strings(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        let escaped = secret
            .replace('%', "%25")
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D");
        let prefix = &secret[..secret.len().min(24)];
        for needle in [*secret, escaped.as_str(), prefix] {
            if let Some(at) = text.find(needle) {
                panic!(
                    "{what} contains a secret (key or token): ...{}...",
                    context(text, at, needle.len())
                );
            }
        }
    }
    if let Some(at) = text.find("Signature=") {
        panic!(
            "{what} contains a SigV4 signature: ...{}...",
            context(text, at, 10)
        );
    }
}

/// `text` without the driver's hex dumps of reply documents (`RawDocumentBuf { data: "..." }`,
/// which print every byte of a reply, `$clusterTime` hashes included, as hex): those are
/// checked as documents by the secret scan of the words around them, not as hex runs.
pub fn without_reply_dumps(text: &str) -> String {
    let marker = "data: \"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let start = at + marker.len();
        let hex_len = rest[start..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count();
        out.push_str(&rest[..start]);
        out.push_str(&format!("<{hex_len} hex digits>"));
        rest = &rest[start + hex_len..];
    }
    out.push_str(rest);
    out
}

/// The byte offset of the first run of at least `n` ASCII hex digits in `text`.
fn hex_run(text: &str, n: usize) -> Option<usize> {
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        if b.is_ascii_hexdigit() {
            run += 1;
            if run == n {
                return Some(i + 1 - n);
            }
        } else {
            run = 0;
        }
    }
    None
}

/// `text` around `at..at+len`, with the match itself masked (the report must not leak either).
fn context(text: &str, at: usize, len: usize) -> String {
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(80)
        .map_or(0, |(i, _)| i);
    let end = (at + len).min(text.len());
    format!("{}<{len} bytes masked>", &text[start..at]) + {
        let after = &text[end..];
        let cut = after.char_indices().nth(40).map_or(after.len(), |(i, _)| i);
        &after[..cut]
    }
}

/// The last 40 lines of `log`.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// VmRSS of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Σ over members of `/status` members.*.<section>.<field>.
pub fn total(status: &Value, section: &str, field: &str) -> u64 {
    status["members"]
        .as_object()
        .expect("members in /status")
        .values()
        .map(|m| m[section][field].as_u64().unwrap_or(0))
        .sum()
}

/// `/status` members.<member>.<section>.<field>, by member.
pub fn per_member(status: &Value, section: &str, field: &str) -> Vec<(String, u64)> {
    status["members"]
        .as_object()
        .expect("members in /status")
        .iter()
        .map(|(k, m)| (k.clone(), m[section][field].as_u64().unwrap_or(0)))
        .collect()
}

/// Waits up to `limit` until atlas-sim has no open connection; whether it got there, and
/// atlas-sim's status at the end.
pub async fn all_closed(sim: &AtlasSim, limit: Duration) -> (bool, Value) {
    let closed = wait_for("no open upstream connection", limit, || async {
        sim.status()
            .await
            .is_ok_and(|s| total(&s, "connections", "current") == 0)
    })
    .await;
    (closed.is_ok(), sim.status().await.unwrap())
}

/// The server (or mongo-pool) error code of a driver error, also when the driver wraps it.
pub fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(e) => Some(e.code),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => {
            Some(e.code)
        }
        _ => std::error::Error::source(error)
            .and_then(|s| s.downcast_ref::<mongodb::error::Error>())
            .and_then(server_code),
    }
}
