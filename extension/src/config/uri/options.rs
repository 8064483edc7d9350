//! The options part of a connection string: each `name=value` is checked as it is read
//! ([`RawOptions::add`]), then defaults and the cross-option rules apply
//! ([`RawOptions::finish`]). Part of [`super::parse`].

use std::time::Duration;

use super::{
    AUTH_MECHANISM, AUTH_SOURCE, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT_FREQUENCY,
    DEFAULT_MAX_CONNECTING, DEFAULT_MAX_POOL_SIZE, DEFAULT_MIN_POOL_SIZE,
    DEFAULT_SERVER_SELECTION_TIMEOUT, DEFAULT_SRV_SERVICE_NAME, DEFAULT_WAIT_QUEUE_TIMEOUT,
    HostPort, MAX_APP_NAME_LEN, MAX_MAX_POOL_SIZE, MIN_HEARTBEAT_FREQUENCY, Seeds, UriError,
    UriOptions, percent_decode,
};

/// Options concerning the function's driver, not the pool: accepted and reported.
pub(super) const FUNCTION_OPTIONS: &[&str] = &[
    "retryWrites",
    "retryReads",
    "w",
    "wtimeoutMS",
    "journal",
    "readConcernLevel",
    "readPreference",
    "readPreferenceTags",
    "maxStalenessSeconds",
    "compressors",
    "zlibCompressionLevel",
    "socketTimeoutMS",
    "localThresholdMS",
    "serverMonitoringMode",
    "timeoutMS",
    "uuidRepresentation",
    "serverSelectionTryOnce",
    "proxyHost",
    "proxyPort",
    "proxyUsername",
    "proxyPassword",
];

/// The options mongo-pool applies itself, as the specification spells them ([`RawOptions::add`]
/// matches them case-insensitively).
pub(crate) const POOL_OPTIONS: &[&str] = &[
    "authMechanism",
    "authSource",
    "replicaSet",
    "tls",
    "ssl",
    "tlsCAFile",
    "appName",
    "minPoolSize",
    "maxPoolSize",
    "maxConnecting",
    "maxIdleTimeMS",
    "waitQueueTimeoutMS",
    "connectTimeoutMS",
    "serverSelectionTimeoutMS",
    "heartbeatFrequencyMS",
    "srvMaxHosts",
    "srvServiceName",
    "directConnection",
    "loadBalanced",
];

/// TLS options that would turn certificate verification off.
pub(super) const VERIFICATION_OPTIONS: &[&str] = &[
    "tlsInsecure",
    "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames",
    "tlsDisableOCSPEndpointCheck",
    "tlsDisableCertificateRevocationCheck",
];

/// Option values as collected, before defaults and cross-checks.
#[derive(Default)]
pub(super) struct RawOptions {
    seen: Vec<&'static str>,
    auth_mechanism: Option<String>,
    auth_source: Option<String>,
    replica_set: Option<String>,
    tls: Option<bool>,
    ssl: Option<bool>,
    tls_ca_file: Option<String>,
    app_name: Option<String>,
    min_pool_size: Option<u32>,
    max_pool_size: Option<u32>,
    max_connecting: Option<u32>,
    max_idle_time_ms: Option<u64>,
    wait_queue_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    server_selection_timeout_ms: Option<u64>,
    heartbeat_frequency_ms: Option<u64>,
    srv_max_hosts: Option<u32>,
    srv_service_name: Option<String>,
    direct_connection: Option<bool>,
    function_options: Vec<String>,
    unknown_options: Vec<String>,
}

impl RawOptions {
    /// Records one `key=value`. `raw_value` is still percent-encoded: values that may hold a
    /// secret are never decoded or quoted.
    pub(super) fn add(&mut self, key: String, raw_value: &str) -> Result<(), UriError> {
        let lower = key.to_ascii_lowercase();
        // Secrets first: never decode or echo these values.
        match lower.as_str() {
            "authmechanismproperties" => return Err(UriError::MechanismProperties),
            "tlscertificatekeyfile"
            | "tlscertificatekeyfilepassword"
            | "sslclientcertificatekeyfile" => {
                return Err(UriError::Unsupported {
                    option: "tlsCertificateKeyFile",
                    why: "client certificates are not used: mongo-pool authenticates with \
                          MONGODB-AWS; remove it",
                });
            }
            _ => {}
        }
        if FUNCTION_OPTIONS
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&lower))
        {
            if !self.function_options.contains(&key) {
                self.function_options.push(key);
            }
            return Ok(());
        }
        let value = percent_decode(raw_value, "option values")?;
        if let Some(option) = VERIFICATION_OPTIONS
            .iter()
            .find(|o| o.eq_ignore_ascii_case(&lower))
        {
            if parse_bool(option, &value)? {
                return Err(UriError::VerificationDisabled(option));
            }
            return Ok(());
        }
        macro_rules! set {
            ($field:ident, $name:literal, $value:expr) => {{
                if self.seen.contains(&$name) {
                    return Err(UriError::Duplicate($name));
                }
                self.seen.push($name);
                self.$field = Some($value);
            }};
        }
        match lower.as_str() {
            "authmechanism" => set!(auth_mechanism, "authMechanism", value),
            "authsource" => set!(auth_source, "authSource", value),
            "replicaset" => set!(replica_set, "replicaSet", non_empty("replicaSet", value)?),
            "tls" => set!(tls, "tls", parse_bool("tls", &value)?),
            "ssl" => set!(ssl, "ssl", parse_bool("ssl", &value)?),
            "tlscafile" | "sslcafile" => {
                set!(tls_ca_file, "tlsCAFile", non_empty("tlsCAFile", value)?)
            }
            "appname" => {
                if value.len() > MAX_APP_NAME_LEN {
                    return Err(UriError::OutOfRange {
                        option: "appName",
                        value: value.len() as u64,
                        why: "appName is at most 128 bytes long",
                    });
                }
                set!(app_name, "appName", value);
            }
            "minpoolsize" => set!(
                min_pool_size,
                "minPoolSize",
                parse_u32("minPoolSize", &value)?
            ),
            "maxpoolsize" => set!(
                max_pool_size,
                "maxPoolSize",
                parse_u32("maxPoolSize", &value)?
            ),
            "maxconnecting" => {
                set!(
                    max_connecting,
                    "maxConnecting",
                    parse_u32("maxConnecting", &value)?
                );
            }
            "maxidletimems" => {
                set!(
                    max_idle_time_ms,
                    "maxIdleTimeMS",
                    parse_u64("maxIdleTimeMS", &value)?
                );
            }
            "waitqueuetimeoutms" => set!(
                wait_queue_timeout_ms,
                "waitQueueTimeoutMS",
                parse_u64("waitQueueTimeoutMS", &value)?
            ),
            "connecttimeoutms" => set!(
                connect_timeout_ms,
                "connectTimeoutMS",
                parse_u64("connectTimeoutMS", &value)?
            ),
            "serverselectiontimeoutms" => set!(
                server_selection_timeout_ms,
                "serverSelectionTimeoutMS",
                parse_u64("serverSelectionTimeoutMS", &value)?
            ),
            "heartbeatfrequencyms" => set!(
                heartbeat_frequency_ms,
                "heartbeatFrequencyMS",
                parse_u64("heartbeatFrequencyMS", &value)?
            ),
            "srvmaxhosts" => set!(
                srv_max_hosts,
                "srvMaxHosts",
                parse_u32("srvMaxHosts", &value)?
            ),
            "srvservicename" => set!(srv_service_name, "srvServiceName", value),
            "directconnection" => set!(
                direct_connection,
                "directConnection",
                parse_bool("directConnection", &value)?
            ),
            "loadbalanced" => {
                if parse_bool("loadBalanced", &value)? {
                    return Err(UriError::LoadBalanced);
                }
            }
            _ => {
                if !self.unknown_options.contains(&key) {
                    self.unknown_options.push(key);
                }
            }
        }
        Ok(())
    }

    /// Applies defaults and the cross-option rules.
    pub(super) fn finish(
        self,
        srv: bool,
        hosts: Vec<HostPort>,
        database: Option<String>,
    ) -> Result<UriOptions, UriError> {
        if let Some(mechanism) = self.auth_mechanism
            && !mechanism.eq_ignore_ascii_case(AUTH_MECHANISM)
        {
            return Err(UriError::UnsupportedMechanism(truncate(&mechanism)));
        }
        if let Some(source) = self.auth_source
            && source != AUTH_SOURCE
        {
            return Err(UriError::UnsupportedAuthSource(truncate(&source)));
        }
        let tls = match (self.tls, self.ssl) {
            (Some(a), Some(b)) if a != b => return Err(UriError::TlsSslConflict),
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => srv,
        };
        if srv && !tls {
            return Err(UriError::SrvTlsDisabled);
        }
        if self.tls_ca_file.is_some() && !tls {
            return Err(UriError::Conflict(
                "tlsCAFile is given but TLS is off: add tls=true or remove tlsCAFile",
            ));
        }

        let seeds = if srv {
            let mut hosts = hosts.into_iter();
            let (Some(first), None) = (hosts.next(), hosts.next()) else {
                return Err(UriError::SrvMultipleHosts);
            };
            if first.host.parse::<std::net::IpAddr>().is_ok() {
                return Err(UriError::InvalidHost {
                    host: first.host,
                    reason: "mongodb+srv:// needs a DNS name, not an IP address",
                });
            }
            let service_name = match self.srv_service_name {
                None => DEFAULT_SRV_SERVICE_NAME.to_owned(),
                Some(name) => {
                    let valid = (1..=15).contains(&name.len())
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !name.starts_with('-')
                        && !name.ends_with('-');
                    if !valid {
                        return Err(UriError::InvalidValue {
                            option: "srvServiceName",
                            value: truncate(&name),
                            expected: "1 to 15 letters, digits or inner hyphens",
                        });
                    }
                    name
                }
            };
            Seeds::Srv {
                host: first.host,
                service_name,
            }
        } else {
            if self.srv_max_hosts.is_some() {
                return Err(UriError::SrvOnly("srvMaxHosts"));
            }
            if self.srv_service_name.is_some() {
                return Err(UriError::SrvOnly("srvServiceName"));
            }
            Seeds::List(hosts)
        };

        match (&seeds, self.direct_connection) {
            (Seeds::Srv { .. }, Some(true)) => {
                return Err(UriError::Conflict(
                    "directConnection=true cannot be used with mongodb+srv://: remove it",
                ));
            }
            (Seeds::List(h), Some(true)) if h.len() > 1 => {
                return Err(UriError::Conflict(
                    "directConnection=true takes exactly one host: remove it or the other hosts",
                ));
            }
            _ => {}
        }
        let srv_max_hosts = self.srv_max_hosts.unwrap_or(0);
        if srv_max_hosts > 0 && self.replica_set.is_some() {
            return Err(UriError::Conflict(
                "srvMaxHosts cannot be combined with replicaSet: remove one of them",
            ));
        }

        let max_pool_size = self.max_pool_size.unwrap_or(DEFAULT_MAX_POOL_SIZE);
        if max_pool_size == 0 || max_pool_size > MAX_MAX_POOL_SIZE {
            return Err(UriError::OutOfRange {
                option: "maxPoolSize",
                value: u64::from(max_pool_size),
                why: "use 1 to 100 (per member); 0 would mean unbounded, which mongo-pool does \
                      not allow: every connection counts against the Atlas connection limit",
            });
        }
        let min_pool_size = self.min_pool_size.unwrap_or(DEFAULT_MIN_POOL_SIZE);
        if min_pool_size > max_pool_size {
            return Err(UriError::MinAboveMax {
                min: min_pool_size,
                max: max_pool_size,
            });
        }
        let max_connecting = self.max_connecting.unwrap_or(DEFAULT_MAX_CONNECTING);
        if max_connecting == 0 || max_connecting > MAX_MAX_POOL_SIZE {
            return Err(UriError::OutOfRange {
                option: "maxConnecting",
                value: u64::from(max_connecting),
                why: "use 1 to 100",
            });
        }
        let positive = |option: &'static str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(0) => Err(UriError::OutOfRange {
                option,
                value: 0,
                why: "0 would mean wait forever; mongo-pool bounds every wait: use a positive \
                      number of milliseconds",
            }),
            Some(ms) => Ok(Duration::from_millis(ms)),
        };
        let wait_queue_timeout = positive(
            "waitQueueTimeoutMS",
            self.wait_queue_timeout_ms,
            DEFAULT_WAIT_QUEUE_TIMEOUT,
        )?;
        let connect_timeout = positive(
            "connectTimeoutMS",
            self.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let server_selection_timeout = positive(
            "serverSelectionTimeoutMS",
            self.server_selection_timeout_ms,
            DEFAULT_SERVER_SELECTION_TIMEOUT,
        )?;
        let heartbeat_frequency = match self.heartbeat_frequency_ms {
            None => DEFAULT_HEARTBEAT_FREQUENCY,
            Some(ms) if Duration::from_millis(ms) < MIN_HEARTBEAT_FREQUENCY => {
                return Err(UriError::OutOfRange {
                    option: "heartbeatFrequencyMS",
                    value: ms,
                    why: "the minimum is 500",
                });
            }
            Some(ms) => Duration::from_millis(ms),
        };
        let max_idle_time = self
            .max_idle_time_ms
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        // MONGODB-AWS sends a signed STS request and the session token in its SASL payload:
        // over plain TCP anyone on the path can read and replay them. Only a loopback peer
        // (a local test server, an SSH or SSM tunnel ending on this host) may go without TLS.
        // Checked last, so that any other mistake in the string is reported first.
        if let (false, Seeds::List(hosts)) = (tls, &seeds)
            && let Some(host) = hosts.iter().find(|h| !is_loopback(&h.host))
        {
            return Err(UriError::PlaintextToRemoteHost(truncate(&host.to_string())));
        }

        Ok(UriOptions {
            seeds,
            database,
            replica_set: self.replica_set,
            tls,
            tls_ca_file: self.tls_ca_file,
            app_name: self.app_name,
            min_pool_size,
            max_pool_size,
            max_connecting,
            max_idle_time,
            wait_queue_timeout,
            connect_timeout,
            server_selection_timeout,
            heartbeat_frequency,
            srv_max_hosts,
            direct_connection: self.direct_connection,
            function_options: self.function_options,
            unknown_options: self.unknown_options,
        })
    }
}

/// `localhost`, or an IP address in 127.0.0.0/8 or `::1` (also IPv4-mapped): a peer on this
/// host, whose traffic never crosses a network.
pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn truncate(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &value[..i]),
        None => value.to_owned(),
    }
}

fn non_empty(option: &'static str, value: String) -> Result<String, UriError> {
    if value.is_empty() {
        Err(UriError::InvalidValue {
            option,
            value,
            expected: "a non-empty value",
        })
    } else {
        Ok(value)
    }
}

fn parse_bool(option: &'static str, value: &str) -> Result<bool, UriError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(UriError::InvalidValue {
            option,
            value: truncate(value),
            expected: "true or false",
        }),
    }
}

fn parse_u64(option: &'static str, value: &str) -> Result<u64, UriError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::InvalidValue {
            option,
            value: truncate(value),
            expected: "a non-negative whole number",
        });
    }
    value.parse().map_err(|_| UriError::InvalidValue {
        option,
        value: truncate(value),
        expected: "a non-negative whole number",
    })
}

fn parse_u32(option: &'static str, value: &str) -> Result<u32, UriError> {
    let n = parse_u64(option, value)?;
    u32::try_from(n).map_err(|_| UriError::OutOfRange {
        option,
        value: n,
        why: "too large",
    })
}
