//! The JSON lines lambda-sim prints on stdout, one per phase, and nothing else there. The same
//! types parse them back for tests ([`super::runner`]).

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It worked.
    Ok,
    /// An error was reported (`init/error`, invocation `/error`) or a process crashed.
    Error,
    /// It did not finish in time.
    Timeout,
}

/// An error as the platform records it: who reported it, its type and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseError {
    /// The extension's name, `function`, or `lambda-sim` for errors the platform detects.
    pub source: String,
    /// The error type (`Extension.ConfigInvalid`, `Runtime.ExitError`, `Sandbox.Timedout`, ...).
    #[serde(rename = "type")]
    pub error_type: String,
    /// The error message (empty when none was given).
    pub message: String,
}

/// `{"phase":"init","ms":..,"status":"ok"}`, with `error` when it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitLine {
    /// From starting the first process to the end of Init (or the failure).
    pub ms: f64,
    /// `ok`, `error` or `timeout` (10 s).
    pub status: Status,
    /// Why Init failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PhaseError>,
}

/// One invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeLine {
    /// 1-based invocation number.
    pub n: u32,
    /// Event delivered to the runtime -> response (or error, or timeout) received.
    pub ms: f64,
    /// Response received -> every extension back in `/extension/event/next`; null when the
    /// invocation did not get that far.
    pub post_runtime_ms: Option<f64>,
    /// `ok`, `error` or `timeout`.
    pub status: Status,
    /// The function's response (JSON, or a string when it was not JSON); for `error`, the error
    /// body the runtime posted; null on timeout or crash.
    pub response: Option<Value>,
    /// The invocation's request id (as in `Lambda-Runtime-Aws-Request-Id` and INVOKE).
    pub request_id: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PhaseError>,
}

/// How the function's process ended during Shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionEnd {
    /// Its exit code, null when a signal ended it (or it had already gone).
    pub code: Option<i32>,
    /// The signal that ended it (`SIGTERM`, `SIGKILL`, ...), or null.
    pub signal: Option<String>,
}

/// The end of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownLine {
    /// From SIGTERM to the runtime until every process is gone.
    pub ms: f64,
    /// The `shutdownReason` sent (`spindown`, or `timeout`/`failure` for a reset).
    pub reason: String,
    /// Extension name -> exit code; null if a signal (SIGKILL at the deadline) ended it.
    pub exits: BTreeMap<String, Option<i32>>,
    /// Extensions still running at the deadline (or never subscribed to SHUTDOWN), SIGKILLed.
    pub killed: Vec<String>,
    /// How the function's process ended.
    pub function: FunctionEnd,
    /// Errors reported through `/extension/exit/error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_errors: Vec<PhaseError>,
}

impl ShutdownLine {
    /// Every extension exited 0 by itself, in time, and none reported an exit error.
    pub fn clean(&self) -> bool {
        self.killed.is_empty()
            && self.exit_errors.is_empty()
            && self.exits.values().all(|code| *code == Some(0))
    }
}

/// One stdout line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Line {
    /// `{"phase":"init",...}`
    Init(InitLine),
    /// `{"phase":"invoke",...}`
    Invoke(InvokeLine),
    /// `{"phase":"shutdown",...}`
    Shutdown(ShutdownLine),
}

/// Prints `line` as one JSON line on stdout and flushes it.
pub(crate) fn print(line: &Line) {
    let Ok(text) = serde_json::to_string(line) else {
        return;
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// Milliseconds with microsecond precision.
pub(crate) fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}
