//! Why establishing a connection failed, and at which step.

use std::sync::Arc;
use std::time::Duration;

use crate::config::HostPort;
use crate::topology::srv::SrvError;
use crate::upstream::auth::AuthError;
use crate::upstream::auth::credentials::CredentialsError;
use crate::upstream::auth::sts::Diagnosis;
use crate::upstream::connection::UpstreamError;
use crate::upstream::handshake::{HelloError, HelloReply};

/// The step of establishing a connection that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Resolving the host name.
    Resolve,
    /// The TCP connection.
    Tcp,
    /// The TLS handshake.
    Tls,
    /// The `hello` handshake.
    Hello,
    /// MONGODB-AWS.
    Auth,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Resolve => "DNS resolution",
            Stage::Tcp => "TCP connect",
            Stage::Tls => "TLS handshake",
            Stage::Hello => "hello handshake",
            Stage::Auth => "MONGODB-AWS authentication",
        })
    }
}

/// Why a connection could not be established.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("{address}: DNS resolution failed: {source}")]
    Resolve {
        /// The member.
        address: HostPort,
        /// The cause.
        #[source]
        source: Arc<SrvError>,
    },
    /// A step did not finish within `connectTimeoutMS`.
    #[error("{address}: {stage} did not finish within {after:?} (connectTimeoutMS)")]
    Timeout {
        /// The member.
        address: HostPort,
        /// The step.
        stage: Stage,
        /// The limit.
        after: Duration,
    },
    /// The network refused or failed.
    #[error("{address}: {stage} failed: {cause}")]
    Network {
        /// The member.
        address: HostPort,
        /// The step.
        stage: Stage,
        /// The cause (certificate errors included).
        cause: String,
    },
    /// The server's `hello` reply is unusable.
    #[error("{address}: {source}")]
    Hello {
        /// The member.
        address: HostPort,
        /// The cause.
        #[source]
        source: HelloError,
    },
    /// No AWS credentials could be found.
    #[error("no AWS credentials: {0}")]
    Credentials(Arc<CredentialsError>),
    /// Atlas refused the authentication, or the conversation failed.
    #[error("{address}: MONGODB-AWS authentication failed: {source}{}", diagnosis.as_ref().map(|d| format!("; {d}")).unwrap_or_default())]
    Auth {
        /// The member.
        address: HostPort,
        /// The server's answer or the conversation error.
        #[source]
        source: AuthError,
        /// What mongo-pool found out by asking STS itself.
        diagnosis: Option<Arc<Diagnosis>>,
        /// The member's `hello`, answered before it refused the authentication.
        hello: Option<Arc<HelloReply>>,
    },
    /// TLS is off and the member's address is not on this host: MONGODB-AWS would send the
    /// signed STS request and the session token in clear. The configuration allows TLS off for
    /// loopback seeds only; this catches members that discovery added (a replica set's `hosts`)
    /// and host names that resolve elsewhere.
    #[error(
        "{address}: refusing to connect without TLS to {ip}, which is not a loopback address          (MONGODB-AWS would send credentials in clear); add tls=true to MONGO_POOL_URI"
    )]
    Cleartext {
        /// The member.
        address: HostPort,
        /// The address it resolved to.
        ip: std::net::IpAddr,
    },
    /// An earlier authentication failed and the backoff has not elapsed.
    #[error("authentication is backing off for {remaining:?} after: {last}")]
    Backoff {
        /// Time left.
        remaining: Duration,
        /// The failure that started the backoff.
        last: Box<ConnectError>,
    },
}

impl ConnectError {
    /// Whether this is an authentication failure (so retrying soon would only hammer STS).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ConnectError::Auth { .. } | ConnectError::Backoff { .. } | ConnectError::Credentials(_)
        )
    }

    /// When the member answered `hello` and STS has told why the authentication was refused
    /// (the credentials are rejected, or no database user maps to them), that `hello`: the
    /// member is there and says what it is, and nothing but a configuration change will let
    /// mongo-pool in. Not for throttling or an unreachable STS, which may pass by themselves.
    pub fn refused_by(&self) -> Option<&Arc<HelloReply>> {
        match self {
            ConnectError::Auth {
                diagnosis: Some(diagnosis),
                hello: Some(hello),
                ..
            } if diagnosis.is_definitive() => Some(hello),
            ConnectError::Backoff { last, .. } => last.refused_by(),
            _ => None,
        }
    }

    pub(super) fn network(address: &HostPort, stage: Stage, e: &dyn std::fmt::Display) -> Self {
        ConnectError::Network {
            address: address.clone(),
            stage,
            cause: e.to_string(),
        }
    }
}

pub(super) fn upstream_to_connect(
    address: &HostPort,
    stage: Stage,
    e: UpstreamError,
) -> ConnectError {
    match e {
        UpstreamError::Timeout { after, .. } => ConnectError::Timeout {
            address: address.clone(),
            stage,
            after,
        },
        other => ConnectError::network(address, stage, &other),
    }
}
