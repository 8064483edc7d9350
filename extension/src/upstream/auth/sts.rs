//! STS diagnosis: why did Atlas reject our MONGODB-AWS authentication?
//!
//! Atlas answers every authentication failure with the same masked code 18. On such a failure
//! the pool calls [`diagnose`] once per failure episode (see [`FailureEpisode`]): it signs the
//! same `GetCallerIdentity` request Atlas would forward, with the same credentials, sends it to
//! the STS endpoint itself ([`StsEndpoint`], honouring `AWS_ENDPOINT_URL_STS`,
//! `AWS_STS_REGIONAL_ENDPOINTS` and the region) and turns the answer into an actionable
//! [`Diagnosis`]: the caller's ARN and the ARN Atlas needs a database user for, or that STS
//! rejected the credentials, throttled, or could not be reached.
//!
//! The HTTP client is the credential providers' own ([`super::https`]). The XML
//! answer is read with two substring searches (`<Arn>`, `<Code>`): no XML parser needed.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use thiserror::Error;

use super::credentials::{Credentials, error_chain, printable};
use super::https::{self, MAX_BODY};
use super::{STS_BODY, sign_get_caller_identity};

/// Service-specific STS endpoint URL (overrides everything else).
pub const ENV_ENDPOINT_URL_STS: &str = "AWS_ENDPOINT_URL_STS";
/// Endpoint URL for every AWS service.
pub const ENV_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// `regional` (default) or `legacy` (global endpoint for the historical regions).
pub const ENV_STS_REGIONAL_ENDPOINTS: &str = "AWS_STS_REGIONAL_ENDPOINTS";
/// The region.
pub const ENV_REGION: &str = "AWS_REGION";
/// The region, older name.
pub const ENV_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// How long one diagnosis may take in all.
pub const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Regions that used the global endpoint under `AWS_STS_REGIONAL_ENDPOINTS=legacy`.
const LEGACY_GLOBAL_REGIONS: &[&str] = &[
    "ap-northeast-1",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "aws-global",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// An unusable STS endpoint setting.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StsError {
    /// The endpoint URL cannot be used.
    #[error("{var}={value:?} is not a usable endpoint: {reason}")]
    EndpointUrl {
        /// The variable it came from.
        var: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `AWS_STS_REGIONAL_ENDPOINTS` is neither `regional` nor `legacy`.
    #[error("{ENV_STS_REGIONAL_ENDPOINTS}={0:?} is invalid: use regional or legacy")]
    RegionalEndpoints(String),
}

/// Where and how to call STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsEndpoint {
    https: bool,
    /// `host` or `host:port`, also the signed `Host` header.
    authority: String,
    region: String,
}

impl StsEndpoint {
    /// Picks the endpoint the AWS SDKs would: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`,
    /// else the regional endpoint of `AWS_REGION` (`AWS_DEFAULT_REGION`), or the global one
    /// under `AWS_STS_REGIONAL_ENDPOINTS=legacy` for the historical regions, or when no region
    /// is set.
    ///
    /// # Errors
    ///
    /// [`StsError`] for a malformed URL or `AWS_STS_REGIONAL_ENDPOINTS` value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StsError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let region = get(ENV_REGION).or_else(|| get(ENV_DEFAULT_REGION));
        if let Some((var, url)) = get(ENV_ENDPOINT_URL_STS)
            .map(|u| (ENV_ENDPOINT_URL_STS, u))
            .or_else(|| get(ENV_ENDPOINT_URL).map(|u| (ENV_ENDPOINT_URL, u)))
        {
            return Self::from_url(var, &url, region.as_deref().unwrap_or("us-east-1"));
        }
        let legacy = match get(ENV_STS_REGIONAL_ENDPOINTS) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("regional") => false,
            Some(v) if v.eq_ignore_ascii_case("legacy") => true,
            Some(v) => return Err(StsError::RegionalEndpoints(v)),
        };
        Ok(match region {
            Some(region) if !(legacy && LEGACY_GLOBAL_REGIONS.contains(&region.as_str())) => {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                Self {
                    https: true,
                    authority: format!("sts.{region}.{suffix}"),
                    region,
                }
            }
            _ => Self {
                https: true,
                authority: "sts.amazonaws.com".to_owned(),
                region: "us-east-1".to_owned(),
            },
        })
    }

    /// An explicit endpoint URL (`https://host[:port]` or `http://host[:port]`, path `/` or
    /// none) signed for `region`.
    ///
    /// # Errors
    ///
    /// [`StsError::EndpointUrl`] when the URL is not of that form.
    pub fn from_url(var: &'static str, url: &str, region: &str) -> Result<Self, StsError> {
        let bad = |reason| StsError::EndpointUrl {
            var,
            value: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("use an http:// or https:// URL")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a path or query is not supported"));
        }
        let default_port = if https { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(p) if p != default_port => authority.as_str().to_owned(),
            _ => authority.host().to_owned(),
        };
        Ok(Self {
            https,
            authority: host,
            region: region.to_owned(),
        })
    }

    /// The URL requests go to.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "{}://{}/",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }

    /// The region requests are signed for.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.region
    }
}

/// What STS says about our credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// STS accepted them: we are `arn`; Atlas needs a database user for `atlas_user_arn`.
    Caller {
        /// The caller ARN STS returned.
        arn: String,
        /// The ARN Atlas maps it to (the role ARN for an assumed role).
        atlas_user_arn: String,
    },
    /// STS rejected them (`InvalidClientTokenId`, `SignatureDoesNotMatch`, `ExpiredToken`, ...).
    Rejected {
        /// STS's error code.
        code: String,
    },
    /// STS is throttling.
    Throttled,
    /// STS could not be asked or gave no usable answer.
    Unreachable {
        /// What went wrong, with the endpoint.
        cause: String,
    },
}

impl Diagnosis {
    /// Whether retrying cannot help until someone changes the credentials or the Atlas users:
    /// STS rejected the credentials, or accepted them (so Atlas lacks the database user).
    #[must_use]
    pub fn is_definitive(&self) -> bool {
        matches!(self, Diagnosis::Caller { .. } | Diagnosis::Rejected { .. })
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnosis::Caller {
                arn,
                atlas_user_arn,
            } if arn == atlas_user_arn => write!(
                f,
                "authenticating as ARN {arn}; Atlas needs a database user for ARN {arn} in \
                 $external (Database Access > AWS IAM, type IAM User) with a role on the \
                 database"
            ),
            Diagnosis::Caller {
                arn,
                atlas_user_arn,
            } => write!(
                f,
                "authenticating as ARN {arn}; Atlas needs a database user for ARN \
                 {atlas_user_arn} in $external (Database Access > AWS IAM, type IAM Role) \
                 with a role on the database"
            ),
            Diagnosis::Rejected { code } => {
                write!(f, "STS rejected the credentials ({code})")?;
                let hint = match code.as_str() {
                    "InvalidClientTokenId" => {
                        ": the access key id or session token is unknown to STS"
                    }
                    "SignatureDoesNotMatch" => ": the secret access key does not match",
                    "ExpiredToken" | "RequestExpired" => {
                        ": the session token has expired (or the clock is off)"
                    }
                    "AccessDenied" => ": the credentials may not call sts:GetCallerIdentity",
                    _ => "",
                };
                f.write_str(hint)
            }
            Diagnosis::Throttled => f.write_str(
                "STS is throttling GetCallerIdentity (Atlas calls it for every authentication; \
                 the default quota is 600 requests/s per account and region): lower \
                 maxPoolSize/maxConnecting or ask AWS for a higher quota",
            ),
            Diagnosis::Unreachable { cause } => write!(
                f,
                "STS is unreachable ({cause}), so mongo-pool cannot tell why Atlas rejected \
                 the authentication"
            ),
        }
    }
}

/// Maps a caller ARN to the ARN Atlas looks up: an assumed role
/// `arn:P:sts::A:assumed-role/R/S` becomes `arn:P:iam::A:role/R`; anything else is kept.
#[must_use]
pub fn atlas_user_arn(caller_arn: &str) -> String {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    if let [arn, partition, "sts", "", account, resource] = parts[..]
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("{arn}:{partition}:iam::{account}:role/{role}");
    }
    caller_arn.to_owned()
}

/// Tells whether a failure episode still needs a diagnosis: the first failure of an episode
/// gets one, later failures do not, and a successful authentication ends the episode.
#[derive(Debug, Default)]
pub struct FailureEpisode {
    diagnosed: AtomicBool,
}

impl FailureEpisode {
    /// True exactly once per episode: the caller should run [`diagnose`].
    pub fn should_diagnose(&self) -> bool {
        !self.diagnosed.swap(true, Ordering::AcqRel)
    }

    /// An authentication succeeded: the next failure starts a new episode.
    pub fn end(&self) {
        self.diagnosed.store(false, Ordering::Release);
    }
}

/// Calls `GetCallerIdentity` at `endpoint` with `credentials`, within `timeout`.
///
/// Never fails: every failure to get an answer is [`Diagnosis::Unreachable`].
pub async fn diagnose(
    endpoint: &StsEndpoint,
    credentials: &Credentials,
    timeout: Duration,
) -> Diagnosis {
    match tokio::time::timeout(timeout, call(endpoint, credentials)).await {
        Ok(Ok((status, body))) => interpret(status, &body),
        Ok(Err(cause)) => Diagnosis::Unreachable {
            cause: format!("{}: {cause}", endpoint.url()),
        },
        Err(_) => Diagnosis::Unreachable {
            cause: format!(
                "{}: no answer within {} ms",
                endpoint.url(),
                timeout.as_millis()
            ),
        },
    }
}

/// Sends the signed request; returns the status and body.
async fn call(endpoint: &StsEndpoint, credentials: &Credentials) -> Result<(u16, String), String> {
    let signed = sign_get_caller_identity(
        &endpoint.authority,
        &endpoint.region,
        credentials,
        SystemTime::now(),
        &[],
    )
    .map_err(|e| e.to_string())?;
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(endpoint.url());
    for (name, value) in &signed.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from_static(STS_BODY.as_bytes())))
        .map_err(|e| format!("building the request: {e}"))?;

    let client = https::client().map_err(|e| format!("TLS setup: {e}"))?;
    let response = client.request(request).await.map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Reads an STS answer.
pub(crate) fn interpret(status: u16, body: &str) -> Diagnosis {
    if (200..300).contains(&status) {
        return match xml_text(body, "Arn", MAX_ARN_CHARS) {
            Some(arn) => Diagnosis::Caller {
                atlas_user_arn: atlas_user_arn(&arn),
                arn,
            },
            None => Diagnosis::Unreachable {
                cause: format!("HTTP {status} without an <Arn> in the answer"),
            },
        };
    }
    match xml_text(body, "Code", MAX_CODE_CHARS) {
        Some(code)
            if matches!(
                code.as_str(),
                "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
            ) =>
        {
            Diagnosis::Throttled
        }
        Some(code) if status < 500 => Diagnosis::Rejected { code },
        _ if status == 429 => Diagnosis::Throttled,
        Some(code) => Diagnosis::Unreachable {
            cause: format!("HTTP {status} ({code})"),
        },
        None => Diagnosis::Unreachable {
            cause: format!("HTTP {status}"),
        },
    }
}

/// The longest STS error `<Code>` kept (AWS's are under 40 characters).
pub(crate) const MAX_CODE_CHARS: usize = 64;
/// The longest caller `<Arn>` kept (IAM's limit for an ARN).
pub(crate) const MAX_ARN_CHARS: usize = 2048;

/// The text of the first `<tag>...</tag>`, with the five XML entities decoded, made
/// [`printable`] and cut to `max_chars`: STS's answer goes into error messages and logs.
fn xml_text(body: &str, tag: &str, max_chars: usize) -> Option<String> {
    xml_element(body, tag).map(|text| printable(&text, max_chars).trim().to_owned())
}

/// The text of the first `<tag>...</tag>`, with the five XML entities decoded.
fn xml_element(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&close)?;
    let text = body[start..start + len].trim();
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests;
