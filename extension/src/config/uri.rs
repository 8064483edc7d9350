//! The upstream connection string (`mongodb://` and `mongodb+srv://`), parsed per the MongoDB
//! connection-string and URI-options specifications into typed pool settings ([`UriOptions`]).
//!
//! Users paste the URI Atlas gives them. Options that only the function's own driver can act
//! on (`retryWrites`, `w`, `readPreference`, ...) are accepted and listed in
//! [`UriOptions::function_options`] so the caller can log one line about them; unknown options
//! are listed in [`UriOptions::unknown_options`] (drivers warn about those, they do not fail).
//! Only malformed values and options that cannot work with mongo-pool are errors, and each
//! error says what to change.
//!
//! Nothing secret is kept: credentials in the URI are rejected, and error messages never quote
//! the URI or a value that could hold a secret.

use std::fmt;
use std::time::Duration;

mod error;
mod options;
#[cfg(test)]
pub(crate) use options::POOL_OPTIONS;

pub use error::UriError;

use options::RawOptions;
#[cfg(test)]
use options::VERIFICATION_OPTIONS;

/// The only authentication mechanism mongo-pool uses upstream.
pub const AUTH_MECHANISM: &str = "MONGODB-AWS";
/// The only authentication source MONGODB-AWS allows.
pub const AUTH_SOURCE: &str = "$external";
/// Port used when a host has none.
pub const DEFAULT_PORT: u16 = 27017;
/// Default SRV service name.
pub const DEFAULT_SRV_SERVICE_NAME: &str = "mongodb";
/// Default `minPoolSize`: one warm connection per member.
pub const DEFAULT_MIN_POOL_SIZE: u32 = 1;
/// Default `maxPoolSize` (per member). Small: one Lambda environment serves one invocation at
/// a time, and every pooled connection counts against the Atlas tier's connection limit.
pub const DEFAULT_MAX_POOL_SIZE: u32 = 4;
/// Largest accepted `maxPoolSize`; more per environment would exhaust Atlas connection limits
/// as Lambda scales out.
pub const MAX_MAX_POOL_SIZE: u32 = 100;
/// Default `maxConnecting` (per member): also bounds concurrent authentications, and so STS calls.
pub const DEFAULT_MAX_CONNECTING: u32 = 2;
/// Default `waitQueueTimeoutMS`: bounded (drivers' 0 = forever is not accepted), and well under
/// common function timeouts.
pub const DEFAULT_WAIT_QUEUE_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Default `connectTimeoutMS`, as in drivers.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(10_000);
/// The longest a single connection attempt may take during Lambda Init (which lasts 10 s in
/// all): see [`UriOptions::init_connect_timeout`].
pub const INIT_CONNECT_TIMEOUT_CAP: Duration = Duration::from_millis(5_000);
/// Default `serverSelectionTimeoutMS`: 15 s instead of the drivers' 30 s. It covers a typical
/// Atlas primary election (median under 12 s) while the downstream driver, which sees a
/// retryable error from us, retries once: the two attempts then add up to the 30 s a driver
/// would have waited on its own.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_millis(15_000);
/// Default `heartbeatFrequencyMS`, as in drivers.
pub const DEFAULT_HEARTBEAT_FREQUENCY: Duration = Duration::from_millis(10_000);
/// Smallest `heartbeatFrequencyMS` the SDAM spec allows.
pub const MIN_HEARTBEAT_FREQUENCY: Duration = Duration::from_millis(500);
/// Longest `appName` (bytes) that fits the handshake's client metadata.
pub const MAX_APP_NAME_LEN: usize = 128;

/// One `host:port`. `host` is lower-case and, for IPv6, without brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where the upstream members come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeds {
    /// `mongodb://h1:p1,h2:p2`.
    List(Vec<HostPort>),
    /// `mongodb+srv://host`: resolve `_{service_name}._tcp.{host}` (and TXT on `host`).
    Srv {
        /// The SRV host name (lower-case).
        host: String,
        /// `srvServiceName`, default `mongodb`.
        service_name: String,
    },
}

impl fmt::Display for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seeds::List(hosts) => {
                f.write_str("mongodb://")?;
                for (i, h) in hosts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{h}")?;
                }
                Ok(())
            }
            Seeds::Srv { host, service_name } if service_name == DEFAULT_SRV_SERVICE_NAME => {
                write!(f, "mongodb+srv://{host}")
            }
            Seeds::Srv { host, service_name } => {
                write!(f, "mongodb+srv://{host} (service {service_name})")
            }
        }
    }
}

/// The pool-relevant content of a connection string, validated and with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UriOptions {
    /// Seed hosts or the SRV name.
    pub seeds: Seeds,
    /// The database path segment, if any (the function's driver picks its own database).
    pub database: Option<String>,
    /// `replicaSet`.
    pub replica_set: Option<String>,
    /// `tls`/`ssl`: default true for `mongodb+srv`, false for `mongodb`, as in drivers.
    pub tls: bool,
    /// `tlsCAFile`: extra trusted roots (webpki roots are always trusted).
    pub tls_ca_file: Option<String>,
    /// `appName`.
    pub app_name: Option<String>,
    /// `minPoolSize` (per member).
    pub min_pool_size: u32,
    /// `maxPoolSize` (per member), 1..=[`MAX_MAX_POOL_SIZE`].
    pub max_pool_size: u32,
    /// `maxConnecting`: concurrent connection establishments (and authentications) per member.
    pub max_connecting: u32,
    /// `maxIdleTimeMS`; `None` (or 0 in the URI) keeps idle connections indefinitely.
    pub max_idle_time: Option<Duration>,
    /// `waitQueueTimeoutMS`: longest wait for a connection at check-out.
    pub wait_queue_timeout: Duration,
    /// `connectTimeoutMS`: TCP + TLS + handshake + authentication of one connection.
    pub connect_timeout: Duration,
    /// `serverSelectionTimeoutMS`.
    pub server_selection_timeout: Duration,
    /// `heartbeatFrequencyMS`.
    pub heartbeat_frequency: Duration,
    /// `srvMaxHosts`; 0 = all.
    pub srv_max_hosts: u32,
    /// `directConnection`, when given.
    pub direct_connection: Option<bool>,
    /// Options that belong in the function's own connection string (names as written).
    pub function_options: Vec<String>,
    /// Options mongo-pool does not know (names as written; values are never kept).
    pub unknown_options: Vec<String>,
}

impl UriOptions {
    /// The unknown options, each with the known one it most likely meant, if any:
    /// `maxPoolSze (did you mean maxPoolSize?)`.
    #[must_use]
    pub fn unknown_options_explained(&self) -> String {
        self.unknown_options
            .iter()
            .map(|name| {
                let known = options::POOL_OPTIONS
                    .iter()
                    .chain(options::FUNCTION_OPTIONS);
                match super::closest(name, known.copied(), "") {
                    Some(meant) => format!("{name} (did you mean {meant}?)"),
                    None => name.clone(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `connectTimeoutMS`, capped at [`INIT_CONNECT_TIMEOUT_CAP`] for connections made during
    /// Lambda Init, whose whole phase lasts 10 s and must leave room for retries.
    #[must_use]
    pub fn init_connect_timeout(&self) -> Duration {
        self.connect_timeout.min(INIT_CONNECT_TIMEOUT_CAP)
    }
}

impl fmt::Display for UriOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.seeds)?;
        if let Some(rs) = &self.replica_set {
            write!(f, " replicaSet={rs}")?;
        }
        write!(
            f,
            " tls={} minPoolSize={} maxPoolSize={} maxConnecting={} waitQueueTimeoutMS={} \
             connectTimeoutMS={} serverSelectionTimeoutMS={}",
            self.tls,
            self.min_pool_size,
            self.max_pool_size,
            self.max_connecting,
            self.wait_queue_timeout.as_millis(),
            self.connect_timeout.as_millis(),
            self.server_selection_timeout.as_millis(),
        )
    }
}

/// Parses and validates a connection string.
///
/// # Errors
///
/// A [`UriError`] saying what to change. Error messages never contain the URI itself.
pub fn parse(uri: &str) -> Result<UriOptions, UriError> {
    let (srv, rest) = if let Some(rest) = uri.strip_prefix("mongodb+srv://") {
        (true, rest)
    } else if let Some(rest) = uri.strip_prefix("mongodb://") {
        (false, rest)
    } else {
        return Err(UriError::BadScheme);
    };

    // Credentials first, before anything could quote a part of them in an error: an '@'
    // before the options means "userinfo@hosts" (an unescaped '/' may sit in a password).
    let before_query = rest.split_once('?').map_or(rest, |(b, _)| b);
    if before_query.contains('@') {
        return Err(UriError::CredentialsInUri);
    }
    // Split "hosts/db?options". The host section ends at the first '/'; a '?' before any '/'
    // is malformed per the spec.
    let (authority, path_and_query) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if authority.contains('?') {
        return Err(UriError::Malformed(
            "options must follow a '/' after the hosts, as in host/?option=value",
        ));
    }
    let hosts_part = authority;
    if hosts_part.is_empty() {
        return Err(UriError::Malformed("no host"));
    }
    let (database, query) = match path_and_query {
        None => (None, None),
        Some(pq) => match pq.split_once('?') {
            Some((db, q)) => (Some(db), Some(q)),
            None => (Some(pq), None),
        },
    };
    let database = match database.filter(|d| !d.is_empty()) {
        None => None,
        Some(db) => {
            let db = percent_decode(db, "database name")?;
            if db
                .chars()
                .any(|c| matches!(c, '/' | '\\' | ' ' | '"' | '$' | '.'))
            {
                return Err(UriError::Malformed(
                    "the database name contains one of / \\ space \" $ .",
                ));
            }
            Some(db)
        }
    };

    let mut hosts = Vec::new();
    for raw in hosts_part.split(',') {
        hosts.push(parse_host(raw, srv)?);
    }

    let mut opts = RawOptions::default();
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or(UriError::Malformed("an option has no '=': use name=value"))?;
            let key = percent_decode(key, "option names")?;
            opts.add(key, value)?;
        }
    }
    opts.finish(srv, hosts, database)
}

/// Parses one host of the host list.
fn parse_host(raw: &str, srv: bool) -> Result<HostPort, UriError> {
    if raw.is_empty() {
        return Err(UriError::Malformed("an empty host in the host list"));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(|| UriError::InvalidHost {
            host: raw.to_owned(),
            reason: "an IPv6 literal needs a closing ']'",
        })?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UriError::InvalidHost {
                host: raw.to_owned(),
                reason: "not an IPv6 address",
            });
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| UriError::InvalidHost {
                host: raw.to_owned(),
                reason: "expected ':port' after ']'",
            })?),
        };
        (ip.to_ascii_lowercase(), port)
    } else {
        let (h, p) = match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        };
        if h.contains(':') {
            return Err(UriError::InvalidHost {
                host: raw.to_owned(),
                reason: "an IPv6 address must be in brackets, as in [::1]:27017",
            });
        }
        let h = percent_decode(h, "host list")?;
        if h.contains('/') || h.ends_with(".sock") {
            return Err(UriError::InvalidHost {
                host: h,
                reason: "mongo-pool connects upstream over TCP only, not to a Unix socket",
            });
        }
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(UriError::InvalidHost {
                host: h,
                reason: "expected a host name or IP address",
            });
        }
        (h.to_ascii_lowercase(), p)
    };
    if srv {
        if let Some(p) = port {
            return Err(UriError::SrvWithPort(p.to_owned()));
        }
        return Ok(HostPort {
            host,
            port: DEFAULT_PORT,
        });
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(UriError::InvalidPort {
                    host,
                    port: p.to_owned(),
                });
            }
        },
    };
    Ok(HostPort { host, port })
}

/// Decodes `%XX` escapes (a `+` stays a `+`, as the spec requires).
pub(crate) fn percent_decode(s: &str, part: &'static str) -> Result<String, UriError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(UriError::PercentEncoding(part));
            };
            // Two hex digits: at most 0xff, so the cast is lossless.
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError::PercentEncoding(part))
}

#[cfg(test)]
mod tests;
