//! Runs the `lambda-sim` binary for tests and parses its stdout into [`Line`]s.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let run = mongo_pool_testkit::lambda_sim::run([
//!     "--function", "tests/fixtures/lambda/fn-echo",
//!     "--extension", "target/debug/mongo-pool",
//!     "--env", "MONGO_POOL_URI=mongodb://127.0.0.1:1/",
//! ]).await?;
//! assert!(run.success(), "{}", run.stderr);
//! assert_eq!(run.shutdown().map(|s| s.exits["mongo-pool"]), Some(Some(0)));
//! # Ok(()) }
//! ```

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use super::report::{InitLine, InvokeLine, Line, ShutdownLine};

/// How long [`run`] lets lambda-sim run before killing it.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A finished lambda-sim run.
#[derive(Debug)]
pub struct SimRun {
    /// lambda-sim's exit status.
    pub status: ExitStatus,
    /// Its stdout, parsed: one [`Line`] per stdout line.
    pub lines: Vec<Line>,
    /// Its stdout as printed.
    pub stdout: String,
    /// Its stderr (its own log and the processes' output, unless `--logs` was given).
    pub stderr: String,
}

impl SimRun {
    /// lambda-sim exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The init lines (more than one after a reset).
    pub fn inits(&self) -> Vec<&InitLine> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Init(init) => Some(init),
                _ => None,
            })
            .collect()
    }

    /// The first init line.
    pub fn init(&self) -> Option<&InitLine> {
        self.inits().into_iter().next()
    }

    /// The invoke lines, in order.
    pub fn invokes(&self) -> Vec<&InvokeLine> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Invoke(invoke) => Some(invoke),
                _ => None,
            })
            .collect()
    }

    /// The shutdown lines (more than one after a reset).
    pub fn shutdowns(&self) -> Vec<&ShutdownLine> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Shutdown(shutdown) => Some(shutdown),
                _ => None,
            })
            .collect()
    }

    /// The last shutdown line.
    pub fn shutdown(&self) -> Option<&ShutdownLine> {
        self.shutdowns().into_iter().last()
    }
}

/// Parses lambda-sim's stdout: every line must be one of its JSON lines.
///
/// # Errors
/// A line that is not a lambda-sim JSON line.
pub fn parse_lines(stdout: &str) -> anyhow::Result<Vec<Line>> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).with_context(|| format!("not a lambda-sim line: {line:?}"))
        })
        .collect()
}

/// Runs `lambda-sim args...` (the workspace binary, see [`crate::process::binary`]) to the end,
/// at most [`RUN_LIMIT`], and parses its stdout.
///
/// # Errors
/// When the binary is missing, does not finish in time, or prints anything but its JSON lines
/// on stdout.
pub async fn run<I, S>(args: I) -> anyhow::Result<SimRun>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(crate::process::binary("lambda-sim")?);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(RUN_LIMIT, command.output()).await {
        Ok(output) => output.context("running lambda-sim")?,
        Err(_) => bail!("lambda-sim did not finish within {RUN_LIMIT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = parse_lines(&stdout).with_context(|| format!("lambda-sim stderr:\n{stderr}"))?;
    Ok(SimRun {
        status: output.status,
        lines,
        stdout,
        stderr,
    })
}
