//! `mongo-pool check`: the diagnostic a user runs when something does not work. It reads the
//! same configuration as the extension and walks the path a connection takes, one step at a
//! time, printing each with its time: resolve `mongodb+srv`, TCP, TLS, `hello`, MONGODB-AWS,
//! discovery of the primary (or the mongos routers), `ping`, `connectionStatus` (which names
//! the authenticated user). On a failure it names the step and the cause it found.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use bson::doc;
use mongo_pool_wire::inspect::ReadPreferenceMode;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Seeds};
use crate::freeze::FreezeDetector;
use crate::metrics::Metrics;
use crate::topology::{Topology, TopologyKind, srv};
use crate::upstream::connect::{ConnectError, Connector};
use crate::upstream::reply_ok;

/// Runs every step, printing to `out`. Returns whether all of them passed.
///
/// # Errors
/// Only when `out` cannot be written.
pub async fn run(
    config: &Config,
    connector: Arc<Connector>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut check = Check {
        out,
        started: Instant::now(),
    };
    let uri = &config.uri;
    check.ok(
        "config",
        Instant::now(),
        &format!(
            "{} (tls {}, maxPoolSize {})",
            uri.seeds,
            if uri.tls { "on" } else { "off" },
            uri.max_pool_size
        ),
    )?;
    if !uri.function_options.is_empty() {
        check.note(&format!(
            "options for the function's own driver, ignored here: {}",
            uri.function_options.join(", ")
        ))?;
    }
    if !uri.unknown_options.is_empty() {
        check.note(&format!(
            "options mongo-pool does not know, ignored: {}",
            uri.unknown_options_explained()
        ))?;
    }

    // The seed list.
    let step = Instant::now();
    let seeds = match &uri.seeds {
        Seeds::List(hosts) => hosts.clone(),
        Seeds::Srv { host, service_name } => {
            match srv::resolve_seedlist(connector.resolver(), host, service_name, uri).await {
                Ok(list) => {
                    let names: Vec<String> = list.hosts.iter().map(ToString::to_string).collect();
                    let set = list
                        .replica_set
                        .as_deref()
                        .map(|s| format!(", replicaSet={s}"))
                        .unwrap_or_default();
                    check.ok(
                        "srv",
                        step,
                        &format!("{} hosts: {}{set}", names.len(), names.join(", ")),
                    )?;
                    list.hosts
                }
                Err(e) => return check.fail("srv", step, &e.to_string()),
            }
        }
    };
    let Some(first) = seeds.first().cloned() else {
        return check.fail("srv", step, "no hosts to connect to");
    };

    // One connection, step by step.
    let step = Instant::now();
    let mut conn = match connector.open(&first, 0).await {
        Ok(conn) => conn,
        Err(e) => {
            let name = match &e {
                ConnectError::Resolve { .. } => "resolve",
                ConnectError::Timeout { stage, .. } | ConnectError::Network { stage, .. } => {
                    stage_name(*stage)
                }
                _ => "connect",
            };
            return check.fail(name, step, &e.to_string());
        }
    };
    check.ok(
        "connect",
        step,
        &format!(
            "{first} ({})",
            if uri.tls {
                "TCP + TLS, certificate verified"
            } else {
                "TCP, no TLS"
            }
        ),
    )?;
    let step = Instant::now();
    let hello = match connector.handshake(&mut conn).await {
        Ok(hello) => hello,
        Err(e) => return check.fail("hello", step, &e.to_string()),
    };
    let what = match (&hello.set_name, hello.kind) {
        (Some(set), kind) => format!("replica set {set}, this member is {kind:?}"),
        (None, kind) => format!("{kind:?}"),
    };
    check.ok(
        "hello",
        step,
        &format!(
            "{what}, wire versions {}..={}",
            hello.min_wire_version, hello.max_wire_version
        ),
    )?;
    let step = Instant::now();
    match connector.authenticate(&mut conn).await {
        Ok(source) => check.ok(
            "auth",
            step,
            &format!("MONGODB-AWS with credentials from {source:?}"),
        )?,
        Err(e) => return check.fail("auth", step, &e.to_string()),
    }
    drop(conn);

    // The deployment, through the pool as the extension uses it.
    let step = Instant::now();
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let freeze = FreezeDetector::new(Arc::clone(&metrics));
    let topology =
        match Topology::start(uri, connector, freeze, metrics, shutdown.child_token()).await {
            Ok(t) => t,
            Err(e) => return check.fail("topology", step, &e.to_string()),
        };
    let deadline = Instant::now() + uri.server_selection_timeout;
    let server = match topology.select(ReadPreferenceMode::Primary, deadline).await {
        Ok(server) => server,
        Err(e) => {
            topology.close();
            return check.fail("topology", step, &e.to_string());
        }
    };
    topology
        .wait_checked(Instant::now() + limit_for_members(uri))
        .await;
    let found = match topology.kind() {
        TopologyKind::Sharded => {
            format!("sharded cluster; mongos routers: {}", topology.describe())
        }
        _ => format!(
            "primary {}; members: {}",
            server.address,
            topology.describe()
        ),
    };
    check.ok("topology", step, &found)?;

    let step = Instant::now();
    let limit = uri.connect_timeout;
    let mut conn = match server.pool.check_out(Instant::now() + limit).await {
        Ok(conn) => conn,
        Err(e) => {
            topology.close();
            return check.fail("ping", step, &e.to_string());
        }
    };
    match conn
        .command(&doc! { "ping": 1, "$db": "admin" }, limit)
        .await
    {
        Ok(reply) if reply_ok(&reply) => check.ok("ping", step, &server.address.to_string())?,
        Ok(reply) => {
            topology.close();
            return check.fail(
                "ping",
                step,
                reply.get_str("errmsg").unwrap_or("ping failed"),
            );
        }
        Err(e) => {
            topology.close();
            return check.fail("ping", step, &e.to_string());
        }
    }
    let step = Instant::now();
    let status = conn
        .command(&doc! { "connectionStatus": 1, "$db": "admin" }, limit)
        .await;
    drop(conn);
    topology.close();
    match status {
        Ok(reply) if reply_ok(&reply) => {
            let users = reply
                .get_document("authInfo")
                .and_then(|a| a.get_array("authenticatedUsers"))
                .map(|users| {
                    users
                        .iter()
                        .filter_map(|u| u.as_document()?.get_str("user").ok().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if users.is_empty() {
                return check.fail(
                    "connectionStatus",
                    step,
                    "the server reports no authenticated user",
                );
            }
            check.ok(
                "connectionStatus",
                step,
                &format!("authenticated as {}", users.join(", ")),
            )?;
        }
        Ok(reply) => {
            return check.fail(
                "connectionStatus",
                step,
                reply.get_str("errmsg").unwrap_or("failed"),
            );
        }
        Err(e) => return check.fail("connectionStatus", step, &e.to_string()),
    }
    writeln!(
        check.out,
        "check passed in {} ms",
        check.started.elapsed().as_millis()
    )?;
    Ok(true)
}

fn limit_for_members(uri: &crate::config::UriOptions) -> std::time::Duration {
    uri.connect_timeout.saturating_mul(2)
}

fn stage_name(stage: crate::upstream::connect::Stage) -> &'static str {
    use crate::upstream::connect::Stage;
    match stage {
        Stage::Resolve => "resolve",
        Stage::Tcp => "tcp",
        Stage::Tls => "tls",
        Stage::Hello => "hello",
        Stage::Auth => "auth",
    }
}

struct Check<'a> {
    out: &'a mut dyn Write,
    started: Instant,
}

impl Check<'_> {
    fn ok(&mut self, step: &str, since: Instant, detail: &str) -> std::io::Result<()> {
        writeln!(
            self.out,
            "  {step:<17} ok     {:>6} ms  {detail}",
            since.elapsed().as_millis()
        )
    }

    fn note(&mut self, detail: &str) -> std::io::Result<()> {
        writeln!(self.out, "  {:<17} note             {detail}", "")
    }

    fn fail(&mut self, step: &str, since: Instant, cause: &str) -> std::io::Result<bool> {
        writeln!(
            self.out,
            "  {step:<17} FAILED {:>6} ms  {cause}",
            since.elapsed().as_millis()
        )?;
        writeln!(self.out, "check failed at step {step}")?;
        Ok(false)
    }
}
