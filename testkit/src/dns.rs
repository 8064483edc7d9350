//! A small authoritative DNS server for `mongodb+srv` tests: SRV, TXT and A records from a
//! fixed [`Zone`], over UDP and TCP on the same loopback port.
//!
//! Data flow: a test builds a [`Zone`] (`_mongodb._tcp.cluster0.sim.test` -> atlas-sim's
//! members), calls [`serve`], and points the driver's resolver at [`DnsServer::local_addr`].
//! [`answer`] is the pure part (query bytes -> response bytes); the socket loops only move
//! bytes. The server stops when its [`DnsServer`] is dropped or shut down.
//!
//! Behaviour: names match case-insensitively, with or without a trailing dot; a known name
//! with no record of the asked type gets NOERROR with an empty answer; an unknown name gets
//! NXDOMAIN; every response is authoritative (AA) and echoes the query id and question.
//! UDP responses that do not fit the client's payload size are truncated (TC) so the client
//! retries over TCP, which uses the RFC 1035 two-byte length prefix.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// TTL of every answer, in seconds.
pub const TTL: u32 = 30;
/// UDP payload limit for a query without EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;
/// The payload size this server advertises and accepts at most over UDP.
const EDNS_UDP_LIMIT: u16 = 1232;
/// How often [`serve`] retries when port 0 gave a UDP port whose TCP twin is taken.
const BIND_ATTEMPTS: usize = 20;

/// One SRV target (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is preferred.
    pub priority: u16,
    /// Relative weight among targets of equal priority.
    pub weight: u16,
    /// The target's port.
    pub port: u16,
    /// The target host name, e.g. `cluster0-shard-00-00.sim.test`.
    pub target: String,
}

impl SrvTarget {
    /// A target with priority 0 and weight 0.
    pub fn new(target: impl Into<String>, port: u16) -> Self {
        Self {
            priority: 0,
            weight: 0,
            port,
            target: target.into(),
        }
    }
}

/// The records the server answers from. Names are matched case-insensitively and a trailing
/// dot is optional. Several entries with the same name add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    /// SRV record sets, e.g. `("_mongodb._tcp.cluster0.sim.test", [targets])`.
    pub srv: Vec<(String, Vec<SrvTarget>)>,
    /// TXT records: each entry is ONE record whose character-strings are the `Vec` (a driver
    /// concatenates them); repeat the name for several records. Each string is at most 255
    /// bytes.
    pub txt: Vec<(String, Vec<String>)>,
    /// A records; repeat the name for several addresses.
    pub a: Vec<(String, Ipv4Addr)>,
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an SRV record set.
    #[must_use]
    pub fn with_srv(mut self, name: impl Into<String>, targets: Vec<SrvTarget>) -> Self {
        self.srv.push((name.into(), targets));
        self
    }

    /// Adds one TXT record made of `strings`.
    #[must_use]
    pub fn with_txt(mut self, name: impl Into<String>, strings: Vec<String>) -> Self {
        self.txt.push((name.into(), strings));
        self
    }

    /// Adds one A record.
    #[must_use]
    pub fn with_a(mut self, name: impl Into<String>, addr: Ipv4Addr) -> Self {
        self.a.push((name.into(), addr));
        self
    }
}

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name or record in the zone cannot be encoded.
    #[error("invalid zone entry {name:?}: {reason}")]
    InvalidZone {
        /// The record's owner name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Binding the UDP or TCP socket failed.
    #[error("binding {protocol} {addr}: {source}")]
    Bind {
        /// "udp" or "tcp".
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying IO error.
        source: io::Error,
    },
}

/// A running DNS server. Dropping it stops the server (the sockets close once their tasks
/// notice, promptly); [`DnsServer::shutdown`] also waits for that.
#[derive(Debug)]
pub struct DnsServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl DnsServer {
    /// The address both the UDP and the TCP socket are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A token that stops the server when cancelled (for a caller's own shutdown tree).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the server and waits until its sockets are closed.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the server on `addr` for UDP and TCP. With port 0 it picks one free port for both.
///
/// # Errors
/// [`DnsError::InvalidZone`] for a name or TXT string that cannot be encoded,
/// [`DnsError::Bind`] if the sockets cannot be bound.
pub async fn serve(addr: SocketAddr, zone: Zone) -> Result<DnsServer, DnsError> {
    let records = Records::build(&zone)?;
    let (udp, tcp) = bind_pair(addr).await?;
    let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
        protocol: "udp",
        addr,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let records = std::sync::Arc::new(records);
    tasks.spawn(run_udp(udp, records.clone(), shutdown.clone()));
    tasks.spawn(run_tcp(tcp, records, shutdown.clone(), tasks.clone()));
    tracing::debug!(%local_addr, "dns server listening");
    Ok(DnsServer {
        local_addr,
        shutdown,
        tasks,
    })
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_err = |protocol, source| DnsError::Bind {
        protocol,
        addr,
        source,
    };
    let attempts = if addr.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|err| bind_err("udp", err))?;
        let bound = udp.local_addr().map_err(|err| bind_err("udp", err))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => last_err = Some(err),
            Err(err) => return Err(bind_err("tcp", err)),
        }
    }
    Err(bind_err(
        "tcp",
        last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    ))
}

async fn run_udp(socket: UdpSocket, records: std::sync::Arc<Records>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65_535];
    loop {
        // Cancel-safe: `recv_from` loses nothing when the other branch wins.
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            // E.g. ICMP port unreachable reported on a later recv; keep serving.
            Err(err) => {
                tracing::debug!(error = %err, "dns udp receive failed");
                continue;
            }
        };
        let Some(reply) = records.answer(&buf[..len], Transport::Udp) else {
            continue;
        };
        if let Err(err) = socket.send_to(&reply, peer).await {
            tracing::debug!(error = %err, %peer, "dns udp send failed");
        }
    }
}

async fn run_tcp(
    listener: TcpListener,
    records: std::sync::Arc<Records>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let records = records.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        result = serve_tcp_connection(stream, &records) => {
                            if let Err(err) = result {
                                tracing::debug!(error = %err, %peer, "dns tcp connection failed");
                            }
                        }
                    }
                });
            }
            Err(err) => tracing::debug!(error = %err, "dns tcp accept failed"),
        }
    }
}

/// Answers length-prefixed queries until the peer closes the connection. Not cancel-safe
/// (a partly read query is lost), which is fine: it is only cancelled at shutdown.
async fn serve_tcp_connection(mut stream: TcpStream, records: &Records) -> io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut query).await?;
        let Some(reply) = records.answer(&query, Transport::Tcp) else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            // Cannot happen with the small zones tests use; drop rather than send garbage.
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

/// Which transport a query arrived on: UDP responses are size-limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Datagram: truncate to the client's payload size.
    Udp,
    /// Stream: no size limit below 64 KiB.
    Tcp,
}

/// The zone, indexed by normalised owner name.
#[derive(Debug, Default)]
struct Records {
    by_name: HashMap<String, Vec<RData>>,
}

impl Records {
    fn build(zone: &Zone) -> Result<Self, DnsError> {
        let mut records = Self::default();
        let invalid = |name: &str, reason: String| DnsError::InvalidZone {
            name: name.to_string(),
            reason,
        };
        for (name, targets) in &zone.srv {
            for target in targets {
                let target_name = Name::from_ascii(fqdn(&target.target))
                    .map_err(|err| invalid(name, format!("SRV target: {err}")))?;
                records.insert(
                    name,
                    RData::SRV(SRV::new(
                        target.priority,
                        target.weight,
                        target.port,
                        target_name,
                    )),
                );
            }
        }
        for (name, strings) in &zone.txt {
            if let Some(long) = strings.iter().find(|s| s.len() > 255) {
                return Err(invalid(
                    name,
                    format!("TXT string of {} bytes (at most 255)", long.len()),
                ));
            }
            records.insert(name, RData::TXT(TXT::new(strings.clone())));
        }
        for (name, addr) in &zone.a {
            records.insert(name, RData::A(A(*addr)));
        }
        for name in records.by_name.keys() {
            Name::from_ascii(fqdn(name)).map_err(|err| invalid(name, err.to_string()))?;
        }
        Ok(records)
    }

    fn insert(&mut self, name: &str, rdata: RData) {
        self.by_name.entry(normalise(name)).or_default().push(rdata);
    }

    /// The response to one DNS message, or `None` when nothing should be sent back (a
    /// response, or bytes too short to carry an id).
    fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) => return format_error(query),
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.add_queries(request.queries.iter().cloned());
        let udp_limit = match &request.edns {
            Some(edns) => {
                let mut reply_edns = Edns::new();
                reply_edns.set_max_payload(EDNS_UDP_LIMIT);
                response.set_edns(reply_edns);
                usize::from(edns.max_payload().clamp(512, EDNS_UDP_LIMIT))
            }
            None => CLASSIC_UDP_LIMIT,
        };
        response.metadata.response_code = self.fill(&request, &mut response);
        let bytes = response.to_vec().ok()?;
        if transport == Transport::Udp && bytes.len() > udp_limit {
            return response.truncate().to_vec().ok();
        }
        Some(bytes)
    }

    /// Adds the answers for the request's single question and returns the response code.
    fn fill(&self, request: &Message, response: &mut Message) -> ResponseCode {
        if request.metadata.op_code != OpCode::Query {
            return ResponseCode::NotImp;
        }
        let [question] = request.queries.as_slice() else {
            return ResponseCode::FormErr;
        };
        let Some(rdatas) = self.by_name.get(&normalise(&question.name().to_ascii())) else {
            return ResponseCode::NXDomain;
        };
        if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
            return ResponseCode::NoError;
        }
        let wanted = question.query_type();
        for rdata in rdatas {
            if wanted == RecordType::ANY || rdata.record_type() == wanted {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    rdata.clone(),
                ));
            }
        }
        ResponseCode::NoError
    }
}

/// FORMERR for bytes that do not parse as a DNS message but carry a query header.
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
    // The QR bit: never answer something that claims to be a response.
    if query.get(2).is_some_and(|flags| flags & 0x80 != 0) {
        return None;
    }
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

#[cfg(test)]
mod tests;
