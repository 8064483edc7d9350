//! The command line and the configuration checked from it (paths, event, environment).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;

use super::state::MAX_EXTENSIONS;

/// lambda-sim: a local AWS Lambda. It serves the Runtime API (2018-06-01) and the Extensions
/// API (2020-01-01) on 127.0.0.1 (an ephemeral port) and runs real processes through Lambda's
/// lifecycle.
///
/// Init: starts every --extension (its name is its file name), waits until each registered,
/// starts --function, and waits until the runtime and every extension called /next (10 s
/// limit). Invoke (--invocations times): delivers --event to the runtime with every
/// Lambda-Runtime-* header and INVOKE to subscribed extensions, waits for the response and for
/// every extension to call /next again (--timeout-ms covers both; a timeout or a crash resets
/// the environment: SHUTDOWN with reason "timeout"/"failure", then a fresh Init), then freezes
/// every process with SIGSTOP for --freeze-ms (also after the last invocation) and thaws it
/// with SIGCONT. Shutdown: SIGTERM to the runtime (SIGKILL after 300 ms), SHUTDOWN with
/// deadlineMs = now + 2000 to subscribed extensions, SIGKILL to whatever is left at the
/// deadline.
///
/// The function and every extension get a clean environment: the --env variables, AWS_REGION,
/// AWS_DEFAULT_REGION, AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
/// AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_RUNTIME_API (host:port), AWS_LAMBDA_LOG_GROUP_NAME,
/// AWS_LAMBDA_LOG_STREAM_NAME, AWS_LAMBDA_INITIALIZATION_TYPE=on-demand, TZ, LANG, PATH (the
/// host's), LD_LIBRARY_PATH; the function alone also gets _HANDLER, LAMBDA_TASK_ROOT (the
/// function's directory), LAMBDA_RUNTIME_DIR and AWS_EXECUTION_ENV. --env may set
/// AWS_REGION, AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION and _HANDLER too.
///
/// Stdout carries only lambda-sim's JSON lines, one per phase: {"phase":"init",...},
/// {"phase":"invoke","n":1,...}, {"phase":"shutdown",...}. The processes' stdout and stderr
/// go to lambda-sim's stderr (or to --logs DIR). Exit status: 0 when Init and every
/// invocation succeeded and every extension exited 0 by itself in time; 1 otherwise; 2 for
/// usage errors.
#[derive(Debug, Clone, Parser)]
#[command(name = "lambda-sim", version, about, long_about, verbatim_doc_comment)]
pub struct Options {
    /// The function's executable: a custom runtime (`bootstrap`) that uses the Runtime API.
    #[arg(long, value_name = "PATH")]
    pub function: PathBuf,
    /// An external extension's executable (repeatable, at most 10); its name is its file name.
    #[arg(long = "extension", value_name = "PATH")]
    pub extensions: Vec<PathBuf>,
    /// How many invocations to deliver (0: Init, then Shutdown).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub invocations: u32,
    /// The event (JSON) delivered to every invocation; default `{}`.
    #[arg(long, value_name = "JSON", conflicts_with = "event_file")]
    pub event: Option<String>,
    /// A file holding the event (JSON), or one event per line (JSON Lines): invocation N gets
    /// line N, starting over after the last.
    #[arg(long, value_name = "F")]
    pub event_file: Option<PathBuf>,
    /// Freeze every process (SIGSTOP) for this long after each invocation; 0: no freeze.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub freeze_ms: u64,
    /// A variable of the function's configuration, for the function and every extension
    /// (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The function's timeout: the runtime's response and the extensions' return to /next.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub timeout_ms: u64,
    /// The function's memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE), 128..=10240.
    #[arg(long, value_name = "MB", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(128..=10240))]
    pub memory_mb: u32,
    /// The `shutdownReason` of the final SHUTDOWN event (passed through as given).
    #[arg(long, value_name = "R", default_value = "spindown")]
    pub shutdown_reason: String,
    /// Write each process's stdout and stderr to DIR/<extension>.log and DIR/function.log
    /// instead of lambda-sim's stderr.
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("expected K=V, got `{text}`"));
    };
    if key.is_empty() || key.contains('\0') || value.contains('\0') {
        return Err(format!("invalid variable `{text}`"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Variables lambda-sim owns; `--env` may not set them.
const OWNED: [&str; 2] = ["AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"];

/// An extension to start.
#[derive(Debug, Clone)]
pub(crate) struct ExtensionFile {
    pub name: String,
    pub path: PathBuf,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub function: PathBuf,
    pub extensions: Vec<ExtensionFile>,
    pub invocations: u32,
    pub events: Vec<Bytes>,
    pub freeze: Duration,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub shutdown_reason: String,
    pub logs: Option<PathBuf>,
}

fn executable(path: &PathBuf, what: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        bail!("{what} {} is not an executable file", path.display());
    }
    std::path::absolute(path).with_context(|| format!("{what} {}", path.display()))
}

impl Config {
    /// The event of invocation `n` (1-based): the events in order, starting over after the
    /// last.
    pub(crate) fn event(&self, n: u32) -> Bytes {
        let index = usize::try_from(n.saturating_sub(1)).unwrap_or(0) % self.events.len().max(1);
        self.events
            .get(index)
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"{}"))
    }

    /// Checks `options`.
    ///
    /// # Errors
    /// A missing or non-executable file, two extensions with one name, more than 10
    /// extensions, an event that is not JSON, an `--env` variable lambda-sim owns.
    pub(crate) fn from_options(options: Options) -> anyhow::Result<Config> {
        let function = executable(&options.function, "--function")?;
        if options.extensions.len() > MAX_EXTENSIONS {
            bail!(
                "{} extensions given; Lambda allows at most {MAX_EXTENSIONS}",
                options.extensions.len()
            );
        }
        let mut names = HashSet::new();
        let mut extensions = Vec::new();
        for path in &options.extensions {
            let path = executable(path, "--extension")?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("an extension's file name is not UTF-8")?
                .to_owned();
            if !names.insert(name.clone()) {
                bail!("two extensions are named {name}: an extension's name is its file name");
            }
            extensions.push(ExtensionFile { name, path });
        }
        let events = match (&options.event, &options.event_file) {
            (Some(json), _) => vec![checked_event(json.as_bytes())?],
            (None, Some(file)) => {
                let text = std::fs::read(file)
                    .with_context(|| format!("--event-file {}", file.display()))?;
                file_events(&text).with_context(|| format!("--event-file {}", file.display()))?
            }
            (None, None) => vec![Bytes::from_static(b"{}")],
        };
        for (key, _) in &options.env {
            if OWNED.contains(&key.as_str()) {
                bail!("--env {key}: lambda-sim sets it (use --memory-mb for the memory size)");
            }
        }
        if let Some(dir) = &options.logs {
            std::fs::create_dir_all(dir).with_context(|| format!("--logs {}", dir.display()))?;
        }
        Ok(Config {
            function,
            extensions,
            invocations: options.invocations,
            events,
            freeze: Duration::from_millis(options.freeze_ms),
            env: options.env,
            timeout: Duration::from_millis(options.timeout_ms.max(1)),
            memory_mb: options.memory_mb,
            shutdown_reason: options.shutdown_reason,
            logs: options.logs,
        })
    }

    /// The value `--env` gave `key`.
    pub(crate) fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One event, checked to be JSON.
fn checked_event(bytes: &[u8]) -> anyhow::Result<Bytes> {
    serde_json::from_slice::<serde_json::Value>(bytes).context("the event is not JSON")?;
    Ok(Bytes::copy_from_slice(bytes))
}

/// An event file's events: the whole file when it is one JSON value, else one per non-empty
/// line.
fn file_events(text: &[u8]) -> anyhow::Result<Vec<Bytes>> {
    if serde_json::from_slice::<serde_json::Value>(text).is_ok() {
        return Ok(vec![Bytes::copy_from_slice(text)]);
    }
    let events = text
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(i, line)| checked_event(line).with_context(|| format!("line {}", i + 1)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if events.is_empty() {
        bail!("the event is not JSON (the file is empty)");
    }
    Ok(events)
}
