//! The Invoke phase and the freeze between invocations. An invocation delivers the event to
//! the runtime (with every `Lambda-Runtime-*` header) and INVOKE to subscribed extensions,
//! waits for the runtime's response (`ms`) and for every extension to wait in `/next` again
//! (`post_runtime_ms`), all within the function's timeout. A timeout or a crashed process
//! calls for a reset (the caller shuts the environment down and starts a fresh one).

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::time::Instant;

use super::ids;
use super::lifecycle::{Environment, crash, millis_u64, sim_error};
use super::report::{InvokeLine, PhaseError, Status, millis};
use super::state::{Invocation, Outcome, RuntimeEvent};

/// Why the environment must be replaced after an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reset {
    /// The invocation timed out: SHUTDOWN reason `timeout`.
    Timeout,
    /// A process crashed: SHUTDOWN reason `failure`.
    Failure,
}

impl Reset {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Reset::Timeout => "timeout",
            Reset::Failure => "failure",
        }
    }
}

enum Waited {
    Answered(Outcome),
    Crashed(PhaseError),
}

impl Environment {
    /// Delivers invocation `n`; returns its line and whether the environment must be reset.
    pub(crate) async fn invoke(&self, n: u32) -> (InvokeLine, Option<Reset>) {
        let request_id = ids::uuid_v4();
        let timeout = self.config.timeout;
        let processes = self.processes();
        let timed_out = |ms: f64, request_id: String, what: &str| {
            let line = InvokeLine {
                n,
                ms,
                post_runtime_ms: None,
                status: Status::Timeout,
                response: None,
                request_id,
                error: Some(sim_error(
                    "Sandbox.Timedout",
                    format!("Task timed out after {} ms ({what})", millis_u64(timeout)),
                )),
            };
            (line, Some(Reset::Timeout))
        };
        let crashed = |ms: f64, request_id: String, error: PhaseError| {
            let line = InvokeLine {
                n,
                ms,
                post_runtime_ms: None,
                status: Status::Error,
                response: None,
                request_id,
                error: Some(error),
            };
            (line, Some(Reset::Failure))
        };
        // The runtime waits in /next after Init and after each invocation.
        let waiting = self
            .shared
            .wait_for(Instant::now() + timeout, |state| {
                if let Some(error) = crash(state, &processes) {
                    return Some(Err(error));
                }
                state.runtime.waiting.then_some(Ok(()))
            })
            .await;
        match waiting {
            None => return timed_out(0.0, request_id, "the runtime never called /next"),
            Some(Err(error)) => return crashed(0.0, request_id, error),
            Some(Ok(())) => {}
        }
        let delivered = Instant::now();
        let deadline = delivered + timeout;
        let deadline_ms = ids::epoch_ms() + millis_u64(timeout);
        let trace_id = ids::trace_id();
        let arn = self.shared.platform.arn.clone();
        self.shared.update(|state| {
            state.runtime.waiting = false;
            state.runtime.current = Some(Invocation {
                request_id: request_id.clone(),
                outcome: None,
            });
            let _ = state.runtime.sender.send(RuntimeEvent {
                request_id: request_id.clone(),
                deadline_ms,
                trace_id: trace_id.clone(),
                body: self.config.event(n),
            });
            let event = json!({
                "eventType": "INVOKE",
                "deadlineMs": deadline_ms,
                "requestId": request_id,
                "invokedFunctionArn": arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": trace_id},
            });
            for agent in state.agents.iter_mut().filter(|a| a.invoke) {
                agent.ready = false;
                let _ = agent.sender.send(event.clone());
            }
        });
        let waited = self
            .shared
            .wait_for(deadline, |state| {
                let current = state.runtime.current.as_ref()?;
                if let Some(outcome) = &current.outcome {
                    return Some(Waited::Answered(outcome.clone()));
                }
                crash(state, &processes).map(Waited::Crashed)
            })
            .await;
        let outcome = match waited {
            None => {
                let ms = millis(delivered.elapsed());
                return timed_out(ms, request_id, "no response from the runtime");
            }
            Some(Waited::Crashed(error)) => {
                return crashed(millis(delivered.elapsed()), request_id, error);
            }
            Some(Waited::Answered(outcome)) => outcome,
        };
        let (answered_at, status, response, error) = match outcome {
            Outcome::Response { body, at } => (at, Status::Ok, body, None),
            Outcome::Error {
                error_type,
                body,
                at,
            } => {
                let message = body
                    .get("errorMessage")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let error_type = error_type
                    .or_else(|| {
                        body.get("errorType")
                            .and_then(|t| t.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "Runtime.Unknown".to_owned());
                let error = PhaseError {
                    source: "function".to_owned(),
                    error_type,
                    message,
                };
                (at, Status::Error, body, Some(error))
            }
        };
        let ms = millis(answered_at.saturating_duration_since(delivered));
        // Every extension back in /next (the runtime too, before anything is frozen).
        let back = self
            .shared
            .wait_for(deadline, |state| {
                if let Some(error) = crash(state, &processes) {
                    return Some(Err(error));
                }
                if !state.agents.iter().all(|a| a.ready) {
                    return None;
                }
                let last = state
                    .agents
                    .iter()
                    .filter_map(|a| a.ready_at)
                    .max()
                    .unwrap_or(answered_at);
                state.runtime.waiting.then_some(Ok(last))
            })
            .await;
        let post_runtime_ms = match back {
            None => return timed_out(ms, request_id, "extensions did not call /next in time"),
            Some(Err(error)) => return crashed(ms, request_id, error),
            Some(Ok(last)) => millis(last.saturating_duration_since(answered_at)),
        };
        let line = InvokeLine {
            n,
            ms,
            post_runtime_ms: Some(post_runtime_ms),
            status,
            response: Some(response),
            request_id,
            error,
        };
        (line, None)
    }

    /// Freezes every process (SIGSTOP to each process group) for `config.freeze`, then thaws
    /// them (SIGCONT). Nothing runs meanwhile, as in Lambda between invocations.
    pub(crate) async fn freeze(&self) {
        if self.config.freeze.is_zero() {
            return;
        }
        let processes = self.processes();
        for process in &processes {
            process.signal(Signal::SIGSTOP);
        }
        tokio::time::sleep(self.config.freeze).await;
        for process in &processes {
            process.signal(Signal::SIGCONT);
        }
    }
}
