//! `mongodb+srv` seed-list discovery (the initial-dns-seedlist-discovery spec) and the DNS
//! resolver used for it and for every upstream host name.
//!
//! [`resolve_seedlist`] looks up `_{service}._tcp.{host}` (SRV) and `{host}` (TXT), checks each
//! SRV target against the parent domain, reads the TXT options (at most one record; only
//! `authSource`, `replicaSet`, `loadBalanced`; URI options win), and applies `srvMaxHosts`.
//! [`Resolver`] wraps hickory-resolver: with `MONGO_POOL_DNS_SERVER` set it asks that server
//! only (UDP, TCP on truncation), else the system configuration. The connector uses
//! [`Resolver::lookup_host`] for member host names so that they resolve the same way.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::seq::SliceRandom as _;
use thiserror::Error;

use crate::config::uri::{AUTH_SOURCE, HostPort, UriOptions, percent_decode};

/// Per-query timeout.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why discovery or a lookup failed; each message names the record and what is wrong.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SrvError {
    /// The system resolver configuration could not be read.
    #[error("cannot set up DNS resolution: {0}")]
    Setup(String),
    /// A DNS query failed.
    #[error("DNS {record_type} lookup of {name} failed: {cause}")]
    Lookup {
        /// `SRV`, `TXT` or `A/AAAA`.
        record_type: &'static str,
        /// The name queried.
        name: String,
        /// The resolver's error.
        cause: String,
    },
    /// No SRV record.
    #[error("no SRV records at {0}: check the host name of the mongodb+srv:// connection string")]
    NoSrvRecords(String),
    /// An SRV target outside the allowed domain.
    #[error(
        "SRV record {name} points to {target}, which is not under {domain}: the spec forbids \
         targets outside the parent domain"
    )]
    TargetOutsideDomain {
        /// The SRV name.
        name: String,
        /// The offending target.
        target: String,
        /// The domain targets must end with.
        domain: String,
    },
    /// More than one TXT record.
    #[error("{name} has {count} TXT records; at most one is allowed")]
    MultipleTxt {
        /// The TXT name.
        name: String,
        /// How many.
        count: usize,
    },
    /// An invalid TXT option.
    #[error("TXT record of {name}: {problem}")]
    TxtOption {
        /// The TXT name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The name has no address.
    #[error("{0} has no IP address")]
    NoAddresses(String),
}

/// A DNS resolver (cheap to share by reference; clone the inner resolver's `Arc` state).
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// `dns_server` (`MONGO_POOL_DNS_SERVER`) makes every query go to that server only; without
    /// it the system configuration (`/etc/resolv.conf`) applies. Caching is off: SRV rescans
    /// and re-resolution after a failover must see fresh answers.
    ///
    /// # Errors
    ///
    /// [`SrvError::Setup`] when the system configuration cannot be read.
    pub fn new(dns_server: Option<SocketAddr>) -> Result<Self, SrvError> {
        let mut builder = match dns_server {
            Some(addr) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], servers),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| SrvError::Setup(e.to_string()))?,
        };
        let opts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        Ok(Self {
            inner: builder.build(),
        })
    }

    /// SRV records at `name`, as `target:port` (targets lower-case, without the final dot).
    ///
    /// # Errors
    ///
    /// [`SrvError::NoSrvRecords`] or [`SrvError::Lookup`].
    pub async fn resolve_srv(&self, name: &str) -> Result<Vec<HostPort>, SrvError> {
        let lookup = match self.inner.srv_lookup(fqdn(name)).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => return Err(SrvError::NoSrvRecords(name.into())),
            Err(e) => return Err(lookup_error("SRV", name, &e)),
        };
        let hosts: Vec<HostPort> = lookup
            .iter()
            .map(|srv| HostPort {
                host: srv
                    .target()
                    .to_utf8()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
                port: srv.port(),
            })
            .collect();
        if hosts.is_empty() {
            return Err(SrvError::NoSrvRecords(name.into()));
        }
        Ok(hosts)
    }

    /// TXT records at `name`, each record's strings concatenated; empty when there are none.
    ///
    /// # Errors
    ///
    /// [`SrvError::Lookup`] for failures other than "no such record".
    pub async fn resolve_txt(&self, name: &str) -> Result<Vec<String>, SrvError> {
        match self.inner.txt_lookup(fqdn(name)).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|txt| {
                    txt.txt_data()
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>()
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(lookup_error("TXT", name, &e)),
        }
    }

    /// The socket addresses of `host:port` (IP literals are returned as they are).
    ///
    /// # Errors
    ///
    /// [`SrvError::NoAddresses`] or [`SrvError::Lookup`].
    pub async fn lookup_host(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, SrvError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let lookup = match self.inner.lookup_ip(host).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => return Err(SrvError::NoAddresses(host.into())),
            Err(e) => return Err(lookup_error("A/AAAA", host, &e)),
        };
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(SrvError::NoAddresses(host.into()));
        }
        Ok(addrs)
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

fn lookup_error(record_type: &'static str, name: &str, e: &ResolveError) -> SrvError {
    SrvError::Lookup {
        record_type,
        name: name.to_owned(),
        cause: e.to_string(),
    }
}

/// The outcome of `mongodb+srv` discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedList {
    /// The members to connect to (after `srvMaxHosts`).
    pub hosts: Vec<HostPort>,
    /// `replicaSet`, from the URI or else the TXT record.
    pub replica_set: Option<String>,
    /// A TXT `authSource` other than `$external` (Atlas publishes `admin` for password users),
    /// ignored because MONGODB-AWS always authenticates against `$external`. For one log line.
    pub ignored_auth_source: Option<String>,
}

/// Resolves the seed list of a `mongodb+srv://{host}` URI.
///
/// # Errors
///
/// [`SrvError`]: failed lookups, SRV targets outside the domain, or bad TXT records.
pub async fn resolve_seedlist(
    resolver: &Resolver,
    host: &str,
    service_name: &str,
    uri: &UriOptions,
) -> Result<SeedList, SrvError> {
    let srv_name = format!("_{service_name}._tcp.{host}");
    let (srv, txt) = tokio::join!(resolver.resolve_srv(&srv_name), resolver.resolve_txt(host));
    let mut hosts = srv?;
    for target in &hosts {
        validate_target(&srv_name, host, &target.host)?;
    }
    let txt = parse_txt(host, &txt?)?;
    if txt.load_balanced {
        return Err(SrvError::TxtOption {
            name: host.to_owned(),
            problem: "loadBalanced=true: load-balanced deployments are not supported (a cursor \
                      or transaction lives on one connection there, while mongo-pool shares \
                      upstream connections)"
                .to_owned(),
        });
    }
    let replica_set = uri.replica_set.clone().or(txt.replica_set);
    if uri.srv_max_hosts > 0 && replica_set.is_some() {
        return Err(SrvError::TxtOption {
            name: host.to_owned(),
            problem: "replicaSet cannot be combined with srvMaxHosts: remove srvMaxHosts from \
                      the connection string"
                .to_owned(),
        });
    }
    choose_hosts(&mut hosts, uri.srv_max_hosts, &mut rand::rng());
    Ok(SeedList {
        hosts,
        replica_set,
        ignored_auth_source: txt.auth_source.filter(|s| s != AUTH_SOURCE),
    })
}

/// Checks an SRV target against the host (per the current seedlist spec): with 3+ labels the
/// target must end with `.` + the host minus its first label; with fewer, it must end with
/// `.` + the host (so it has more labels than the host).
pub(crate) fn validate_target(srv_name: &str, host: &str, target: &str) -> Result<(), SrvError> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let target = target.trim_end_matches('.').to_ascii_lowercase();
    let domain = match host.split_once('.') {
        Some((_, parent)) if host.split('.').count() >= 3 => parent.to_owned(),
        _ => host.clone(),
    };
    if target.ends_with(&format!(".{domain}")) {
        Ok(())
    } else {
        Err(SrvError::TargetOutsideDomain {
            name: srv_name.to_owned(),
            target,
            domain,
        })
    }
}

/// Options a TXT record may carry.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TxtOptions {
    pub(crate) auth_source: Option<String>,
    pub(crate) replica_set: Option<String>,
    pub(crate) load_balanced: bool,
}

/// Parses the TXT records of `name`.
pub(crate) fn parse_txt(name: &str, records: &[String]) -> Result<TxtOptions, SrvError> {
    let record = match records {
        [] => return Ok(TxtOptions::default()),
        [one] => one,
        more => {
            return Err(SrvError::MultipleTxt {
                name: name.to_owned(),
                count: more.len(),
            });
        }
    };
    let problem = |problem: String| SrvError::TxtOption {
        name: name.to_owned(),
        problem,
    };
    let mut options = TxtOptions::default();
    for pair in record.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| problem(format!("{pair:?} is not name=value")))?;
        let value = percent_decode(value, "TXT record").map_err(|e| problem(e.to_string()))?;
        match key.to_ascii_lowercase().as_str() {
            "authsource" => options.auth_source = Some(value),
            "replicaset" => options.replica_set = Some(value),
            "loadbalanced" => {
                options.load_balanced = match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(problem(format!("loadBalanced={value:?} is not a boolean"))),
                }
            }
            _ => {
                return Err(problem(format!(
                    "option {key:?} is not allowed (only authSource, replicaSet, loadBalanced)"
                )));
            }
        }
    }
    Ok(options)
}

/// Keeps a random `max` of `hosts` when `max` is positive and smaller than the list.
pub(crate) fn choose_hosts(hosts: &mut Vec<HostPort>, max: u32, rng: &mut impl rand::Rng) {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if max > 0 && hosts.len() > max {
        hosts.shuffle(rng);
        hosts.truncate(max);
    }
}

#[cfg(test)]
mod tests;
