//! The execution environment's processes: each started in its own process group with a clean
//! environment, its output sent to lambda-sim's stderr (or a log file), its end recorded in
//! [`Shared`] by a watcher task, and signalled as a group (SIGSTOP/SIGCONT/SIGTERM/SIGKILL),
//! so children it forks are frozen and killed with it.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use super::options::Config;
use super::state::{ExitInfo, Platform, ProcessKey, Shared};

/// Lambda's library path (harmless where the directories do not exist).
const LD_LIBRARY_PATH: &str = "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib";
/// The execution environment name a function sees (`AWS_Lambda_` marks Lambda).
const EXECUTION_ENV: &str = "AWS_Lambda_provided.al2023";

/// The platform's description of the function, from `--env` or defaults.
pub(crate) fn platform(config: &Config) -> Platform {
    let function_name = config
        .env_value("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or("lambda-sim-function")
        .to_owned();
    let function_version = config
        .env_value("AWS_LAMBDA_FUNCTION_VERSION")
        .unwrap_or("$LATEST")
        .to_owned();
    let region = region(config);
    let account_id = super::ACCOUNT_ID.to_owned();
    let arn = format!("arn:aws:lambda:{region}:{account_id}:function:{function_name}");
    Platform {
        function_name,
        function_version,
        handler: config
            .env_value("_HANDLER")
            .unwrap_or("bootstrap")
            .to_owned(),
        account_id,
        arn,
    }
}

fn region(config: &Config) -> String {
    config
        .env_value("AWS_REGION")
        .unwrap_or("us-east-1")
        .to_owned()
}

/// The environment of the function (`function: true`) or of an extension: `--env` first, then
/// the platform's variables where `--env` did not set them; the API address always.
pub(crate) fn environment(
    config: &Config,
    platform: &Platform,
    api: &str,
    function: bool,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String, overridable: bool| {
        let given = config.env_value(key).is_some();
        if !(overridable && given) {
            env.push((key.to_owned(), value));
        }
    };
    let region = region(config);
    set("AWS_REGION", region.clone(), true);
    set("AWS_DEFAULT_REGION", region, true);
    set(
        "AWS_LAMBDA_FUNCTION_NAME",
        platform.function_name.clone(),
        true,
    );
    set(
        "AWS_LAMBDA_FUNCTION_VERSION",
        platform.function_version.clone(),
        true,
    );
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        config.memory_mb.to_string(),
        false,
    );
    set("AWS_LAMBDA_RUNTIME_API", api.to_owned(), false);
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", platform.function_name),
        true,
    );
    set(
        "AWS_LAMBDA_LOG_STREAM_NAME",
        super::ids::log_stream_name(&platform.function_version),
        true,
    );
    set(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "on-demand".to_owned(),
        true,
    );
    set("TZ", ":UTC".to_owned(), true);
    set("LANG", "en_US.UTF-8".to_owned(), true);
    set(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
        true,
    );
    set("LD_LIBRARY_PATH", LD_LIBRARY_PATH.to_owned(), true);
    if function {
        set("_HANDLER", platform.handler.clone(), true);
        let task_root = config
            .function
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/var/task".to_owned());
        set("LAMBDA_TASK_ROOT", task_root, true);
        set("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned(), true);
        set("AWS_EXECUTION_ENV", EXECUTION_ENV.to_owned(), true);
    }
    let mut all = config.env.clone();
    all.extend(env);
    all
}

/// A started process (its process group has its pid). Dropping it SIGKILLs the group.
#[derive(Debug)]
pub(crate) struct Process {
    pub name: String,
    pub key: ProcessKey,
    pgid: Pid,
}

impl Process {
    /// Starts `path` as `key` with exactly `env`; a watcher records its end in `shared` for
    /// environment `generation`.
    ///
    /// # Errors
    /// When the output file or the process cannot be created.
    pub(crate) fn spawn(
        name: &str,
        key: ProcessKey,
        path: &Path,
        env: &[(String, String)],
        logs: Option<&Path>,
        shared: &Arc<Shared>,
        generation: u64,
    ) -> anyhow::Result<Process> {
        let (stdout, stderr) = output(name, logs)?;
        let mut command = Command::new(path);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = path.parent() {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let pid = child.id().context("the process exited at once")?;
        let pgid = Pid::from_raw(i32::try_from(pid)?);
        let watcher_shared = Arc::clone(shared);
        let watcher_key = key.clone();
        let watcher_name = name.to_owned();
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let info = match child.wait().await {
                Ok(status) => ExitInfo {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            tracing::info!(name = watcher_name, code = ?info.code, signal = ?info.signal, "process ended");
            watcher_shared.update(|state| {
                if state.generation == generation {
                    state.exits.insert(watcher_key, info);
                }
            });
        });
        tracing::info!(name, pid, "process started");
        Ok(Process {
            name: name.to_owned(),
            key,
            pgid,
        })
    }

    /// Sends `signal` to the process group (a group that is gone is not an error).
    pub(crate) fn signal(&self, signal: Signal) {
        if let Err(e) = killpg(self.pgid, signal)
            && e != nix::errno::Errno::ESRCH
        {
            tracing::warn!(name = self.name, %signal, error = %e, "signal failed");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

/// stdout and stderr for a process: lambda-sim's stderr, or `DIR/<name>.log`.
fn output(name: &str, logs: Option<&Path>) -> anyhow::Result<(Stdio, Stdio)> {
    use std::os::fd::AsFd;
    let fd = match logs {
        Some(dir) => {
            let path = dir.join(format!("{name}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            std::os::fd::OwnedFd::from(file)
        }
        None => std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stderr")?,
    };
    let second = fd.try_clone().context("duplicating the output")?;
    Ok((Stdio::from(fd), Stdio::from(second)))
}

/// The name of a signal number (`SIGTERM`), for reports.
pub(crate) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
