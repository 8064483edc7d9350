//! Configuration: the connection string plus the `MONGO_POOL_*` environment variables, parsed
//! once at start into a typed, validated [`Config`] that is then passed down.
//!
//! Nothing else in the crate reads the environment for mongo-pool's own settings. Values come
//! through a lookup function (`Fn(&str) -> Option<String>`) so tests build a `Config` from a
//! table instead of calling `env::set_var`. Every variable is a named constant below and every
//! invalid value is an error that names the variable and says what would be valid: there are no
//! silent fallbacks.
//!
//! The raw connection string is never stored: [`uri::parse`] turns it into [`uri::UriOptions`],
//! which holds no secret (credentials in the URI are rejected), so `Debug` and `Display` of a
//! `Config` are safe to log.

mod ca_file;
mod error;
mod help;
pub mod logging;
pub mod uri;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use ca_file::{CaCertificates, CaFileError, MAX_CA_FILE_SIZE};
pub use error::ConfigError;
pub(crate) use error::closest;
pub use help::HELP;
pub use uri::{HostPort, Seeds, UriError, UriOptions};

/// Prefix shared by every mongo-pool environment variable.
pub const ENV_PREFIX: &str = "MONGO_POOL_";
/// The Atlas connection string (required).
pub const ENV_URI: &str = "MONGO_POOL_URI";
/// Path of the Unix socket served to the function.
pub const ENV_SOCKET: &str = "MONGO_POOL_SOCKET";
/// `auto`, `lambda` or `sidecar`.
pub const ENV_MODE: &str = "MONGO_POOL_MODE";
/// Log level filter: a level (`info`) or comma-separated `target=level` directives with an
/// optional default level (`mongo_pool=debug,warn`), as `tracing_subscriber::filter::Targets`
/// parses them.
pub const ENV_LOG: &str = "MONGO_POOL_LOG";
/// `json` or `text`.
pub const ENV_LOG_FORMAT: &str = "MONGO_POOL_LOG_FORMAT";
/// `ip:port` of the DNS server used for `mongodb+srv` and the hosts it names.
pub const ENV_DNS_SERVER: &str = "MONGO_POOL_DNS_SERVER";
/// Octal permission bits of the socket file.
pub const ENV_SOCKET_MODE: &str = "MONGO_POOL_SOCKET_MODE";
/// Maximum number of concurrent downstream connections.
pub const ENV_MAX_CLIENTS: &str = "MONGO_POOL_MAX_CLIENTS";
/// `off` or `invoke`.
pub const ENV_PREWARM: &str = "MONGO_POOL_PREWARM";
/// `true` or `false`.
pub const ENV_INIT_FAIL_FAST: &str = "MONGO_POOL_INIT_FAIL_FAST";

/// Read by `mongo-pool-client`, not by mongo-pool: the uid the socket's server must run as. Known
/// here so that a function setting it does not trip the unknown-variable check.
pub const ENV_SOCKET_UID: &str = "MONGO_POOL_SOCKET_UID";

/// Every `MONGO_POOL_*` variable mongo-pool knows; anything else with the prefix is a typo.
pub const KNOWN_VARS: &[&str] = &[
    ENV_URI,
    ENV_SOCKET,
    ENV_MODE,
    ENV_LOG,
    ENV_LOG_FORMAT,
    ENV_DNS_SERVER,
    ENV_SOCKET_MODE,
    ENV_MAX_CLIENTS,
    ENV_PREWARM,
    ENV_INIT_FAIL_FAST,
    ENV_SOCKET_UID,
];

/// Set by Lambda: host:port of the Runtime and Extensions APIs.
pub const ENV_LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
/// Set by Lambda: e.g. `AWS_Lambda_python3.12`.
pub const ENV_EXECUTION_ENV: &str = "AWS_EXECUTION_ENV";
/// Set by Lambda: the function's memory in MiB.
pub const ENV_FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
/// <https://no-color.org>: any non-empty value turns ANSI colours off in text logs.
pub const ENV_NO_COLOR: &str = "NO_COLOR";
/// Set by Lambda's advanced logging controls: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` or
/// `FATAL`; followed when `MONGO_POOL_LOG` is unset.
pub const ENV_LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
/// Set by Lambda's advanced logging controls: `JSON` or `Text`; followed when
/// `MONGO_POOL_LOG_FORMAT` is unset.
pub const ENV_LAMBDA_LOG_FORMAT: &str = "AWS_LAMBDA_LOG_FORMAT";
/// Set by Lambda (and commonly on ECS/EC2): the AWS region.
pub const ENV_REGION: &str = "AWS_REGION";

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/tmp/mongo-pool.sock";
/// Default log filter.
pub const DEFAULT_LOG: &str = "info";
/// Default socket permission bits: the owner only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
/// Default number of concurrent downstream connections.
pub const DEFAULT_MAX_CLIENTS: u32 = 512;
/// Upper bound of `MONGO_POOL_MAX_CLIENTS` (each one is a task and a file descriptor).
pub const MAX_MAX_CLIENTS: u32 = 65_536;

/// How the process runs, as asked for by `MONGO_POOL_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lambda when `AWS_LAMBDA_RUNTIME_API` is set, else sidecar.
    Auto,
    /// Register with the Lambda Extensions API.
    Lambda,
    /// Run as a plain daemon until SIGTERM (ECS, EKS, EC2).
    Sidecar,
}

/// How the process runs once `MONGO_POOL_MODE` and the environment are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// A Lambda extension talking to the Extensions API at `runtime_api` (`host:port`).
    Lambda {
        /// The value of `AWS_LAMBDA_RUNTIME_API`.
        runtime_api: String,
    },
    /// A sidecar daemon.
    Sidecar,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (CloudWatch-friendly); the default in Lambda.
    Json,
    /// Human-readable text; the default elsewhere.
    Text,
}

/// Whether to re-validate idle connections as each invocation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prewarm {
    /// Only `SHUTDOWN` is subscribed; connections are checked at check-out.
    Off,
    /// Also subscribe to `INVOKE` and re-validate idle connections on it.
    Invoke,
}

/// Permission bits of the socket file (at most `0o777`, owner read+write always set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    /// The permission bits, for `std::fs::Permissions::from_mode`.
    #[must_use]
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Facts about the Lambda environment used in the handshake's client metadata (`client.env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaasEnv {
    /// `AWS_EXECUTION_ENV`, e.g. `AWS_Lambda_nodejs22.x`.
    pub execution_env: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` in MiB.
    pub memory_mb: Option<u32>,
    /// `AWS_REGION`.
    pub region: Option<String>,
}

impl FaasEnv {
    /// True when these facts describe AWS Lambda (the handshake spec's detection rule:
    /// `AWS_EXECUTION_ENV` starting with `AWS_Lambda_`, or `AWS_LAMBDA_RUNTIME_API` set).
    #[must_use]
    pub fn is_lambda(&self, run_mode: &RunMode) -> bool {
        matches!(run_mode, RunMode::Lambda { .. })
            || self
                .execution_env
                .as_deref()
                .is_some_and(|e| e.starts_with("AWS_Lambda_"))
    }
}

/// The whole validated configuration. Holds no secret: safe to `Debug` and `Display`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The parsed connection string.
    pub uri: UriOptions,
    /// The certificates of `tlsCAFile`, read at start.
    pub tls_ca: Option<CaCertificates>,
    /// `MONGO_POOL_*` variables that were set but empty, and so treated as unset (logged at
    /// debug once logging is set up).
    pub empty_variables: Vec<&'static str>,
    /// Socket path (`MONGO_POOL_SOCKET`).
    pub socket_path: PathBuf,
    /// Socket permission bits (`MONGO_POOL_SOCKET_MODE`).
    pub socket_mode: SocketMode,
    /// Lambda extension or sidecar.
    pub run_mode: RunMode,
    /// Log filter (`MONGO_POOL_LOG`).
    pub log_filter: String,
    /// Log format (`MONGO_POOL_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// `NO_COLOR` asks for no ANSI colours (text logs have them only on a terminal anyway).
    pub no_color: bool,
    /// DNS server for `mongodb+srv` and host lookups (`MONGO_POOL_DNS_SERVER`).
    pub dns_server: Option<SocketAddr>,
    /// Concurrent downstream connections (`MONGO_POOL_MAX_CLIENTS`), at least 1.
    pub max_clients: u32,
    /// `MONGO_POOL_PREWARM`.
    pub prewarm: Prewarm,
    /// `MONGO_POOL_INIT_FAIL_FAST`.
    pub init_fail_fast: bool,
    /// Lambda facts for the handshake metadata.
    pub faas: FaasEnv,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.run_mode {
            RunMode::Lambda { .. } => "lambda",
            RunMode::Sidecar => "sidecar",
        };
        write!(
            f,
            "mode={mode} socket={} socket_mode={} max_clients={} prewarm={:?} \
             init_fail_fast={} upstream=[{}]",
            self.socket_path.display(),
            self.socket_mode,
            self.max_clients,
            self.prewarm,
            self.init_fail_fast,
            self.uri
        )?;
        if let Some(dns) = self.dns_server {
            write!(f, " dns_server={dns}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the configuration from the process environment, rejecting unknown `MONGO_POOL_*`
    /// variables.
    ///
    /// A variable whose value is not valid Unicode is read lossily, so that it fails validation
    /// with a message rather than being ignored.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`]: a missing `MONGO_POOL_URI`, an invalid value, an unknown variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        Self::from_lookup_and_names(
            |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
            names,
        )
    }

    /// Builds the configuration from a lookup function, without checking for unknown
    /// variables (a lookup cannot enumerate; see [`Config::from_lookup_and_names`]).
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`] but [`ConfigError::UnknownVariable`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_lookup_and_names(lookup, std::iter::empty::<&str>())
    }

    /// Builds the configuration from a lookup function and the names of every variable that is
    /// set, rejecting any `MONGO_POOL_*` name that is not in [`KNOWN_VARS`].
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`].
    pub fn from_lookup_and_names<I>(
        lookup: impl Fn(&str) -> Option<String>,
        names: I,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        check_unknown(names)?;
        // An empty variable is unset: CloudFormation cannot leave a variable out without
        // conditions, so templates set `MONGO_POOL_X: ""` for an empty parameter.
        let empty_variables: Vec<&'static str> = KNOWN_VARS
            .iter()
            .copied()
            .filter(|var| lookup(var).is_some_and(|v| v.trim().is_empty()))
            .collect();
        let get = |var: &'static str| -> Result<Option<String>, ConfigError> {
            Ok(lookup(var).filter(|v| !v.trim().is_empty()))
        };

        let raw_uri = get(ENV_URI)?.ok_or(ConfigError::Missing {
            var: ENV_URI,
            hint: "set it to the Atlas connection string, e.g. \
                   mongodb+srv://cluster0.example.mongodb.net/?authMechanism=MONGODB-AWS",
        })?;
        let uri = uri::parse(&raw_uri)?;
        let tls_ca = uri.tls_ca_file.as_deref().map(ca_file::load).transpose()?;

        let socket_path = PathBuf::from(get(ENV_SOCKET)?.unwrap_or_else(|| DEFAULT_SOCKET.into()));
        if !socket_path.is_absolute() {
            return Err(invalid(
                ENV_SOCKET,
                socket_path.display(),
                "an absolute path",
            ));
        }
        let mode = match get(ENV_MODE)? {
            None => Mode::Auto,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "auto" => Mode::Auto,
                "lambda" => Mode::Lambda,
                "sidecar" => Mode::Sidecar,
                _ => return Err(invalid(ENV_MODE, v, "one of auto, lambda, sidecar")),
            },
        };
        // AWS facts are set by Lambda itself: empty means absent, not a user error.
        let aws = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let runtime_api = aws(ENV_LAMBDA_RUNTIME_API);
        let run_mode = match (mode, runtime_api) {
            (Mode::Sidecar, _) | (Mode::Auto, None) => RunMode::Sidecar,
            (Mode::Auto | Mode::Lambda, Some(runtime_api)) => RunMode::Lambda { runtime_api },
            (Mode::Lambda, None) => {
                return Err(invalid(
                    ENV_MODE,
                    "lambda",
                    format!("lambda mode needs {ENV_LAMBDA_RUNTIME_API}, which is not set"),
                ));
            }
        };
        // MONGO_POOL_LOG, else Lambda's advanced logging controls, else the default.
        let log_filter = match (get(ENV_LOG)?, aws(ENV_LAMBDA_LOG_LEVEL)) {
            (Some(filter), _) => {
                if let Err(why) = logging::validate(&filter) {
                    return Err(invalid(
                        ENV_LOG,
                        &filter,
                        format!("{why}; {}", logging::SYNTAX),
                    ));
                }
                filter
            }
            (None, Some(level)) => logging::from_lambda_level(&level)
                .ok_or_else(|| {
                    invalid(
                        ENV_LAMBDA_LOG_LEVEL,
                        &level,
                        "one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL (set by Lambda's logging \
                         configuration), or set MONGO_POOL_LOG",
                    )
                })?
                .to_owned(),
            (None, None) => DEFAULT_LOG.into(),
        };
        if let Err(err) = log_filter.parse::<tracing_subscriber::filter::Targets>() {
            return Err(invalid(
                ENV_LOG,
                &log_filter,
                format!("{} ({err})", logging::SYNTAX),
            ));
        }
        let log_format = match (get(ENV_LOG_FORMAT)?, aws(ENV_LAMBDA_LOG_FORMAT)) {
            (Some(v), _) => match v.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => return Err(invalid(ENV_LOG_FORMAT, v, "json or text")),
            },
            (None, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(invalid(
                        ENV_LAMBDA_LOG_FORMAT,
                        v,
                        "JSON or Text (set by Lambda's logging configuration), or set \
                         MONGO_POOL_LOG_FORMAT",
                    ));
                }
            },
            (None, None) if matches!(run_mode, RunMode::Lambda { .. }) => LogFormat::Json,
            (None, None) => LogFormat::Text,
        };
        let dns_server = get(ENV_DNS_SERVER)?
            .map(|v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        ENV_DNS_SERVER,
                        &v,
                        "ip:port, e.g. 10.0.0.2:53 or [fd00::2]:53",
                    )
                })
            })
            .transpose()?;
        let socket_mode = match get(ENV_SOCKET_MODE)? {
            None => SocketMode(DEFAULT_SOCKET_MODE),
            Some(v) => parse_socket_mode(&v)?,
        };
        let max_clients = match get(ENV_MAX_CLIENTS)? {
            None => DEFAULT_MAX_CLIENTS,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_MAX_CLIENTS).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        ENV_MAX_CLIENTS,
                        v,
                        format!("a whole number from 1 to {MAX_MAX_CLIENTS}"),
                    ));
                }
            },
        };
        let prewarm = match get(ENV_PREWARM)? {
            None => Prewarm::Off,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "off" => Prewarm::Off,
                "invoke" => Prewarm::Invoke,
                _ => return Err(invalid(ENV_PREWARM, v, "off or invoke")),
            },
        };
        let init_fail_fast = match get(ENV_INIT_FAIL_FAST)? {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(ENV_INIT_FAIL_FAST, v, "true or false")),
            },
        };
        let memory_mb = aws(ENV_FUNCTION_MEMORY_SIZE)
            .map(|v| {
                v.trim().parse::<u32>().map_err(|_| {
                    invalid(
                        ENV_FUNCTION_MEMORY_SIZE,
                        &v,
                        "a whole number of MiB (set by Lambda)",
                    )
                })
            })
            .transpose()?;
        let faas = FaasEnv {
            execution_env: aws(ENV_EXECUTION_ENV),
            memory_mb,
            region: aws(ENV_REGION),
        };

        Ok(Self {
            uri,
            tls_ca,
            empty_variables,
            socket_path,
            socket_mode,
            run_mode,
            log_filter,
            log_format,
            no_color: logging::no_color(lookup(ENV_NO_COLOR).as_deref()),
            dns_server,
            max_clients,
            prewarm,
            init_fail_fast,
            faas,
        })
    }
}

fn invalid(
    var: &'static str,
    value: impl fmt::Display,
    expected: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn check_unknown<I>(names: I) -> Result<(), ConfigError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    for name in names {
        let name = name.as_ref();
        if name.starts_with(ENV_PREFIX) && !KNOWN_VARS.contains(&name) {
            return Err(ConfigError::UnknownVariable {
                name: name.to_owned(),
                suggestion: closest(name, KNOWN_VARS.iter().copied(), ENV_PREFIX),
                known: KNOWN_VARS.join(", "),
            });
        }
    }
    Ok(())
}

/// Parses `600`, `0600`, `0o600` or `0660`: octal, no special bits (setuid, setgid, sticky),
/// owner read+write set (the function connects as the same user in Lambda).
fn parse_socket_mode(value: &str) -> Result<SocketMode, ConfigError> {
    let expected = "an octal mode from 0600 to 0777 without setuid/setgid/sticky bits, \
                    with owner read+write, e.g. 0600 or 0660";
    let digits = value.strip_prefix("0o").unwrap_or(value);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(invalid(ENV_SOCKET_MODE, value, expected));
    }
    let bits =
        u32::from_str_radix(digits, 8).map_err(|_| invalid(ENV_SOCKET_MODE, value, expected))?;
    if bits > 0o777 || bits & 0o600 != 0o600 {
        return Err(invalid(ENV_SOCKET_MODE, value, expected));
    }
    Ok(SocketMode(bits))
}

#[cfg(test)]
mod tests;
