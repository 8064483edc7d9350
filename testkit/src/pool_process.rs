//! The `mongo-pool` binary as a real sidecar process for integration tests: started with a
//! clean environment (PATH, the Atlas URI, a socket in a fresh temp dir, `MONGO_POOL_MODE=sidecar`,
//! the AWS credentials the test passes), ready once its socket accepts, its stderr kept in a
//! file the test can read, stopped with SIGTERM, killed when the handle drops.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::process::{Signal, binary, signal_child};

/// How long [`MongoPool::start`] waits for the socket to accept.
pub const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long [`MongoPool::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Variables every instance gets unless `extra_env` overrides them: logs on stderr as text,
/// no EC2 metadata lookups, and STS diagnosis pointed at a closed loopback port so a failure
/// never waits for the real STS.
const DEFAULT_ENV: &[(&str, &str)] = &[
    ("MONGO_POOL_MODE", "sidecar"),
    ("MONGO_POOL_LOG", "info"),
    ("MONGO_POOL_LOG_FORMAT", "text"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9"),
    ("AWS_REGION", "us-east-1"),
];

/// A running (or exited) `mongo-pool` process.
#[derive(Debug)]
pub struct MongoPool {
    child: Child,
    socket: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// `mongodb://` + the percent-encoded socket path: the URI drivers take for a Unix socket.
pub fn socket_uri(path: &Path) -> String {
    let mut out = String::from("mongodb://");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(*byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A fresh directory for sockets (under `/tmp`, so paths stay well inside the 108-byte limit
/// of `sun_path`).
///
/// # Errors
/// When the directory cannot be created.
pub fn socket_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("mongo-pool-")
        .tempdir_in("/tmp")?)
}

impl MongoPool {
    /// Starts `mongo-pool` (sidecar mode) in front of `uri` and waits until its socket accepts
    /// (at most [`READY_LIMIT`]). `extra_env` is added last and so overrides the defaults,
    /// `MONGO_POOL_SOCKET` included.
    ///
    /// # Errors
    /// When the binary is missing, or the process exits or does not accept in time (the
    /// error carries its stderr).
    pub async fn start(uri: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<MongoPool> {
        let mut pool = MongoPool::spawn(uri, extra_env)?;
        pool.wait_ready(READY_LIMIT).await?;
        Ok(pool)
    }

    /// Starts the process without waiting for the socket (for tests that expect it to fail).
    ///
    /// # Errors
    /// When the binary is missing or cannot be started.
    pub fn spawn(uri: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<MongoPool> {
        let dir = socket_dir()?;
        let socket = extra_env
            .iter()
            .rev()
            .find(|(k, _)| *k == "MONGO_POOL_SOCKET")
            .map_or_else(|| dir.path().join("mongo-pool.sock"), |(_, v)| v.into());
        let stderr = dir.path().join("stderr.log");
        let stdout = dir.path().join("stdout.log");
        let mut command = Command::new(binary("mongo-pool")?);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("MONGO_POOL_URI", uri)
            .env("MONGO_POOL_SOCKET", &socket);
        for (k, v) in DEFAULT_ENV.iter().chain(extra_env) {
            command.env(k, v);
        }
        command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .kill_on_drop(true);
        let child = command.spawn().context("starting mongo-pool")?;
        Ok(MongoPool {
            child,
            socket,
            stderr,
            _dir: dir,
        })
    }

    /// Waits until the socket accepts a connection, at most `limit`.
    ///
    /// # Errors
    /// When the process exits first or `limit` passes (with its stderr).
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "mongo-pool exited ({status}) before its socket accepted; stderr:\n{}",
                    self.logs()
                );
            }
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "mongo-pool's socket {} did not accept within {limit:?}; stderr:\n{}",
                    self.socket.display(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `mongodb://%2F...sock`.
    pub fn socket_uri(&self) -> String {
        socket_uri(&self.socket)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    ///
    /// # Errors
    /// When its status cannot be read.
    pub fn is_running(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Sends `signal` to the process.
    ///
    /// # Errors
    /// When it has exited or cannot be signalled.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        signal_child(&self.child, signal)
    }

    /// Everything it wrote on stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits for the process to exit by itself, at most `limit`.
    ///
    /// # Errors
    /// When it is still running after `limit` (it is then killed).
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!("mongo-pool did not exit within {limit:?}; killed it")
            }
        }
    }

    /// Stops it with SIGTERM and waits (at most [`STOP_LIMIT`], then SIGKILL).
    ///
    /// # Errors
    /// When it cannot be waited for.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        if self.child.try_wait()?.is_none() {
            let _ = self.signal(Signal::SIGTERM);
        }
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }
}

/// What `mongo-pool health` did: its exit status and its stdout + stderr.
#[derive(Debug)]
pub struct HealthRun {
    /// The exit status.
    pub status: ExitStatus,
    /// stdout followed by stderr.
    pub output: String,
}

/// Runs `mongo-pool health` against the socket at `socket` (clean environment, at most 30 s).
///
/// # Errors
/// When the binary is missing, cannot run, or does not finish in time.
pub async fn health(socket: &Path) -> anyhow::Result<HealthRun> {
    let mut command = Command::new(binary("mongo-pool")?);
    command.arg("health").env_clear().kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.env("MONGO_POOL_SOCKET", socket);
    let out = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .context("mongo-pool health did not finish within 30 s")??;
    Ok(HealthRun {
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
