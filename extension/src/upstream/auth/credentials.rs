//! AWS credentials for MONGODB-AWS: the standard chain of the auth spec, with the caching rules
//! the spec asks for.
//!
//! Order: environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, read
//! through the lookup at every authentication, never cached: Lambda rotates them in place),
//! then one endpoint source picked at start from the environment: web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`; STS honours `AWS_ENDPOINT_URL_STS`), the
//! ECS container endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`), or EC2
//! IMDSv2 (honouring `AWS_EC2_METADATA_SERVICE_ENDPOINT`; skipped when
//! `AWS_EC2_METADATA_DISABLED=true`). The endpoint sources are aws-config's providers on an
//! HTTPS client using rustls with ring. Their credentials are cached here until 5 minutes
//! before they expire, and dropped by [`CredentialsProvider::invalidate`] after an
//! authentication failure.
//!
//! [`Credentials`] never shows its secret key or session token in `Debug`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use thiserror::Error;

/// `AWS_ACCESS_KEY_ID`.
pub const ENV_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// `AWS_SECRET_ACCESS_KEY`.
pub const ENV_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// `AWS_SESSION_TOKEN`.
pub const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// Web identity token file.
pub const ENV_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// Role to assume with the web identity token.
pub const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
/// ECS relative credentials URI.
pub const ENV_CONTAINER_RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// ECS/EKS full credentials URI.
pub const ENV_CONTAINER_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The ECS/EKS container endpoint's authorization token.
pub const ENV_CONTAINER_AUTHORIZATION_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// A file holding the container endpoint's authorization token (EKS Pod Identity).
pub const ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// Session name for web identity (optional).
pub const ENV_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";
/// IMDS endpoint override (e.g. `http://[fd00:ec2::254]`).
pub const ENV_EC2_METADATA_SERVICE_ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// Set to `true` to skip EC2 IMDS.
pub const ENV_EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";

/// Endpoint credentials are refreshed this long before they expire.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// A set of AWS credentials. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct Credentials(aws_credential_types::Credentials);

impl Credentials {
    /// Builds credentials; `session_token` is present for temporary credentials.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expiry: Option<SystemTime>,
    ) -> Self {
        Self(aws_credential_types::Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            expiry,
            "mongo-pool",
        ))
    }

    /// The access key id (not a secret: it appears in `Authorization` headers and logs of AWS).
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        self.0.access_key_id()
    }

    /// The session token, for temporary credentials. Secret: never log it.
    pub(crate) fn session_token(&self) -> Option<&str> {
        self.0.session_token()
    }

    /// When the credentials expire, if they do.
    #[must_use]
    pub fn expiry(&self) -> Option<SystemTime> {
        self.0.expiry()
    }

    /// True while the credentials are not within [`REFRESH_BEFORE_EXPIRY`] of expiring.
    #[must_use]
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        match self.expiry() {
            None => true,
            Some(expiry) => now
                .checked_add(REFRESH_BEFORE_EXPIRY)
                .is_some_and(|limit| limit < expiry),
        }
    }

    /// The same credentials as the AWS SDK type (for signing).
    pub(crate) fn to_aws(&self) -> aws_credential_types::Credentials {
        self.0.clone()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id())
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token().map(|_| "** redacted **"),
            )
            .field("expiry", &self.expiry())
            .finish()
    }
}

/// Where credentials come from (for logs and diagnosis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsSource {
    /// Fixed credentials (tests, or an embedding application).
    Static,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (Lambda's execution role).
    Environment,
    /// `AssumeRoleWithWebIdentity` (EKS IRSA).
    WebIdentity,
    /// The ECS/EKS container credentials endpoint.
    Container,
    /// EC2 instance metadata (IMDSv2).
    Imds,
}

impl fmt::Display for CredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Static => "static",
            Self::Environment => "environment",
            Self::WebIdentity => "web identity",
            Self::Container => "container endpoint",
            Self::Imds => "EC2 instance metadata",
        })
    }
}

/// Why no credentials could be had.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// No source in the chain applies.
    #[error(
        "no AWS credentials found: set {ENV_ACCESS_KEY_ID}/{ENV_SECRET_ACCESS_KEY} (Lambda does \
         this for the execution role), {ENV_WEB_IDENTITY_TOKEN_FILE}+{ENV_ROLE_ARN}, or run \
         where a container or EC2 metadata endpoint provides them"
    )]
    NotFound,
    /// One environment variable of a pair is set and the other is not.
    #[error("{present} is set but {missing} is not: set both or neither")]
    IncompleteEnvironment {
        /// The variable that is set.
        present: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// The container endpoint's authorization token cannot be sent as a header. Its value is
    /// never shown.
    #[error(
        "the container credentials authorization token ({var}) is not a valid HTTP header \
         value: it holds a line break or another control character (a trailing newline in a \
         token file?). Its value is not shown"
    )]
    InvalidContainerToken {
        /// The variable the token comes from.
        var: &'static str,
    },
    /// An endpoint source failed.
    #[error("loading AWS credentials from the {source_kind} failed: {cause}")]
    Provider {
        /// Which source.
        source_kind: CredentialsSource,
        /// The provider's error, with its causes.
        cause: String,
    },
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Provides credentials for each authentication. Cheap to clone (shared state).
#[derive(Clone)]
pub struct CredentialsProvider {
    inner: Arc<Inner>,
}

enum Inner {
    Static(Credentials),
    Chain {
        env: EnvLookup,
        endpoint: Option<Endpoint>,
    },
}

struct Endpoint {
    kind: CredentialsSource,
    provider: SharedCredentialsProvider,
    cache: Mutex<Option<Credentials>>,
    /// Serialises refreshes so concurrent authentications make one call.
    refresh: tokio::sync::Mutex<()>,
}

impl fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Static(_) => f.write_str("CredentialsProvider(static)"),
            Inner::Chain { endpoint, .. } => write!(
                f,
                "CredentialsProvider(environment, then {})",
                endpoint
                    .as_ref()
                    .map_or("nothing".to_owned(), |e| e.kind.to_string())
            ),
        }
    }
}

impl CredentialsProvider {
    /// Always returns `credentials`.
    #[must_use]
    pub fn from_static(credentials: Credentials) -> Self {
        Self {
            inner: Arc::new(Inner::Static(credentials)),
        }
    }

    /// The standard chain. `lookup` reads the environment (it is called again at every
    /// authentication for the environment source); `region` is used by web identity's STS call.
    ///
    /// Must be called inside a tokio runtime (aws-config's providers spawn their HTTP client
    /// lazily on first use).
    pub fn standard_chain(
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        region: Option<String>,
    ) -> Self {
        use aws_config::provider_config::ProviderConfig;

        let set = |var: &str| lookup(var).is_some_and(|v| !v.trim().is_empty());
        let endpoint_kind = if set(ENV_WEB_IDENTITY_TOKEN_FILE) && set(ENV_ROLE_ARN) {
            Some(CredentialsSource::WebIdentity)
        } else if set(ENV_CONTAINER_RELATIVE_URI) || set(ENV_CONTAINER_FULL_URI) {
            Some(CredentialsSource::Container)
        } else if lookup(ENV_EC2_METADATA_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            None
        } else {
            Some(CredentialsSource::Imds)
        };
        let imds_endpoint =
            lookup(ENV_EC2_METADATA_SERVICE_ENDPOINT).filter(|v| !v.trim().is_empty());
        let endpoint = endpoint_kind.map(|kind| {
            #[allow(clippy::expect_used)]
            let http = super::https::client().expect(
                "BUG: ring supports rustls' default protocol versions, established in \
                 rustls::crypto::ring::default_provider",
            );
            let config = ProviderConfig::default()
                .with_http_client(super::https::SmithyHttp::new(http))
                .with_region(region.map(aws_config::Region::new));
            let provider = match kind {
                CredentialsSource::WebIdentity => {
                    use aws_config::web_identity_token::{
                        StaticConfiguration, WebIdentityTokenCredentialsProvider,
                    };
                    // The token file and role come from our lookup, not aws-config's own
                    // environment read; the session name identifies us in CloudTrail.
                    let session = lookup(ENV_ROLE_SESSION_NAME)
                        .filter(|s| !s.trim().is_empty())
                        .unwrap_or_else(|| "mongo-pool".to_owned());
                    SharedCredentialsProvider::new(
                        WebIdentityTokenCredentialsProvider::builder()
                            .configure(&config)
                            .static_configuration(StaticConfiguration {
                                web_identity_token_file: lookup(ENV_WEB_IDENTITY_TOKEN_FILE)
                                    .unwrap_or_default()
                                    .into(),
                                role_arn: lookup(ENV_ROLE_ARN).unwrap_or_default(),
                                session_name: session,
                            })
                            .build(),
                    )
                }
                CredentialsSource::Container => SharedCredentialsProvider::new(
                    aws_config::ecs::EcsCredentialsProvider::builder()
                        .configure(&config)
                        .build(),
                ),
                _ => {
                    let mut client = aws_config::imds::Client::builder().configure(&config);
                    if let Some(endpoint) = imds_endpoint.as_deref() {
                        client = client.endpoint(endpoint).unwrap_or_else(|e| {
                            tracing::warn!(
                                error = %e,
                                "{ENV_EC2_METADATA_SERVICE_ENDPOINT} is not a URL; using the \
                                 default IMDS endpoint"
                            );
                            aws_config::imds::Client::builder().configure(&config)
                        });
                    }
                    SharedCredentialsProvider::new(
                        aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                            .configure(&config)
                            .imds_client(client.build())
                            .build(),
                    )
                }
            };
            Endpoint::new(kind, provider)
        });
        Self {
            inner: Arc::new(Inner::Chain {
                env: Arc::new(lookup),
                endpoint,
            }),
        }
    }

    /// The chain with a given endpoint provider (tests of the caching rules).
    #[cfg(test)]
    pub(crate) fn with_endpoint_provider(
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        kind: CredentialsSource,
        provider: impl ProvideCredentials + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner::Chain {
                env: Arc::new(lookup),
                endpoint: Some(Endpoint::new(
                    kind,
                    SharedCredentialsProvider::new(provider),
                )),
            }),
        }
    }

    /// Credentials for one authentication, and where they came from.
    ///
    /// Cancel-safe: a cancelled call leaves the cache as it was.
    ///
    /// # Errors
    ///
    /// [`CredentialsError`] when no source applies, the environment is half-set, or the
    /// endpoint source fails.
    pub async fn credentials(&self) -> Result<(Credentials, CredentialsSource), CredentialsError> {
        let (credentials, source) = self.fetch().await?;
        tracing::trace!(
            %source,
            access_key_id = credentials.access_key_id(),
            temporary = credentials.session_token().is_some(),
            "credentials for an authentication"
        );
        Ok((credentials, source))
    }

    async fn fetch(&self) -> Result<(Credentials, CredentialsSource), CredentialsError> {
        match &*self.inner {
            Inner::Static(c) => Ok((c.clone(), CredentialsSource::Static)),
            Inner::Chain { env, endpoint } => {
                if let Some(c) = from_environment(env.as_ref())? {
                    return Ok((c, CredentialsSource::Environment));
                }
                match endpoint {
                    Some(endpoint) => {
                        if endpoint.kind == CredentialsSource::Container {
                            check_container_token(env.as_ref()).await?;
                        }
                        Ok((endpoint.credentials().await?, endpoint.kind))
                    }
                    None => Err(CredentialsError::NotFound),
                }
            }
        }
    }

    /// Drops cached endpoint credentials (call after an authentication failure): the next
    /// [`CredentialsProvider::credentials`] fetches new ones.
    pub fn invalidate(&self) {
        if let Inner::Chain {
            endpoint: Some(endpoint),
            ..
        } = &*self.inner
        {
            *lock(&endpoint.cache) = None;
        }
    }
}

impl Endpoint {
    fn new(kind: CredentialsSource, provider: SharedCredentialsProvider) -> Self {
        Self {
            kind,
            provider,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, now: SystemTime) -> Option<Credentials> {
        lock(&self.cache)
            .as_ref()
            .filter(|c| c.is_fresh(now))
            .cloned()
    }

    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        if let Some(c) = self.cached(SystemTime::now()) {
            return Ok(c);
        }
        let _refreshing = self.refresh.lock().await;
        // Another task may have refreshed while we waited.
        if let Some(c) = self.cached(SystemTime::now()) {
            return Ok(c);
        }
        let fetched =
            self.provider
                .provide_credentials()
                .await
                .map_err(|e| CredentialsError::Provider {
                    source_kind: self.kind,
                    cause: error_chain(&e),
                })?;
        let credentials = Credentials(fetched);
        tracing::debug!(
            source = %self.kind,
            expiry = ?credentials.expiry(),
            "loaded AWS credentials"
        );
        *lock(&self.cache) = Some(credentials.clone());
        Ok(credentials)
    }
}

/// Checks the container endpoint's authorization token the way aws-config will use it, as an
/// HTTP header value. aws-config logs a token that is not one at WARN, and puts it in its
/// error, which would reach our logs: such a token is refused here first, without its value.
async fn check_container_token(
    lookup: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<(), CredentialsError> {
    let get = |var: &str| lookup(var).filter(|v| !v.is_empty());
    let valid = if let Some(file) = get(ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE) {
        // A file that cannot be read is aws-config's error to report; it holds no token.
        match tokio::fs::read(&file).await {
            Ok(token) => http::HeaderValue::from_bytes(&token).is_ok(),
            Err(_) => true,
        }
        .then_some(())
        .ok_or(ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE)
    } else {
        get(ENV_CONTAINER_AUTHORIZATION_TOKEN)
            .is_none_or(|token| http::HeaderValue::from_str(&token).is_ok())
            .then_some(())
            .ok_or(ENV_CONTAINER_AUTHORIZATION_TOKEN)
    };
    valid.map_err(|var| CredentialsError::InvalidContainerToken { var })
}

/// Reads the environment pair (and token) through the lookup.
fn from_environment(
    lookup: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<Option<Credentials>, CredentialsError> {
    let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
    match (get(ENV_ACCESS_KEY_ID), get(ENV_SECRET_ACCESS_KEY)) {
        (Some(id), Some(secret)) => Ok(Some(Credentials::new(
            id,
            secret,
            get(ENV_SESSION_TOKEN),
            None,
        ))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialsError::IncompleteEnvironment {
            present: ENV_ACCESS_KEY_ID,
            missing: ENV_SECRET_ACCESS_KEY,
        }),
        (None, Some(_)) => Err(CredentialsError::IncompleteEnvironment {
            present: ENV_SECRET_ACCESS_KEY,
            missing: ENV_ACCESS_KEY_ID,
        }),
    }
}

/// The cache holds plain data: a poisoned lock still holds a valid value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The longest error text (in characters) taken from an error chain into a message or log.
pub(crate) const MAX_ERROR_CHARS: usize = 1024;

/// `text` as it may go into an error message or a log line: line breaks and tabs become
/// spaces, other control characters (C0, DEL, C1) and the invisible characters that reorder or
/// hide text (bidirectional controls, zero-width characters) are removed, and the result is cut
/// to `max_chars` characters, marked with `...`. For text a remote endpoint chose (STS's
/// `<Code>` and `<Arn>`, an endpoint's error message): it can neither forge log lines nor grow a
/// message without bound.
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars));
    let mut kept = 0;
    for c in text.chars() {
        let c = match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || is_invisible(c) => continue,
            c => c,
        };
        if kept == max_chars {
            out.push_str("...");
            break;
        }
        out.push(c);
        kept += 1;
    }
    out
}

/// Zero-width characters, bidirectional marks, embeddings, overrides and isolates, and the
/// byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// An error and its causes, `: `-separated, made [`printable`] (causes may quote what an
/// endpoint answered) and at most [`MAX_ERROR_CHARS`] characters.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    printable(&raw_error_chain(err), MAX_ERROR_CHARS)
}

fn raw_error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
