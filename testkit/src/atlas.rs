//! atlas-sim: a local stand-in for a MongoDB Atlas cluster (a replica set or mongos routers)
//! with TLS, MONGODB-AWS authentication, an in-memory store, and fault injection through an
//! HTTP control API. `run` starts every listener, prints the start line, and serves until the
//! shutdown token fires.

mod change_stream;
pub mod cluster;
mod commands;
mod connection;
pub mod control;
mod cursors;
mod failpoint;
mod handshake;
mod operations;
pub mod options;
mod reply;
mod sasl;
mod session;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::aws_auth::{Principal, Verifier};
use crate::{certs, dns};
use cluster::{AuthConfig, Cluster, Member, Settings};
pub use options::{Options, TopologyKind};

/// The line atlas-sim prints on stdout once every listener is up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartLine {
    /// A `mongodb://` URI for the members.
    pub uri: String,
    /// A `mongodb+srv://` URI (only with `--srv`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub srv_uri: Option<String>,
    /// The CA certificate (only with TLS).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ca_file: Option<PathBuf>,
    /// `127.0.0.1:port` of each member.
    pub members: Vec<String>,
    /// The primary's `127.0.0.1:port` (null when sharded).
    pub primary: Option<String>,
    /// Base URL of the control API.
    pub control: String,
    /// `127.0.0.1:port` of the DNS server (only with `--srv`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dns: Option<String>,
}

#[derive(Deserialize)]
struct PrincipalEntry {
    key_id: String,
    secret: String,
    session_token: Option<String>,
    arn: Option<String>,
}

fn principals(options: &Options) -> anyhow::Result<Vec<Principal>> {
    let mut out = Vec::new();
    for spec in &options.principals {
        let (key_id, secret) = spec
            .split_once(':')
            .filter(|(k, s)| !k.is_empty() && !s.is_empty())
            .with_context(|| "--principal takes KEY_ID:SECRET".to_owned())?;
        out.push(Principal::long_term(key_id, secret));
    }
    if let Some(path) = &options.principals_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --principals-file {}", path.display()))?;
        let entries: Vec<PrincipalEntry> = serde_json::from_str(&text).with_context(|| {
            format!("--principals-file {}: expected a JSON array of {{key_id, secret, session_token?, arn?}}", path.display())
        })?;
        for e in entries {
            let mut p = Principal::long_term(&e.key_id, &e.secret);
            p.session_token = e.session_token;
            if let Some(arn) = e.arn {
                p.arn = arn;
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// The parent domain SRV targets must end with: the name minus its first label.
fn parent_domain(name: &str) -> String {
    match name.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest.to_owned(),
        _ => name.to_owned(),
    }
}

fn percent_encode_path(path: &std::path::Path) -> String {
    let mut out = String::new();
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Starts atlas-sim and serves until `shutdown` fires.
///
/// # Errors
/// Bad options, a port that cannot be bound, certificate or DNS setup failures.
pub async fn run(options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let principals = principals(&options)?;
    let verifier = match &options.sts_url {
        Some(url) => Verifier::Forward {
            sts_url: url.clone(),
        },
        None if principals.is_empty() => {
            bail!("give at least one --principal KEY_ID:SECRET, a --principals-file, or --sts-url")
        }
        None => Verifier::Local(principals),
    };
    let users: Option<HashSet<String>> = if options.users.is_empty() {
        None
    } else {
        Some(options.users.iter().cloned().collect())
    };

    if options.member_tags.len() > usize::from(options.members) {
        bail!(
            "--member-tags is given {} times but there are {} members: give it once per member",
            options.member_tags.len(),
            options.members
        );
    }
    if !options.member_tags.is_empty() && options.topology == TopologyKind::Sharded {
        bail!("--member-tags tags replica-set members; a sharded cluster's mongos have no tags");
    }
    let member_tags = options
        .member_tags
        .iter()
        .map(|spec| options::parse_member_tags(spec))
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;

    let mut listeners = Vec::new();
    for i in 0..options.members {
        let port = if options.port == 0 {
            0
        } else {
            options
                .port
                .checked_add(i)
                .context("--port too high for --members")?
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .with_context(|| format!("binding member {i} on 127.0.0.1:{port}"))?;
        listeners.push(listener);
    }
    let parent = options.srv.as_deref().map(parent_domain);
    let mut members = Vec::new();
    let mut host_names = Vec::new();
    for (i, listener) in listeners.iter().enumerate() {
        let addr = listener.local_addr()?;
        let key = format!("127.0.0.1:{}", addr.port());
        let host = match &parent {
            Some(parent) => {
                let name = format!("member{}.{parent}", i + 1);
                host_names.push(name.clone());
                format!("{name}:{}", addr.port())
            }
            None => key.clone(),
        };
        members.push(Member {
            index: i,
            addr,
            key,
            host,
            process_id: ObjectId::new(),
            connections_current: Default::default(),
            connections_total: Default::default(),
            commands: Default::default(),
            cursors: Default::default(),
            operations: Default::default(),
            tags: member_tags.get(i).cloned().unwrap_or_default(),
        });
    }

    let tls = options.tls_enabled();
    // Without --state-dir the certificates go to a new temporary directory, removed when
    // atlas-sim stops (after a signal or an error; a SIGKILL leaves it).
    let mut temp_state: Option<tempfile::TempDir> = None;
    let (acceptor, ca_file) = if tls {
        let dir = match &options.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating state dir {}", dir.display()))?;
                dir.clone()
            }
            None => temp_state
                .insert(
                    tempfile::Builder::new()
                        .prefix("atlas-sim-")
                        .tempdir()
                        .context("creating a temporary state dir")?,
                )
                .path()
                .to_path_buf(),
        };
        let paths = certs::generate(&dir, &host_names).context("generating TLS certificates")?;
        let config = certs::server_config(&paths).context("loading the server certificate")?;
        (Some(TlsAcceptor::from(config)), Some(paths.ca_file))
    } else {
        (None, None)
    };

    let settings = Settings {
        topology: options.topology,
        latency: Duration::from_millis(options.latency_ms),
        max_wire_version: options.max_wire_version,
        idle_disconnect: (options.idle_disconnect_ms > 0)
            .then(|| Duration::from_millis(options.idle_disconnect_ms)),
        secondary_lag: Duration::from_millis(options.secondary_lag_ms),
    };
    let auth = AuthConfig {
        verifier,
        users,
        sts_host: options.sts_host.clone(),
        sts_delay: Duration::from_millis(options.sts_delay_ms),
    };
    let cluster = Cluster::new(settings, members, auth);

    let dns_server = match (&options.srv, options.dns_port) {
        (Some(name), Some(port)) => {
            let zone = srv_zone(name, &cluster, options.topology);
            let server = dns::serve(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), zone)
                .await
                .context("starting the DNS server")?;
            Some(server)
        }
        _ => None,
    };

    let control_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.control_port))
        .await
        .with_context(|| {
            format!(
                "binding the control API on 127.0.0.1:{}",
                options.control_port
            )
        })?;
    let control_addr = control_listener.local_addr()?;
    let tracker = tokio_util::task::TaskTracker::new();
    tracker.spawn(control::serve(
        control_listener,
        Arc::clone(&cluster),
        shutdown.clone(),
    ));

    for (index, listener) in listeners.into_iter().enumerate() {
        tracker.spawn(accept_loop(
            listener,
            index,
            Arc::clone(&cluster),
            acceptor.clone(),
            shutdown.clone(),
        ));
    }

    let start = start_line(
        &options,
        &cluster,
        ca_file.as_deref(),
        control_addr,
        dns_server.as_ref().map(|d| d.local_addr()),
    );
    println!("{}", serde_json::to_string(&start)?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tracing::info!(members = cluster.members.len(), tls, "atlas-sim is up");

    shutdown.cancelled().await;
    cluster.drop_connections();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    drop(dns_server);
    drop(temp_state);
    Ok(())
}

fn srv_zone(name: &str, cluster: &Cluster, topology: TopologyKind) -> dns::Zone {
    let parent = parent_domain(name);
    let targets = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| dns::SrvTarget {
            priority: 0,
            weight: 0,
            port: m.addr.port(),
            target: format!("member{}.{parent}", i + 1),
        })
        .collect::<Vec<_>>();
    let a = targets
        .iter()
        .map(|t| (t.target.clone(), Ipv4Addr::LOCALHOST))
        .collect();
    let txt = match topology {
        TopologyKind::Replset => "authSource=%24external&replicaSet=sim",
        TopologyKind::Sharded => "authSource=%24external",
    };
    dns::Zone {
        srv: vec![(format!("_mongodb._tcp.{name}"), targets)],
        txt: vec![(name.to_owned(), vec![txt.to_owned()])],
        a,
    }
}

fn start_line(
    options: &Options,
    cluster: &Cluster,
    ca_file: Option<&std::path::Path>,
    control: SocketAddr,
    dns: Option<SocketAddr>,
) -> StartLine {
    let members: Vec<String> = cluster.members.iter().map(|m| m.key.clone()).collect();
    let mut query = Vec::new();
    if !cluster.sharded() {
        query.push(format!("replicaSet={}", cluster::SET_NAME));
    }
    if let Some(ca) = ca_file {
        query.push("tls=true".to_owned());
        query.push(format!("tlsCAFile={}", percent_encode_path(ca)));
    }
    query.push("authMechanism=MONGODB-AWS".to_owned());
    query.push("authSource=%24external".to_owned());
    let uri = format!("mongodb://{}/?{}", members.join(","), query.join("&"));
    let srv_uri = options.srv.as_ref().map(|name| {
        let mut q = Vec::new();
        if let Some(ca) = ca_file {
            q.push(format!("tlsCAFile={}", percent_encode_path(ca)));
        } else {
            q.push("tls=false".to_owned());
        }
        q.push("authMechanism=MONGODB-AWS".to_owned());
        format!("mongodb+srv://{name}/?{}", q.join("&"))
    });
    StartLine {
        uri,
        srv_uri,
        ca_file: ca_file.map(std::path::Path::to_path_buf),
        members,
        primary: cluster.primary().map(|p| cluster.members[p].key.clone()),
        control: format!("http://{control}"),
        dns: dns.map(|d| d.to_string()),
    }
}

async fn accept_loop(
    listener: TcpListener,
    index: usize,
    cluster: Arc<Cluster>,
    acceptor: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let cluster = Arc::clone(&cluster);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => connection::serve(cluster, index, tls).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                None => connection::serve(cluster, index, stream).await,
            }
        });
    }
}
