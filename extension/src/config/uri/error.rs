//! Why a connection string was rejected.

use thiserror::Error;

/// Why a connection string was rejected; each message says what to change.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    /// Neither `mongodb://` nor `mongodb+srv://`.
    #[error("the connection string must start with mongodb:// or mongodb+srv://")]
    BadScheme,
    /// The string does not have the shape of a connection string.
    #[error("malformed connection string: {0}")]
    Malformed(&'static str),
    /// A `%` not followed by two hex digits, or an escape that is not UTF-8.
    #[error("invalid percent-encoding in the {0} of the connection string")]
    PercentEncoding(&'static str),
    /// A host that cannot be used.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A port that is not a number from 1 to 65535.
    #[error("invalid port {port:?} for host {host:?}: use a number from 1 to 65535")]
    InvalidPort {
        /// The host.
        host: String,
        /// The port as written.
        port: String,
    },
    /// `mongodb+srv` with a port.
    #[error("a mongodb+srv:// host cannot have a port: remove \":{0}\" (SRV records name ports)")]
    SrvWithPort(String),
    /// `mongodb+srv` with more than one host.
    #[error("mongodb+srv:// takes exactly one host name; use mongodb:// to list several hosts")]
    SrvMultipleHosts,
    /// `mongodb+srv` with `tls=false`.
    #[error("tls=false (or ssl=false) cannot be used with mongodb+srv://: remove it")]
    SrvTlsDisabled,
    /// TLS off towards a host that is not on this machine.
    #[error(
        "TLS is off (mongodb:// without tls=true, or tls=false) and {0} is not a loopback \
         address: MONGODB-AWS would send the signed STS request and the session token in \
         cleartext, where anyone on the path can replay them. Add tls=true (Atlas always \
         requires TLS) or use the mongodb+srv:// string Atlas gives; TLS may be off only for \
         localhost, 127.0.0.0/8 and ::1"
    )]
    PlaintextToRemoteHost(String),
    /// An option that only applies to `mongodb+srv://`.
    #[error("{0} only applies to mongodb+srv:// connection strings: remove it")]
    SrvOnly(&'static str),
    /// Credentials in the URI.
    #[error(
        "the connection string carries credentials (user:password@): remove them. mongo-pool \
         authenticates with MONGODB-AWS using the AWS credentials of its environment (the \
         Lambda execution role); access keys in the URI are deprecated. Create an Atlas \
         database user for the role's ARN in $external instead"
    )]
    CredentialsInUri,
    /// `authMechanismProperties` (e.g. `AWS_SESSION_TOKEN`) in the URI.
    #[error(
        "remove authMechanismProperties from the connection string: a session token there is \
         deprecated; mongo-pool takes AWS credentials from its environment (the execution role)"
    )]
    MechanismProperties,
    /// A mechanism other than MONGODB-AWS.
    #[error(
        "authMechanism={0} is not supported: mongo-pool authenticates with MONGODB-AWS only; \
         set authMechanism=MONGODB-AWS or remove the option"
    )]
    UnsupportedMechanism(String),
    /// An `authSource` other than `$external`.
    #[error("authSource={0} cannot work with MONGODB-AWS: use authSource=%24external or remove it")]
    UnsupportedAuthSource(String),
    /// A value of the wrong type.
    #[error("{option}={value:?} is invalid: expected {expected}")]
    InvalidValue {
        /// The option (canonical spelling).
        option: &'static str,
        /// The value as given, truncated.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// A number outside the accepted range.
    #[error("{option}={value} is out of range: {why}")]
    OutOfRange {
        /// The option (canonical spelling).
        option: &'static str,
        /// The value.
        value: u64,
        /// The accepted range and why.
        why: &'static str,
    },
    /// A TLS option that would disable certificate verification.
    #[error(
        "{0}=true would turn off TLS certificate verification, which mongo-pool never does: \
         remove it (use tlsCAFile to trust a private CA)"
    )]
    VerificationDisabled(&'static str),
    /// `tls` and `ssl` disagree.
    #[error("tls and ssl are given with different values: keep one of them")]
    TlsSslConflict,
    /// `minPoolSize` above `maxPoolSize`.
    #[error("minPoolSize={min} is larger than maxPoolSize={max}: lower minPoolSize")]
    MinAboveMax {
        /// `minPoolSize`.
        min: u32,
        /// `maxPoolSize`.
        max: u32,
    },
    /// `loadBalanced=true`.
    #[error(
        "loadBalanced=true is not supported: behind a load balancer a cursor or transaction \
         lives on one connection (serviceId), while mongo-pool shares upstream connections \
         between requests; connect to the replica set or sharded cluster directly"
    )]
    LoadBalanced,
    /// The same pool option twice.
    #[error("{0} is given more than once: keep one")]
    Duplicate(&'static str),
    /// Options that contradict each other.
    #[error("{0}")]
    Conflict(&'static str),
    /// An option mongo-pool cannot honour.
    #[error("{option} is not supported: {why}")]
    Unsupported {
        /// The option.
        option: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
}
