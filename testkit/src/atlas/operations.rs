//! The operations a member is running, as `currentOp` would list them, and the count of those it
//! killed because their client went away. A test reads both on `/status` to show that a
//! cut-off read left nothing running.
//!
//! Since MongoDB 4.2 a server that notices the client of a running `find`, `aggregate`,
//! `getMore`, `count` or `distinct` has disconnected kills the operation (server manual,
//! "Behavior of operations when the client disconnects"); writes run to completion.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use super::cluster::lock;

/// The read commands a server kills when their client disconnects.
pub const KILLED_ON_DISCONNECT: &[&str] = &["find", "aggregate", "getMore", "count", "distinct"];

/// Commands that wait by design and are not listed as running: awaitable hellos of monitors.
const NOT_LISTED: &[&str] = &["hello", "isMaster", "ismaster"];

#[derive(Debug)]
struct Running {
    command: String,
    connection_id: i64,
    started: Instant,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    running: HashMap<u64, Running>,
    killed: BTreeMap<String, u64>,
}

/// One member's running and killed operations.
#[derive(Debug, Default)]
pub struct Operations {
    state: Mutex<State>,
}

/// Removes its operation from the running list when dropped (completed, failed or killed).
#[derive(Debug)]
pub struct OperationGuard<'a> {
    operations: &'a Operations,
    id: Option<u64>,
}

impl Drop for OperationGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.operations.state).running.remove(&id);
        }
    }
}

impl Operations {
    /// Lists `command` as running until the guard drops.
    pub fn begin(&self, command: &str, connection_id: i64) -> OperationGuard<'_> {
        if NOT_LISTED.contains(&command) {
            return OperationGuard {
                operations: self,
                id: None,
            };
        }
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.running.insert(
            id,
            Running {
                command: command.to_owned(),
                connection_id,
                started: Instant::now(),
            },
        );
        OperationGuard {
            operations: self,
            id: Some(id),
        }
    }

    /// Counts one operation killed because its client disconnected.
    pub fn record_killed(&self, command: &str) {
        *lock(&self.state)
            .killed
            .entry(command.to_owned())
            .or_default() += 1;
    }

    /// `{running: [{command, connection_id, running_ms}], killed: N, killed_by_command: {..}}`.
    pub fn status(&self) -> Value {
        let state = lock(&self.state);
        let mut running: Vec<(&u64, &Running)> = state.running.iter().collect();
        running.sort_by_key(|(id, _)| **id);
        let running: Vec<Value> = running
            .into_iter()
            .map(|(_, r)| {
                json!({
                    "command": r.command,
                    "connection_id": r.connection_id,
                    "running_ms": u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        json!({
            "running": running,
            "killed": state.killed.values().sum::<u64>(),
            "killed_by_command": state.killed,
        })
    }
}
