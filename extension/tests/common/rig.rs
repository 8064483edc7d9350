//! Shared pieces of the extension's integration tests: atlas-sim with the options the tests
//! use, the `mongo-pool` library in-process over a lookup table (never `env::set_var`), the
//! `mongo-pool check` binary with a clean environment, and a loopback HTTP stub for the AWS
//! credential endpoints (ECS container endpoint, EC2 IMDSv2).
//!
//! Each test file declares `mod common { pub mod rig; }` and uses what it needs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use bson::{Document, doc};
use mongo_pool::config::{Config, HostPort};
use mongo_pool::freeze::FreezeDetector;
use mongo_pool::metrics::Metrics;
use mongo_pool::pool::PooledConnection;
use mongo_pool::topology::Topology;
use mongo_pool::upstream::connect::Connector;
use mongo_pool::upstream::reply_ok;
use mongo_pool_testkit::process::AtlasSim;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The long-term key every atlas-sim in these tests knows (`--principal`).
pub const KEY_ID: &str = "AKIDMONGOPOOLTEST";
/// Its secret.
pub const SECRET: &str = "mongo-pool-test-secret";
/// The ARN atlas-sim gives it.
pub const USER_ARN: &str = "arn:aws:iam::123456789012:user/AKIDMONGOPOOLTEST";
/// The `--srv` name.
pub const SRV_NAME: &str = "cluster0.sim.test";
/// Where STS diagnosis goes in tests that do not run moto (the loopback discard port, where
/// nothing listens): an authentication failure is diagnosed "STS unreachable" at once instead
/// of waiting for the real STS.
pub const NO_STS: &str = "http://127.0.0.1:9";

/// Starts atlas-sim with `args`.
pub async fn sim(args: &[&str]) -> AtlasSim {
    AtlasSim::start(args).await.expect("atlas-sim starts")
}

/// Starts atlas-sim that verifies [`KEY_ID`]/[`SECRET`] locally, plus `args`.
pub async fn sim_with_key(args: &[&str]) -> AtlasSim {
    let principal = format!("{KEY_ID}:{SECRET}");
    let mut all = vec!["--principal", principal.as_str()];
    all.extend_from_slice(args);
    sim(&all).await
}

/// `uri` with `options` (`a=1&b=2`) appended.
pub fn uri_with(uri: &str, options: &str) -> String {
    if options.is_empty() {
        return uri.to_owned();
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{options}")
}

/// A lookup table standing in for the process environment; shared, so a test can change a
/// value (e.g. rotate credentials) while the library runs.
#[derive(Debug, Clone, Default)]
pub struct Table(Arc<Mutex<HashMap<String, String>>>);

impl Table {
    /// A table with `pairs`.
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        let table = Table::default();
        for (k, v) in pairs {
            table.set(k, v);
        }
        table
    }

    /// Sets `key`.
    pub fn set(&self, key: &str, value: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_owned());
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }

    /// The lookup function the library takes.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static {
        let table = Arc::clone(&self.0);
        move |key: &str| table.lock().unwrap().get(key).cloned()
    }
}

/// The environment of an in-process test: `MONGO_POOL_URI`, the key atlas-sim knows, no IMDS,
/// and STS diagnosis pointed at a closed loopback port.
pub fn env_table(uri: &str) -> Table {
    Table::new(&[
        ("MONGO_POOL_URI", uri),
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_STS", NO_STS),
        ("AWS_REGION", "us-east-1"),
    ])
}

/// The library, in-process: config, connector, metrics, freeze detector (its ticker running),
/// and the topology. Shuts everything down on drop.
pub struct Rig {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub freeze: Arc<FreezeDetector>,
    pub topology: Arc<Topology>,
    pub shutdown: CancellationToken,
}

impl Rig {
    /// Builds everything from `table`, as `main` would from the environment.
    pub async fn start(table: &Table) -> Rig {
        let lookup = table.lookup();
        let config = Config::from_lookup(&lookup).expect("valid config");
        let metrics = Arc::new(Metrics::default());
        let connector = Arc::new(
            Connector::new(&config, lookup, Arc::clone(&metrics)).expect("connector builds"),
        );
        let shutdown = CancellationToken::new();
        let freeze = FreezeDetector::new(Arc::clone(&metrics));
        tokio::spawn(Arc::clone(&freeze).run(shutdown.child_token()));
        let topology = Topology::start(
            &config.uri,
            connector,
            Arc::clone(&freeze),
            Arc::clone(&metrics),
            shutdown.child_token(),
        )
        .await
        .expect("topology starts");
        Rig {
            config,
            metrics,
            freeze,
            topology,
            shutdown,
        }
    }

    /// The primary (or a mongos), waiting up to 20 s.
    pub async fn primary(&self) -> Arc<mongo_pool::topology::Server> {
        self.topology
            .select(
                mongo_pool_wire::inspect::ReadPreferenceMode::Primary,
                Instant::now() + Duration::from_secs(20),
            )
            .await
            .expect("a primary is selected")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.topology.close();
        self.shutdown.cancel();
    }
}

/// Runs `command` on a checked-out connection (10 s limit); `Err` for a network failure.
pub async fn run(conn: &mut PooledConnection, command: Document) -> anyhow::Result<Document> {
    Ok(conn.command(&command, Duration::from_secs(10)).await?)
}

/// `ping` on a checked-out connection; `Err` unless the server answers `ok: 1`.
pub async fn ping(conn: &mut PooledConnection) -> anyhow::Result<()> {
    let reply = run(conn, doc! { "ping": 1, "$db": "admin" }).await?;
    ensure!(reply_ok(&reply), "ping failed: {reply}");
    Ok(())
}

/// The user `connectionStatus` reports on a checked-out connection.
pub async fn authenticated_user(conn: &mut PooledConnection) -> anyhow::Result<String> {
    let reply = run(conn, doc! { "connectionStatus": 1, "$db": "admin" }).await?;
    let users = reply
        .get_document("authInfo")?
        .get_array("authenticatedUsers")?;
    let user = users
        .first()
        .and_then(|u| u.as_document())
        .context("no authenticated user")?;
    Ok(user.get_str("user")?.to_owned())
}

/// `host:port` the way atlas-sim's `/status` keys members.
pub fn key(address: &HostPort) -> String {
    address.to_string()
}

/// `/status` members.<member>.connections.<field>.
pub fn connections(status: &Value, member: &str, field: &str) -> u64 {
    status["members"][member]["connections"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} for {member} in {status}"))
}

/// Σ over members of connections.total_created.
pub fn total_created(status: &Value) -> u64 {
    status["members"]
        .as_object()
        .expect("members")
        .values()
        .map(|m| m["connections"]["total_created"].as_u64().expect("total"))
        .sum()
}

/// A `mongo-pool check` run: exit status, stdout + stderr, and how long it took.
#[derive(Debug)]
pub struct CheckRun {
    pub success: bool,
    pub output: String,
    pub elapsed: Duration,
}

/// Runs `mongo-pool check` with only `env` (plus PATH and HOME) in its environment, for at
/// most 60 s.
pub async fn check(env: &[(&str, &str)]) -> CheckRun {
    let binary = mongo_pool_testkit::process::binary("mongo-pool").expect("mongo-pool is built");
    let mut command = tokio::process::Command::new(binary);
    command.arg("check").env_clear().kill_on_drop(true);
    for var in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            command.env(var, v);
        }
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("mongo-pool check finishes within 60 s")
        .expect("mongo-pool check runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    CheckRun {
        success: out.status.success(),
        output,
        elapsed: started.elapsed(),
    }
}

/// One request the HTTP stub received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-case.
    pub headers: HashMap<String, String>,
}

/// What the stub answers: status, extra headers, body.
pub type Response = (u16, Vec<(String, String)>, String);

/// A loopback HTTP/1.1 server that answers each request with `handler` and records it.
/// One request per connection (`Connection: close`). Stops on drop.
pub struct HttpStub {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpStub {
    /// Serves on a free 127.0.0.1 port.
    pub async fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let Ok(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let (status, headers, body) = handler(&request);
                    seen.lock().unwrap().push(request);
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        HttpStub {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests were for `method path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> anyhow::Result<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await??;
        ensure!(n > 0, "connection closed before the request ended");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().context("request line")?;
    let mut parts = first.split(' ');
    let method = parts.next().context("method")?.to_owned();
    let path = parts.next().context("path")?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf.len() - (header_end + 4);
    while body < length {
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "connection closed in the body");
        body += n;
    }
    Ok(Request {
        method,
        path,
        headers,
    })
}

/// The JSON body the ECS endpoint and IMDS return for temporary credentials, valid for an
/// hour.
pub fn credentials_json(key_id: &str, secret: &str, token: &str) -> String {
    let expiration = time_in(Duration::from_secs(3600));
    serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "LastUpdated": time_in(Duration::ZERO),
        "AccessKeyId": key_id,
        "SecretAccessKey": secret,
        "Token": token,
        "Expiration": expiration,
    })
    .to_string()
}

/// RFC 3339 UTC time `after` from now, second precision.
fn time_in(after: Duration) -> String {
    let secs = (std::time::SystemTime::now() + after)
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes an atlas-sim `--principals-file` holding temporary credentials with `arn`.
pub fn principals_file(
    dir: &Path,
    key_id: &str,
    secret: &str,
    token: &str,
    arn: &str,
) -> std::path::PathBuf {
    let path = dir.join("principals.json");
    let body = serde_json::json!([
        { "key_id": key_id, "secret": secret, "session_token": token, "arn": arn },
        { "key_id": KEY_ID, "secret": SECRET },
    ]);
    std::fs::write(&path, body.to_string()).expect("write principals file");
    path
}
