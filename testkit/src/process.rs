//! Real processes for integration tests: start `atlas-sim` with chosen options, read its start
//! line, talk to its control API, and stop it when the handle drops (even when a test panics).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::atlas::StartLine;
pub use nix::sys::signal::Signal;

/// Sends `signal` to a child process.
///
/// # Errors
/// When the child has exited or cannot be signalled.
pub fn signal_child(child: &Child, signal: Signal) -> anyhow::Result<()> {
    let pid = child.id().context("the process has exited")?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
    nix::sys::signal::kill(pid, signal).with_context(|| format!("sending {signal} to {pid}"))?;
    Ok(())
}

/// Polls `condition` every 50 ms until it holds or `limit` passes; the error names `what`.
///
/// # Errors
/// When `condition` still does not hold after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where cargo puts the workspace's binaries for this build profile.
pub fn target_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MONGO_POOL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Integration-test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of a workspace binary (`atlas-sim`, `lambda-sim`, `mongo-pool`, `bootstrap`, ...).
///
/// When it is missing (say `cargo test -p mongo-pool-client` ran on a fresh checkout, which
/// builds no other package's binaries), the workspace's binaries are built once, for the
/// profile of the running test, with the cargo that runs it. With `MONGO_POOL_BIN_DIR` set,
/// nothing is built.
///
/// # Errors
/// When the binary is missing and cannot be built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = target_bin_dir();
    let path = dir.join(name);
    if !path.exists() && std::env::var_os("MONGO_POOL_BIN_DIR").is_none() {
        build_binaries(&dir)?;
    }
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --workspace --bins` (make test builds it)",
            path.display()
        );
    }
    Ok(path)
}

/// `cargo build --workspace --bins` into the target directory that holds `bin_dir`, at most
/// once per test process.
fn build_binaries(bin_dir: &Path) -> anyhow::Result<()> {
    static BUILT: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match *built {
        Some(true) => return Ok(()),
        Some(false) => bail!("building the workspace's binaries failed earlier in this run"),
        None => {}
    }
    let profile = bin_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the test executable is not under target/<profile>/")?
        .to_owned();
    let target_dir = bin_dir
        .parent()
        .context("the test executable is not under target/<profile>/")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("testkit has no parent directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--workspace", "--bins", "--target-dir"])
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("building the workspace's binaries: {cmd:?}");
    let status = cmd.status().context("running cargo build")?;
    *built = Some(status.success());
    if !status.success() {
        bail!("`cargo build --workspace --bins` failed ({status})");
    }
    Ok(())
}

/// A running atlas-sim.
#[derive(Debug)]
pub struct AtlasSim {
    child: Child,
    /// What it printed when it came up.
    pub start: StartLine,
    http: reqwest::Client,
    _state_dir: Option<tempfile::TempDir>,
}

impl AtlasSim {
    /// Starts atlas-sim with `args` (a state dir is added unless given) and waits for its start
    /// line (at most 30 s).
    ///
    /// # Errors
    /// When the binary is missing, exits early, or prints something other than the start line.
    pub async fn start<I, S>(args: I) -> anyhow::Result<AtlasSim>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut command = Command::new(binary("atlas-sim")?);
        let state_dir = if args.iter().any(|a| a == "--state-dir") {
            None
        } else {
            let dir = tempfile::Builder::new()
                .prefix("atlas-sim-test")
                .tempdir()?;
            command.arg("--state-dir").arg(dir.path());
            Some(dir)
        };
        command
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting atlas-sim")?;
        let stdout = child.stdout.take().context("atlas-sim stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("atlas-sim did not print its start line within 30 s")??;
        let Some(line) = line else {
            let status = child.wait().await?;
            bail!("atlas-sim exited ({status}) before printing its start line");
        };
        let start: StartLine =
            serde_json::from_str(&line).with_context(|| format!("atlas-sim start line: {line}"))?;
        Ok(AtlasSim {
            child,
            start,
            http: reqwest::Client::new(),
            _state_dir: state_dir,
        })
    }

    /// `GET /status`.
    ///
    /// # Errors
    /// When the control API does not answer with JSON.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let url = format!("{}/status", self.start.control);
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// `POST path` with an optional JSON body, e.g. `post("/blackhole?ms=500", None)`.
    ///
    /// # Errors
    /// When the control API refuses or does not answer.
    pub async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.start.control);
        let mut request = self.http.post(url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Ok(request.send().await?.error_for_status()?.json().await?)
    }

    /// Sends `signal` to the process (e.g. SIGSTOP/SIGCONT to freeze and thaw it).
    ///
    /// # Errors
    /// When the process is gone or cannot be signalled.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        signal_child(&self.child, signal)
    }

    /// Stops it with SIGTERM and waits (at most 10 s, then SIGKILL).
    ///
    /// # Errors
    /// When it cannot be signalled or waited for.
    pub async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let _ = self.signal(Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }
}
