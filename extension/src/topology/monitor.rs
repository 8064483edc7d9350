//! Monitoring: the heartbeat, checks on demand after a failure, and applying each `hello` to
//! the topology (the primary by `electionId`/`setVersion`, members learnt from `hosts`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{
    Failure, MIN_CHECK_INTERVAL, SHUTDOWN_CODES, Server, Topology, TopologyKind, parse_address,
};
use crate::config::HostPort;
use crate::pool::CheckoutError;
use crate::upstream::handshake::{HelloReply, ServerKind, recheck_command};
use crate::upstream::reply_ok;

impl Topology {
    /// Reports what a request met on `address`, so the next request finds a working member.
    pub fn report(self: &Arc<Self>, address: &HostPort, failure: Failure) {
        let Some(server) = self.server(address) else {
            return;
        };
        if failure == Failure::ConnectionLost {
            tracing::debug!(%address, "an upstream connection was lost mid-request: re-checking the member");
            tokio::spawn(Arc::clone(self).check(server));
            return;
        }
        let clear = match failure {
            Failure::ConnectionLost => false,
            Failure::Network => true,
            Failure::StateChange(code) => SHUTDOWN_CODES.contains(&code),
        };
        tracing::debug!(%address, ?failure, "marking member unknown");
        self.mark_unknown(&server, format!("{failure:?}"));
        if clear {
            server.pool.clear();
        }
        self.request_check();
    }

    fn mark_unknown(&self, server: &Server, error: String) {
        {
            let mut s = server.lock();
            s.kind = None;
            s.last_error = Some(error);
        }
        {
            let mut state = self.lock();
            if state.primary.as_ref() == Some(&server.address) {
                state.primary = None;
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Asks the monitor to check members now.
    pub fn request_check(&self) {
        self.check_now.notify_one();
    }

    pub(super) fn check_all(self: &Arc<Self>) {
        for server in self.servers() {
            tokio::spawn(Arc::clone(self).check(server));
        }
    }

    pub(super) async fn monitor(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.check_now.notified() => {}
                () = tokio::time::sleep(self.options.heartbeat_frequency) => {}
            }
            self.check_all();
            // Coalesce bursts of requests.
            tokio::time::sleep(MIN_CHECK_INTERVAL).await;
        }
    }

    /// Runs `hello` on a pooled connection of `server` and applies the reply.
    async fn check(self: Arc<Self>, server: Arc<Server>) {
        if server.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let recent = server
            .lock()
            .last_check
            .is_some_and(|t| t.elapsed() < MIN_CHECK_INTERVAL);
        if !recent {
            let started = Instant::now();
            server.lock().last_check = Some(started);
            let limit = self.connector.connect_timeout();
            let deadline = started + limit.saturating_mul(2);
            match server.pool.check_out(deadline).await {
                Ok(mut conn) => {
                    let hello = match conn.take_fresh_hello(started) {
                        Some(hello) => Ok(hello),
                        None => match conn.command(&recheck_command(), limit).await {
                            Ok(reply) if reply_ok(&reply) => HelloReply::parse(&reply)
                                .map(Arc::new)
                                .map_err(|e| e.to_string()),
                            Ok(reply) => Err(format!(
                                "hello failed: {}",
                                reply.get_str("errmsg").unwrap_or("no errmsg")
                            )),
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    drop(conn);
                    match hello {
                        Ok(hello) => self.apply(&server, hello),
                        Err(e) => {
                            self.mark_unknown(&server, e);
                            server.pool.clear();
                        }
                    }
                }
                Err(CheckoutError::Connect(e)) if e.refused_by().is_some() => {
                    // The member is up and refuses us for good: keep what its `hello` says, so
                    // drivers complete their handshake and get the refusal on their first
                    // command instead of a server selection timeout.
                    if let Some(hello) = e.refused_by() {
                        self.apply(&server, Arc::clone(hello));
                    }
                }
                Err(e) => self.mark_unknown(&server, e.to_string()),
            }
        }
        server.checking.store(false, Ordering::Release);
    }

    /// Applies a member's `hello` to the topology.
    fn apply(self: &Arc<Self>, server: &Arc<Server>, hello: Arc<HelloReply>) {
        let mut new_members = Vec::new();
        let mut removed = Vec::new();
        let mut demoted = None;
        {
            let mut state = self.lock();
            match hello.kind {
                ServerKind::Mongos => {
                    if state.kind == TopologyKind::Unknown {
                        state.kind = TopologyKind::Sharded;
                    }
                }
                ServerKind::Standalone => {
                    if state.kind == TopologyKind::Unknown && state.servers.len() == 1 {
                        state.kind = TopologyKind::Single;
                    }
                }
                ServerKind::Primary | ServerKind::Secondary | ServerKind::OtherMember => {
                    let wanted = self
                        .options
                        .replica_set
                        .as_ref()
                        .or(state.set_name.as_ref());
                    if wanted.is_some_and(|w| Some(w) != hello.set_name.as_ref()) {
                        tracing::warn!(address = %server.address, set_name = ?hello.set_name, expected = ?wanted, "member of another replica set: ignored");
                        drop(state);
                        self.mark_unknown(server, "member of another replica set".into());
                        return;
                    }
                    state.kind = TopologyKind::ReplicaSet;
                    state.set_name.clone_from(&hello.set_name);
                    if hello.kind == ServerKind::Primary {
                        let election = (hello.election_id, hello.set_version);
                        if state.max_election.is_some_and(|max| election < max) {
                            tracing::info!(address = %server.address, "ignoring a stale primary (older electionId/setVersion)");
                            drop(state);
                            self.mark_unknown(server, "stale primary".into());
                            return;
                        }
                        state.max_election = Some(election);
                        if let Some(old) = state.primary.replace(server.address.clone())
                            && old != server.address
                        {
                            demoted = state.servers.get(&old).cloned();
                        }
                    } else if state.primary.as_ref() == Some(&server.address) {
                        state.primary = None;
                    }
                    let listed: Vec<HostPort> = hello
                        .hosts
                        .iter()
                        .filter_map(|h| parse_address(h))
                        .collect();
                    for address in &listed {
                        if !state.servers.contains_key(address) {
                            new_members.push(address.clone());
                        }
                    }
                    // The primary's member list is authoritative: seeds it does not name (e.g.
                    // IP literals for members that call themselves by host name) are dropped.
                    if hello.kind == ServerKind::Primary && !listed.is_empty() {
                        let gone: Vec<HostPort> = state
                            .servers
                            .keys()
                            .filter(|a| !listed.contains(a))
                            .cloned()
                            .collect();
                        for address in gone {
                            if let Some(server) = state.servers.remove(&address) {
                                removed.push(server);
                            }
                        }
                    }
                }
            }
        }
        {
            let mut s = server.lock();
            s.kind = Some(hello.kind);
            s.hello = Some(Arc::clone(&hello));
            s.last_error = None;
        }
        if let Some(old) = demoted {
            let mut s = old.lock();
            if s.kind == Some(ServerKind::Primary) {
                s.kind = None;
                s.last_error = Some("a newer primary was elected".into());
            }
        }
        for server in removed {
            tracing::debug!(address = %server.address, "member not in the primary's host list: removed");
            server.pool.close();
        }
        for address in new_members {
            let member = self.add_server(address);
            tokio::spawn(Arc::clone(self).check(member));
        }
        server.pool.fill_to_min();
        self.changed.send_modify(|v| *v += 1);
    }
}
