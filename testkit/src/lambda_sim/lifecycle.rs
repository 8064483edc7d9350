//! One execution environment through Lambda's phases: Init (extensions start and register,
//! then the runtime starts; Init ends when the runtime and every extension wait in `/next`),
//! and Shutdown (SIGTERM to the runtime, SHUTDOWN to subscribed extensions, SIGKILL at the
//! deadline). Invocations and freezes are in [`super::invoke`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::time::Instant;

use super::ids;
use super::options::Config;
use super::report::{FunctionEnd, InitLine, PhaseError, ShutdownLine, Status, millis};
use super::sandbox::{self, Process};
use super::state::{ProcessKey, Shared, State};

/// Lambda's limit for Init.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);
/// The Shutdown phase's budget with external extensions.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(2000);
/// How long the runtime gets after SIGTERM.
pub const RUNTIME_TERM_GRACE: Duration = Duration::from_millis(300);

/// The platform's own errors carry this source.
pub(crate) const SIM: &str = "lambda-sim";

pub(crate) fn sim_error(error_type: &str, message: String) -> PhaseError {
    PhaseError {
        source: SIM.to_owned(),
        error_type: error_type.to_owned(),
        message,
    }
}

/// The running processes of one environment.
#[derive(Debug)]
pub(crate) struct Environment {
    pub shared: Arc<Shared>,
    pub config: Arc<Config>,
    pub api: String,
    pub extensions: Vec<Process>,
    pub function: Option<Process>,
}

/// A started process that ended: the error it means for Init or an invocation.
pub(crate) fn crash(state: &State, processes: &[&Process]) -> Option<PhaseError> {
    processes.iter().find_map(|p| {
        let exit = state.exited(&p.key)?;
        let how = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => sandbox::signal_name(signal),
            (None, None) => "unknown status".to_owned(),
        };
        Some(match p.key {
            ProcessKey::Function => {
                sim_error("Runtime.ExitError", format!("the runtime exited ({how})"))
            }
            ProcessKey::Extension(_) => PhaseError {
                source: p.name.clone(),
                error_type: "Extension.Crash".to_owned(),
                message: format!("extension {} exited ({how})", p.name),
            },
        })
    })
}

impl Environment {
    /// Every process, extensions first.
    pub(crate) fn processes(&self) -> Vec<&Process> {
        self.extensions
            .iter()
            .chain(self.function.as_ref())
            .collect()
    }

    /// Runs Init: returns the environment (to shut down in every case) and the init line.
    pub(crate) async fn init(
        shared: Arc<Shared>,
        config: Arc<Config>,
        api: String,
    ) -> (Environment, InitLine) {
        let started = Instant::now();
        let files: HashSet<String> = config.extensions.iter().map(|e| e.name.clone()).collect();
        let generation = shared.reset(files);
        let mut env = Environment {
            shared,
            config,
            api,
            extensions: Vec::new(),
            function: None,
        };
        let result = env.run_init(started + INIT_LIMIT, generation).await;
        let status = match &result {
            Ok(()) => Status::Ok,
            Err(e) if e.error_type == "Sandbox.Timedout" => Status::Timeout,
            Err(_) => Status::Error,
        };
        env.shared.update(|state| state.init_done = true);
        let line = InitLine {
            ms: millis(started.elapsed()),
            status,
            error: result.err(),
        };
        (env, line)
    }

    async fn run_init(&mut self, deadline: Instant, generation: u64) -> Result<(), PhaseError> {
        let platform = self.shared.platform.clone();
        let extension_env = sandbox::environment(&self.config, &platform, &self.api, false);
        for file in &self.config.extensions {
            let process = Process::spawn(
                &file.name,
                ProcessKey::Extension(file.name.clone()),
                &file.path,
                &extension_env,
                self.config.logs.as_deref(),
                &self.shared,
                generation,
            )
            .map_err(|e| PhaseError {
                source: file.name.clone(),
                error_type: "Extension.LaunchError".to_owned(),
                message: format!("{e:#}"),
            })?;
            self.extensions.push(process);
        }
        // Lambda starts the runtime only after every extension registered.
        let names: Vec<String> = self.extensions.iter().map(|p| p.name.clone()).collect();
        let extensions: Vec<&Process> = self.extensions.iter().collect();
        let registered = self
            .shared
            .wait_for(deadline, |state| {
                if let Some(error) = &state.fatal {
                    return Some(Err(error.clone()));
                }
                if let Some(error) = crash(state, &extensions) {
                    return Some(Err(error));
                }
                let all = names
                    .iter()
                    .all(|n| state.agents.iter().any(|a| a.external && &a.name == n));
                all.then_some(Ok(()))
            })
            .await;
        match registered {
            Some(result) => result?,
            None => {
                let missing: Vec<String> = {
                    let state = self.shared.lock();
                    names
                        .iter()
                        .filter(|n| !state.agents.iter().any(|a| &a.name == *n))
                        .cloned()
                        .collect()
                };
                return Err(sim_error(
                    "Sandbox.Timedout",
                    format!(
                        "Init timed out after {} s: not registered: {}",
                        INIT_LIMIT.as_secs(),
                        missing.join(", ")
                    ),
                ));
            }
        }
        let function_env = sandbox::environment(&self.config, &platform, &self.api, true);
        let function = Process::spawn(
            "function",
            ProcessKey::Function,
            &self.config.function,
            &function_env,
            self.config.logs.as_deref(),
            &self.shared,
            generation,
        )
        .map_err(|e| sim_error("Runtime.InvalidEntrypoint", format!("{e:#}")))?;
        self.function = Some(function);
        let processes = self.processes();
        let done = self
            .shared
            .wait_for(deadline, |state| {
                if let Some(error) = &state.fatal {
                    return Some(Err(error.clone()));
                }
                if let Some(error) = crash(state, &processes) {
                    return Some(Err(error));
                }
                let ready = state.runtime.waiting && state.agents.iter().all(|a| a.ready);
                ready.then_some(Ok(()))
            })
            .await;
        match done {
            Some(result) => result,
            None => Err(sim_error(
                "Sandbox.Timedout",
                format!(
                    "Init timed out after {} s: the runtime and every extension must call /next",
                    INIT_LIMIT.as_secs()
                ),
            )),
        }
    }

    /// Runs Shutdown with `reason` and returns the shutdown line.
    pub(crate) async fn shutdown(self, reason: &str) -> ShutdownLine {
        let started = Instant::now();
        let deadline = started + SHUTDOWN_BUDGET;
        let deadline_ms = ids::epoch_ms() + millis_u64(SHUTDOWN_BUDGET);
        for process in self.processes() {
            process.signal(Signal::SIGCONT);
        }
        let mut function_killed = false;
        if let Some(function) = &self.function {
            let key = ProcessKey::Function;
            if self.shared.lock().exited(&key).is_none() {
                function.signal(Signal::SIGTERM);
                let grace = (started + RUNTIME_TERM_GRACE).min(deadline);
                let ended = self
                    .shared
                    .wait_for(grace, |state| state.exited(&key))
                    .await;
                if ended.is_none() {
                    function.signal(Signal::SIGKILL);
                    function_killed = true;
                }
            }
        }
        // SHUTDOWN to every subscribed extension whose process still runs.
        let subscribed: Vec<String> = self.shared.update(|state| {
            let mut names = Vec::new();
            for agent in state.agents.iter_mut().filter(|a| a.shutdown) {
                let event = json!({
                    "eventType": "SHUTDOWN",
                    "shutdownReason": reason,
                    "deadlineMs": deadline_ms,
                });
                agent.ready = false;
                let _ = agent.sender.send(event);
                names.push(agent.name.clone());
            }
            names
        });
        let waited: Vec<&Process> = self
            .extensions
            .iter()
            .filter(|p| subscribed.contains(&p.name))
            .collect();
        self.shared
            .wait_for(deadline, |state| {
                waited
                    .iter()
                    .all(|p| state.exited(&p.key).is_some())
                    .then_some(())
            })
            .await;
        let mut killed = Vec::new();
        {
            let state = self.shared.lock();
            for process in &self.extensions {
                if state.exited(&process.key).is_none() {
                    process.signal(Signal::SIGKILL);
                    killed.push(process.name.clone());
                }
            }
        }
        // The watchers record the ends of what was just killed.
        let everyone = self.processes();
        self.shared
            .wait_for(Instant::now() + Duration::from_secs(2), |state| {
                everyone
                    .iter()
                    .all(|p| state.exited(&p.key).is_some())
                    .then_some(())
            })
            .await;
        let state = self.shared.lock();
        let exits: BTreeMap<String, Option<i32>> = self
            .extensions
            .iter()
            .map(|p| (p.name.clone(), state.exited(&p.key).and_then(|e| e.code)))
            .collect();
        let function = match state.exited(&ProcessKey::Function) {
            Some(exit) => FunctionEnd {
                code: exit.code,
                signal: exit.signal.map(sandbox::signal_name),
            },
            None => FunctionEnd {
                code: None,
                signal: function_killed.then(|| "SIGKILL".to_owned()),
            },
        };
        let exit_errors = state.exit_errors.clone();
        drop(state);
        ShutdownLine {
            ms: millis(started.elapsed()),
            reason: reason.to_owned(),
            exits,
            killed,
            function,
            exit_errors,
        }
    }
}

pub(crate) fn millis_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
