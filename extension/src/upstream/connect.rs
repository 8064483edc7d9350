//! Establishing upstream connections: resolve, TCP (with `connectTimeoutMS`, `TCP_NODELAY` and
//! keepalive below the 350 s NAT idle limit), TLS with verification always on (webpki roots plus
//! `tlsCAFile`), the `hello` handshake, then MONGODB-AWS.
//!
//! Each member's pool bounds its own establishments (`maxConnecting` per member, as CMAP has it),
//! so a slow member never holds up the primary's first connection. Authentications share one
//! [`AuthGate`]: after an authentication failure the next attempt to any member waits for an
//! exponential backoff with jitter; an attempt during the backoff fails at once with the last
//! cause instead of calling STS again. On the first failure of an episode mongo-pool asks STS
//! itself who the credentials belong to and logs what to change.

mod error;
mod gate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bson::Document;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use super::auth::credentials::{CredentialsProvider, CredentialsSource};
use super::auth::sts::{StsEndpoint, diagnose};
use super::auth::{self, AuthError, SaslReply};
use super::connection::{Connection, Stream};
use super::handshake::{HelloReply, client_metadata, hello_command};
use crate::config::{CaCertificates, Config, HostPort};
use crate::metrics::Metrics;
use crate::topology::srv::{Resolver, SrvError};
use error::upstream_to_connect;
pub use error::{ConnectError, Stage};
pub use gate::AuthGate;

/// TCP keepalive idle time: well below the 350 s after which NAT gateways drop idle flows.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(120);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long mongo-pool waits for STS when diagnosing an authentication failure.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything needed to open authenticated connections to any member.
#[derive(Debug)]
pub struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    resolver: Arc<Resolver>,
    credentials: CredentialsProvider,
    sts: Option<StsEndpoint>,
    client_metadata: Document,
    connect_timeout: Duration,
    max_message_size: usize,
    gate: AuthGate,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Why the connector could not be built (bad TLS settings, resolver setup).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A `tlsCAFile` certificate (loaded and checked by `Config`) cannot be used as a root.
    #[error("tlsCAFile {path}: {cause}")]
    CaFile {
        /// The path.
        path: String,
        /// What is wrong.
        cause: String,
    },
    /// TLS could not be configured.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The DNS resolver could not be set up.
    #[error(transparent)]
    Resolver(#[from] SrvError),
}

/// Builds the rustls client configuration: webpki roots plus the `tlsCAFile` certificates
/// that [`Config`] loaded at start. Verification is always on; there is no setting to turn it
/// off.
///
/// # Errors
/// [`ConnectorError::CaFile`] when a certificate cannot be used as a root.
pub fn tls_config(
    ca: Option<&CaCertificates>,
) -> Result<Arc<rustls::ClientConfig>, ConnectorError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        for cert in ca.certificates() {
            roots
                .add(cert.clone())
                .map_err(|e| ConnectorError::CaFile {
                    path: ca.path().to_owned(),
                    cause: e.to_string(),
                })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Connector {
    /// A connector for `config`, reading AWS settings through `lookup`.
    ///
    /// # Errors
    /// [`ConnectorError`] for an unreadable CA file or a resolver that cannot be set up.
    pub fn new(
        config: &Config,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static,
        metrics: Arc<Metrics>,
    ) -> Result<Connector, ConnectorError> {
        let uri = &config.uri;
        let tls = if uri.tls {
            Some(tls_config(config.tls_ca.as_ref())?)
        } else {
            None
        };
        let resolver = Arc::new(Resolver::new(config.dns_server)?);
        let region = lookup("AWS_REGION").or_else(|| lookup("AWS_DEFAULT_REGION"));
        let sts = match StsEndpoint::from_lookup(lookup.clone()) {
            Ok(sts) => Some(sts),
            Err(e) => {
                tracing::warn!(error = %e, "STS endpoint settings are invalid; auth failures will not be diagnosed");
                None
            }
        };
        let faas = config
            .faas
            .is_lambda(&config.run_mode)
            .then_some(&config.faas);
        Ok(Connector {
            tls,
            resolver,
            credentials: CredentialsProvider::standard_chain(lookup, region),
            sts,
            client_metadata: client_metadata(uri.app_name.as_deref(), faas),
            connect_timeout: uri.connect_timeout,
            max_message_size: mongo_pool_wire::MAX_MESSAGE_SIZE,
            gate: AuthGate::default(),
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    /// Replaces the credentials provider (tests, and `mongo-pool check` with fixed keys).
    #[must_use]
    pub fn with_credentials(mut self, credentials: CredentialsProvider) -> Self {
        self.credentials = credentials;
        self
    }

    /// The resolver for host names and `mongodb+srv`.
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// `connectTimeoutMS`: the limit of each step of establishing, and of pings.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Opens, handshakes and authenticates a connection to `address` for pool `generation`.
    /// Waits for one of the member's `slots` (its pool's `maxConnecting`) first. Cancel-safe
    /// (nothing is shared until it returns).
    ///
    /// # Errors
    /// Any [`ConnectError`]; during an authentication backoff, [`ConnectError::Backoff`] at once.
    pub async fn establish(
        &self,
        address: &HostPort,
        generation: u64,
        slots: &Semaphore,
    ) -> Result<Connection, ConnectError> {
        self.gate.check()?;
        let _slot = slots
            .acquire()
            .await
            .map_err(|e| ConnectError::network(address, Stage::Tcp, &e))?;
        self.gate.check()?;
        let started = Instant::now();
        let mut conn = self.open(address, generation).await?;
        let hello = self.handshake(&mut conn).await?;
        conn.set_hello(hello);
        self.authenticate(&mut conn).await?;
        self.metrics.connection_created();
        tracing::debug!(%address, id = conn.id(), ms = started.elapsed().as_millis() as u64, "upstream connection established");
        Ok(conn)
    }

    /// Without TLS, only addresses on this host may be dialled (see
    /// [`ConnectError::Cleartext`]).
    fn refuse_cleartext(
        &self,
        address: &HostPort,
        addrs: &[std::net::SocketAddr],
    ) -> Result<(), ConnectError> {
        match addrs.iter().find(|a| !a.ip().to_canonical().is_loopback()) {
            Some(remote) if self.tls.is_none() => Err(ConnectError::Cleartext {
                address: address.clone(),
                ip: remote.ip(),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) async fn open(
        &self,
        address: &HostPort,
        generation: u64,
    ) -> Result<Connection, ConnectError> {
        let limit = self.connect_timeout;
        let timeout = |stage| ConnectError::Timeout {
            address: address.clone(),
            stage,
            after: limit,
        };
        let addrs = tokio::time::timeout(
            limit,
            self.resolver.lookup_host(&address.host, address.port),
        )
        .await
        .map_err(|_| timeout(Stage::Resolve))?
        .map_err(|e| ConnectError::Resolve {
            address: address.clone(),
            source: Arc::new(e),
        })?;
        self.refuse_cleartext(address, &addrs)?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut last_error = None;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(e)) => last_error = Some(ConnectError::network(address, Stage::Tcp, &e)),
                Err(_) => return Err(timeout(Stage::Tcp)),
            }
        }
        let tcp = match (tcp, last_error) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(ConnectError::network(address, Stage::Tcp, &"no address")),
        };
        configure_socket(&tcp);
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(address.host.clone())
                    .map_err(|e| ConnectError::network(address, Stage::Tls, &e))?;
                let tls_stream = tokio::time::timeout(
                    limit,
                    TlsConnector::from(Arc::clone(tls)).connect(name, tcp),
                )
                .await
                .map_err(|_| timeout(Stage::Tls))?
                .map_err(|e| ConnectError::network(address, Stage::Tls, &e))?;
                Box::new(tls_stream)
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Connection::new(
            stream,
            address.clone(),
            id,
            generation,
            self.max_message_size,
        ))
    }

    pub(crate) async fn handshake(
        &self,
        conn: &mut Connection,
    ) -> Result<HelloReply, ConnectError> {
        let address = conn.address().clone();
        let reply = conn
            .command(&hello_command(&self.client_metadata), self.connect_timeout)
            .await
            .map_err(|e| upstream_to_connect(&address, Stage::Hello, e))?;
        HelloReply::parse(&reply).map_err(|source| ConnectError::Hello { address, source })
    }

    pub(crate) async fn authenticate(
        &self,
        conn: &mut Connection,
    ) -> Result<CredentialsSource, ConnectError> {
        let address = conn.address().clone();
        let (credentials, source) = self
            .credentials
            .credentials()
            .await
            .map_err(|e| ConnectError::Credentials(Arc::new(e)))?;
        self.metrics.auth_attempt();
        let outcome = self.conversation(conn, &credentials).await;
        match outcome {
            Ok(()) => {
                self.metrics.auth_succeeded();
                self.gate.succeeded();
                tracing::debug!(%address, credentials = ?source, "MONGODB-AWS authentication succeeded");
                Ok(source)
            }
            Err(Err(network)) => {
                self.metrics.auth_failed();
                Err(network)
            }
            Err(Ok(auth_error)) => {
                self.metrics.auth_failed();
                // Endpoint credentials may have been rotated: fetch them again next time.
                self.credentials.invalidate();
                let diagnosis = if self.gate.episode.should_diagnose() {
                    match &self.sts {
                        Some(sts) => Some(Arc::new(
                            diagnose(sts, &credentials, DIAGNOSIS_TIMEOUT).await,
                        )),
                        None => None,
                    }
                } else {
                    // Asked once per episode: every later failure repeats what STS said.
                    self.gate.last_diagnosis()
                };
                let error = ConnectError::Auth {
                    address: address.clone(),
                    source: auth_error,
                    diagnosis,
                    hello: Some(Arc::clone(conn.hello())),
                };
                let delay = self.gate.failed(&error);
                tracing::error!(%address, error = %error, retry_in_ms = delay.as_millis() as u64, "MONGODB-AWS authentication failed");
                Err(error)
            }
        }
    }

    /// The SASL conversation. `Err(Ok(_))`: the server refused or the payloads were wrong;
    /// `Err(Err(_))`: the network failed.
    async fn conversation(
        &self,
        conn: &mut Connection,
        credentials: &auth::credentials::Credentials,
    ) -> Result<(), Result<AuthError, ConnectError>> {
        let address = conn.address().clone();
        let limit = self.connect_timeout;
        let first = auth::client_first();
        let reply = conn
            .command(&auth::sasl_start_command(first.payload), limit)
            .await
            .map_err(|e| Err(upstream_to_connect(&address, Stage::Auth, e)))?;
        let start = SaslReply::parse(&reply).map_err(Ok)?;
        let payload =
            auth::client_final(&start.payload, &first.nonce, credentials, SystemTime::now())
                .map_err(Ok)?;
        let reply = conn
            .command(
                &auth::sasl_continue_command(start.conversation_id, payload),
                limit,
            )
            .await
            .map_err(|e| Err(upstream_to_connect(&address, Stage::Auth, e)))?;
        let done = SaslReply::parse(&reply).map_err(Ok)?;
        if !done.done {
            return Err(Ok(AuthError::Reply(
                "the server did not finish the conversation",
            )));
        }
        Ok(())
    }
}

fn configure_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
    }
}

#[cfg(test)]
mod tests;
