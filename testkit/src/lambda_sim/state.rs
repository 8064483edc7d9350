//! The simulated platform's state: registered extensions ("agents"), the runtime's long poll,
//! the current invocation, the first fatal error, and how each process ended. The HTTP handlers
//! (`api`) change it; the lifecycle (`lifecycle`) waits on it with [`Shared::wait_for`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::report::PhaseError;

/// At most this many extensions (external and internal) may register, as in Lambda.
pub const MAX_EXTENSIONS: usize = 10;

/// What the platform tells registrations and events about the function.
#[derive(Debug, Clone)]
pub(crate) struct Platform {
    pub function_name: String,
    pub function_version: String,
    pub handler: String,
    pub account_id: String,
    pub arn: String,
}

/// Which process a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ProcessKey {
    Function,
    Extension(String),
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// A registered extension.
#[derive(Debug)]
pub(crate) struct Agent {
    pub id: String,
    pub name: String,
    pub external: bool,
    pub invoke: bool,
    pub shutdown: bool,
    /// Waiting in `/extension/event/next` (and no event delivered since).
    pub ready: bool,
    pub ready_at: Option<Instant>,
    pub sender: mpsc::UnboundedSender<Value>,
    pub receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>>,
}

/// An event for the runtime's `/runtime/invocation/next`.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeEvent {
    pub request_id: String,
    pub deadline_ms: u64,
    pub trace_id: String,
    pub body: Bytes,
}

/// How the runtime answered an invocation.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Response {
        body: Value,
        at: Instant,
    },
    Error {
        error_type: Option<String>,
        body: Value,
        at: Instant,
    },
}

/// The invocation in flight.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub request_id: String,
    pub outcome: Option<Outcome>,
}

/// The runtime's side of the Runtime API.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// Waiting in `/runtime/invocation/next` (and no event delivered since).
    pub waiting: bool,
    pub sender: mpsc::UnboundedSender<RuntimeEvent>,
    pub receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<RuntimeEvent>>>,
    pub current: Option<Invocation>,
}

impl Runtime {
    fn new() -> Runtime {
        let (sender, receiver) = mpsc::unbounded_channel();
        Runtime {
            waiting: false,
            sender,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            current: None,
        }
    }
}

/// One execution environment's state; replaced by [`Shared::reset`] when Lambda would start a
/// fresh environment.
#[derive(Debug)]
pub(crate) struct State {
    /// Increases with every reset; process watchers only record into their own generation.
    pub generation: u64,
    /// File names of the started extensions: a registration under one of them is external.
    pub extension_files: HashSet<String>,
    /// Closed when the runtime first calls `/runtime/invocation/next` (the end of Init).
    pub registration_open: bool,
    /// Init completed: `init/error` is refused from now on.
    pub init_done: bool,
    pub agents: Vec<Agent>,
    pub runtime: Runtime,
    /// The first error that fails Init (Lambda keeps the first fatal error).
    pub fatal: Option<PhaseError>,
    /// Errors reported through `/extension/exit/error`.
    pub exit_errors: Vec<PhaseError>,
    pub exits: HashMap<ProcessKey, ExitInfo>,
}

impl State {
    fn new(generation: u64, extension_files: HashSet<String>) -> State {
        State {
            generation,
            extension_files,
            registration_open: true,
            init_done: false,
            agents: Vec::new(),
            runtime: Runtime::new(),
            fatal: None,
            exit_errors: Vec::new(),
            exits: HashMap::new(),
        }
    }

    /// Records the first fatal error; later ones are dropped.
    pub fn fail(&mut self, error: PhaseError) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
    }

    pub fn agent_mut(&mut self, id: &str) -> Option<&mut Agent> {
        self.agents.iter_mut().find(|a| a.id == id)
    }

    pub fn exited(&self, key: &ProcessKey) -> Option<ExitInfo> {
        self.exits.get(key).copied()
    }
}

/// The state behind a lock, with a notification on every change.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Notify,
    pub platform: Platform,
}

impl Shared {
    pub fn new(platform: Platform) -> Shared {
        Shared {
            state: Mutex::new(State::new(0, HashSet::new())),
            changed: Notify::new(),
            platform,
        }
    }

    /// The state, for reading or for a change followed by [`Shared::notify`].
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every [`Shared::wait_for`].
    pub fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Changes the state and wakes the waiters.
    pub fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let result = change(&mut self.lock());
        self.notify();
        result
    }

    /// Starts a fresh environment's state; returns its generation.
    pub fn reset(&self, extension_files: HashSet<String>) -> u64 {
        self.update(|state| {
            let generation = state.generation + 1;
            *state = State::new(generation, extension_files);
            generation
        })
    }

    /// Waits until `check` returns `Some` or `deadline` passes (then `check` decides once
    /// more). Cancel-safe.
    pub async fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = check(&self.lock()) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(&self.lock());
            }
        }
    }
}
