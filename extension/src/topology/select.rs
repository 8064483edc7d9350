//! Server selection: picking a member for a read preference, and waiting (with re-checks) until
//! one fits or the deadline passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongo_pool_wire::inspect::ReadPreferenceMode;

use super::{SelectionError, Server, Topology, TopologyKind};
use crate::upstream::handshake::{HelloReply, ServerKind};

/// What the deployment as a whole supports, from the `hello`s of its data-bearing members: the
/// lowest `maxWireVersion` and limits, the highest `minWireVersion`, and
/// `logicalSessionTimeoutMinutes` only when every one of them reports it (the smallest), as
/// SDAM computes it for a topology. During a rolling upgrade a driver must not be promised
/// what one member cannot do. `None` without a data-bearing member.
pub(crate) fn deployment_hello(hellos: &[Arc<HelloReply>]) -> Option<HelloReply> {
    let data_bearing = |h: &&Arc<HelloReply>| {
        matches!(
            h.kind,
            ServerKind::Primary
                | ServerKind::Secondary
                | ServerKind::Mongos
                | ServerKind::Standalone
        )
    };
    let mut members = hellos.iter().filter(data_bearing);
    let mut out = HelloReply::clone(members.next()?);
    for h in members {
        out.min_wire_version = out.min_wire_version.max(h.min_wire_version);
        out.max_wire_version = out.max_wire_version.min(h.max_wire_version);
        out.max_bson_object_size = out.max_bson_object_size.min(h.max_bson_object_size);
        out.max_message_size_bytes = out.max_message_size_bytes.min(h.max_message_size_bytes);
        out.max_write_batch_size = out.max_write_batch_size.min(h.max_write_batch_size);
        out.logical_session_timeout_minutes = match (
            out.logical_session_timeout_minutes,
            h.logical_session_timeout_minutes,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
    }
    Some(out)
}

impl Topology {
    /// What the downstream handshake copies: [`deployment_hello`] over the members known now.
    /// Waits until a data-bearing member is known, until `deadline`.
    pub async fn any_hello(&self, deadline: Instant) -> Option<Arc<HelloReply>> {
        let mut changes = self.watch();
        loop {
            let hellos: Vec<Arc<HelloReply>> = self
                .servers()
                .iter()
                .filter(|s| s.kind().is_some())
                .filter_map(|s| s.hello())
                .collect();
            if let Some(hello) = deployment_hello(&hellos) {
                return Some(Arc::new(hello));
            }
            if tokio::time::timeout_at(deadline.into(), changes.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    fn pick(&self, mode: ReadPreferenceMode) -> Option<Arc<Server>> {
        let state = self.lock();
        let of_kind = |kinds: &[ServerKind]| -> Vec<Arc<Server>> {
            state
                .servers
                .values()
                .filter(|s| s.kind().is_some_and(|k| kinds.contains(&k)))
                .cloned()
                .collect()
        };
        let least_busy = |mut candidates: Vec<Arc<Server>>| {
            candidates.sort_by_key(|s| s.pool.in_use());
            candidates.into_iter().next()
        };
        let primary = || {
            state
                .primary
                .as_ref()
                .and_then(|p| state.servers.get(p))
                .filter(|s| s.kind() == Some(ServerKind::Primary))
                .cloned()
        };
        match state.kind {
            TopologyKind::Unknown => None,
            TopologyKind::Sharded => least_busy(of_kind(&[ServerKind::Mongos])),
            TopologyKind::Single => least_busy(of_kind(&[ServerKind::Standalone])),
            TopologyKind::ReplicaSet => match mode {
                ReadPreferenceMode::Primary => primary(),
                ReadPreferenceMode::PrimaryPreferred => {
                    primary().or_else(|| least_busy(of_kind(&[ServerKind::Secondary])))
                }
                ReadPreferenceMode::Secondary => least_busy(of_kind(&[ServerKind::Secondary])),
                ReadPreferenceMode::SecondaryPreferred => {
                    least_busy(of_kind(&[ServerKind::Secondary])).or_else(primary)
                }
                ReadPreferenceMode::Nearest => {
                    least_busy(of_kind(&[ServerKind::Primary, ServerKind::Secondary]))
                }
            },
        }
    }

    /// Picks a member for `mode`, waiting (and re-checking members) until `deadline`.
    ///
    /// # Errors
    /// [`SelectionError::Timeout`] with each member's state; [`SelectionError::Closed`].
    pub async fn select(
        &self,
        mode: ReadPreferenceMode,
        deadline: Instant,
    ) -> Result<Arc<Server>, SelectionError> {
        let started = Instant::now();
        let mut changes = self.watch();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(SelectionError::Closed);
            }
            changes.borrow_and_update();
            if let Some(server) = self.pick(mode) {
                return Ok(server);
            }
            self.request_check();
            let wait_until = deadline.min(Instant::now() + Duration::from_millis(500));
            let _ = tokio::time::timeout_at(wait_until.into(), changes.changed()).await;
            if Instant::now() >= deadline {
                if let Some(server) = self.pick(mode) {
                    return Ok(server);
                }
                return Err(SelectionError::Timeout {
                    wanted: mode_name(mode, self.kind()),
                    waited: started.elapsed(),
                    members: self.describe(),
                });
            }
        }
    }

    /// Waits until every member has been checked at least once (or `deadline`).
    pub async fn wait_checked(&self, deadline: Instant) {
        let mut changes = self.watch();
        loop {
            changes.borrow_and_update();
            if self
                .servers()
                .iter()
                .all(|s| s.kind().is_some() || s.last_error().is_some())
            {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), changes.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn mode_name(mode: ReadPreferenceMode, kind: TopologyKind) -> &'static str {
    match (kind, mode) {
        (TopologyKind::Sharded, _) => "mongos",
        (_, ReadPreferenceMode::Primary) => "primary",
        (_, ReadPreferenceMode::PrimaryPreferred) => "primaryPreferred",
        (_, ReadPreferenceMode::Secondary) => "secondary",
        (_, ReadPreferenceMode::SecondaryPreferred) => "secondaryPreferred",
        (_, ReadPreferenceMode::Nearest) => "nearest",
    }
}
