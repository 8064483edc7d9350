//! The server side of MONGODB-AWS authentication (MongoDB auth spec; PROTOCOL.md section
//! MONGODB-AWS), as atlas-sim runs it.
//!
//! Data flow: atlas-sim's `saslStart` handler passes the downstream's payload (BSON bytes) to
//! [`server_first`] and replies with [`ServerFirst::payload`], keeping
//! [`ServerFirst::nonce`] in the conversation; its `saslContinue` handler passes the next
//! payload and that nonce to [`verify`], which either checks the SigV4 signature itself
//! ([`Verifier::Local`]) or forwards the signed `GetCallerIdentity` request to an STS endpoint
//! such as moto ([`Verifier::Forward`]), exactly as Atlas does. The caller ARN that comes back
//! maps to a database user name through [`user_for_arn`].
//!
//! Every failure is an [`AuthFailure`] with a [`FailureKind`] and a precise reason for
//! atlas-sim's log; the downstream only ever sees the masked `AuthenticationFailed`. Reasons
//! never contain a secret key, a session token or a signature.
//!
//! Submodules: `sigv4` rebuilds the canonical request and checks signatures (pure);
//! `forward` is the HTTP call to STS and the parsing of its XML reply.

mod forward;
mod sigv4;

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use bson::RawDocument;
use bson::spec::BinarySubtype;
use rand::RngCore as _;

/// The body of the signed request: STS `GetCallerIdentity`.
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// The content type of the signed request.
pub const STS_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The STS host Atlas names in its first reply by default.
pub const DEFAULT_STS_HOST: &str = "sts.amazonaws.com";
/// The GS2 channel-binding flag MONGODB-AWS clients send (`n`: no channel binding).
pub const GS2_CB_FLAG: &str = "n";
/// `p` in the client's first message: the ASCII code of `n`.
const GS2_CB_FLAG_CODE: i64 = 110;
/// Length of the downstream's nonce `r`.
const CLIENT_NONCE_LEN: usize = 32;
/// Length of the combined nonce `s` (`r` followed by 32 bytes of the server's).
pub const NONCE_LEN: usize = 64;

/// What the server answers to `saslStart`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// `s`: the downstream's 32-byte nonce followed by 32 random bytes. Keep it for [`verify`].
    pub nonce: [u8; NONCE_LEN],
    /// The BSON document `{s: BinData(0, nonce), h: sts_host}` for the reply's `payload`.
    pub payload: Vec<u8>,
}

impl fmt::Debug for ServerFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFirst")
            .field("nonce", &hex::encode(self.nonce))
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// An identity the local verifier knows.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id, e.g. `AKIAEXAMPLE`.
    pub key_id: String,
    /// The secret access key.
    pub secret: String,
    /// The session token of temporary credentials; required (and compared) when set.
    pub session_token: Option<String>,
    /// The ARN `GetCallerIdentity` returns for this identity.
    pub arn: String,
}

/// The account id of identities made by [`Principal::long_term`] and
/// [`Principal::assumed_role`].
pub const SIM_ACCOUNT: &str = "123456789012";

impl Principal {
    /// Long-term IAM user credentials: ARN `arn:aws:iam::123456789012:user/<key_id>`.
    pub fn long_term(key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        let key_id = key_id.into();
        Self {
            arn: format!("arn:aws:iam::{SIM_ACCOUNT}:user/{key_id}"),
            key_id,
            secret: secret.into(),
            session_token: None,
        }
    }

    /// Temporary credentials of an assumed role: ARN
    /// `arn:aws:sts::123456789012:assumed-role/<role>/<session>`.
    pub fn assumed_role(
        key_id: impl Into<String>,
        secret: impl Into<String>,
        session_token: impl Into<String>,
        role: &str,
        session: &str,
    ) -> Self {
        Self {
            key_id: key_id.into(),
            secret: secret.into(),
            session_token: Some(session_token.into()),
            arn: format!("arn:aws:sts::{SIM_ACCOUNT}:assumed-role/{role}/{session}"),
        }
    }

    /// The same identity with another ARN.
    #[must_use]
    pub fn with_arn(mut self, arn: impl Into<String>) -> Self {
        self.arn = arn.into();
        self
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("arn", &self.arn)
            .finish()
    }
}

/// How [`verify`] decides whether a signed request is genuine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// Check the SigV4 signature here against these identities.
    Local(Vec<Principal>),
    /// Send the signed request to this STS endpoint (e.g. `http://127.0.0.1:5000/`), with
    /// `Host` set to the STS host of the conversation, and trust its answer.
    Forward {
        /// The URL the request is POSTed to.
        sts_url: String,
    },
}

/// The ARN of the authenticated caller, as `GetCallerIdentity` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerArn(pub String);

impl fmt::Display for CallerArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of authentication failure happened (for logs, metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A malformed payload or `Authorization` header, a wrong credential scope, or a required
    /// header left unsigned.
    BadRequest,
    /// The access key id is unknown, or its session token is missing, unexpected or wrong
    /// (STS: `InvalidClientTokenId`).
    UnknownKey,
    /// The signature does not match the request (STS: `SignatureDoesNotMatch`).
    SignatureMismatch,
    /// The request date is outside the allowed window, or the credentials expired.
    Expired,
    /// STS throttled the request.
    StsThrottled,
    /// STS answered with another error, or an answer that could not be understood.
    StsError,
    /// STS could not be reached.
    StsUnreachable,
}

impl FailureKind {
    /// A stable snake_case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownKey => "unknown_key",
            Self::SignatureMismatch => "signature_mismatch",
            Self::Expired => "expired",
            Self::StsThrottled => "sts_throttled",
            Self::StsError => "sts_error",
            Self::StsUnreachable => "sts_unreachable",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed MONGODB-AWS authentication: a kind, a reason for the server log (never a secret,
/// token or signature) and, in forward mode, the STS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct AuthFailure {
    kind: FailureKind,
    reason: String,
    sts_code: Option<String>,
}

impl AuthFailure {
    pub(crate) fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            sts_code: None,
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::BadRequest, reason)
    }

    pub(crate) fn with_sts_code(mut self, code: impl Into<String>) -> Self {
        self.sts_code = Some(code.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The human reason, e.g. `unknown access key id AKIAEXAMPLE`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The STS error code (`SignatureDoesNotMatch`, `InvalidClientTokenId`, `Throttling`, ...)
    /// when STS rejected the request.
    pub fn sts_code(&self) -> Option<&str> {
        self.sts_code.as_deref()
    }
}

/// Checks the downstream's `saslStart` payload `{r: BinData(0, 32 bytes), p: 110}` and builds
/// the reply `{s: r + 32 random bytes, h: sts_host}`.
///
/// # Errors
/// [`FailureKind::BadRequest`] when the payload is not BSON, `r` is not 32 bytes of generic
/// binary, or `p` is not 110.
pub fn server_first(client_payload: &[u8], sts_host: &str) -> Result<ServerFirst, AuthFailure> {
    let doc = parse_payload(client_payload, "saslStart")?;
    let r = doc
        .get_binary("r")
        .map_err(|_| AuthFailure::bad_request("saslStart payload lacks binary field r"))?;
    if r.subtype != BinarySubtype::Generic || r.bytes.len() != CLIENT_NONCE_LEN {
        return Err(AuthFailure::bad_request(format!(
            "client nonce r must be {CLIENT_NONCE_LEN} bytes of subtype 0, got {} bytes of subtype {:?}",
            r.bytes.len(),
            r.subtype
        )));
    }
    let p = match doc.get("p") {
        Ok(Some(bson::RawBsonRef::Int32(p))) => i64::from(p),
        Ok(Some(bson::RawBsonRef::Int64(p))) => p,
        _ => {
            return Err(AuthFailure::bad_request(
                "saslStart payload lacks integer field p",
            ));
        }
    };
    if p != GS2_CB_FLAG_CODE {
        return Err(AuthFailure::bad_request(format!(
            "gs2 channel binding flag p must be {GS2_CB_FLAG_CODE}, got {p}"
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..CLIENT_NONCE_LEN].copy_from_slice(r.bytes);
    rand::rng().fill_bytes(&mut nonce[CLIENT_NONCE_LEN..]);
    let reply = bson::doc! {
        "s": bson::Binary { subtype: BinarySubtype::Generic, bytes: nonce.to_vec() },
        "h": sts_host,
    };
    let payload = reply
        .to_vec()
        .map_err(|err| AuthFailure::bad_request(format!("encoding the server reply: {err}")))?;
    Ok(ServerFirst { nonce, payload })
}

/// Checks the downstream's `saslContinue` payload `{a: Authorization, d: X-Amz-Date,
/// t: session token?}` against the conversation's `nonce` and `sts_host`, at time `now`.
///
/// Both verifiers first check the request's shape: `a` is a SigV4 `Authorization` header for
/// service `sts` whose `SignedHeaders` include every header the MONGODB-AWS request carries.
/// [`Verifier::Local`] then checks the credential scope (date of `d`, region of `sts_host`),
/// that `d` is within 15 minutes of `now`, the access key id, the session token and the
/// signature; [`Verifier::Forward`] leaves those to STS.
///
/// Cancel-safe: dropping the future only abandons an HTTP request in flight.
///
/// # Errors
/// An [`AuthFailure`] whose kind and reason say what was wrong.
pub async fn verify(
    verifier: &Verifier,
    client_final: &[u8],
    nonce: &[u8; NONCE_LEN],
    sts_host: &str,
    now: SystemTime,
) -> Result<CallerArn, AuthFailure> {
    let signed = SignedRequest::parse(client_final, nonce, sts_host)?;
    let authorization = sigv4::Authorization::parse(&signed.authorization)?;
    authorization.check_signed_headers(signed.session_token.is_some())?;
    match verifier {
        Verifier::Local(principals) => {
            sigv4::verify_local(&signed, &authorization, principals, now)
        }
        Verifier::Forward { sts_url } => forward::call_sts(sts_url, &signed).await,
    }
}

/// The database user name for a caller ARN: an assumed role
/// `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION` maps to `arn:aws:iam::ACCT:role/ROLE`; any
/// other ARN maps to itself.
pub fn user_for_arn(arn: &str) -> String {
    let Some(rest) = arn.strip_prefix("arn:") else {
        return arn.to_string();
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, "sts", _region, account, resource] = parts.as_slice() else {
        return arn.to_string();
    };
    let Some(role_and_session) = resource.strip_prefix("assumed-role/") else {
        return arn.to_string();
    };
    match role_and_session.split_once('/') {
        Some((role, session)) if !role.is_empty() && !session.is_empty() => {
            format!("arn:{partition}:iam::{account}:role/{role}")
        }
        _ => arn.to_string(),
    }
}

/// The SigV4 region a MONGODB-AWS client derives from the STS host: `sts.amazonaws.com` ->
/// `us-east-1`; a host with a dot -> its second label; otherwise `us-east-1`.
pub fn region_for_host(host: &str) -> &str {
    const DEFAULT_REGION: &str = "us-east-1";
    if host == DEFAULT_STS_HOST {
        return DEFAULT_REGION;
    }
    let mut labels = host.split('.');
    match (labels.next(), labels.next()) {
        (Some(_), Some(second)) => second,
        _ => DEFAULT_REGION,
    }
}

/// The request the downstream signed, as the server reconstructs it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SignedRequest {
    pub(crate) authorization: String,
    pub(crate) amz_date: String,
    pub(crate) session_token: Option<String>,
    pub(crate) host: String,
    /// `base64(s)`, the `X-MongoDB-Server-Nonce` header value.
    pub(crate) server_nonce: String,
}

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("amz_date", &self.amz_date)
            .field("has_session_token", &self.session_token.is_some())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl SignedRequest {
    fn parse(
        client_final: &[u8],
        nonce: &[u8; NONCE_LEN],
        sts_host: &str,
    ) -> Result<Self, AuthFailure> {
        let doc = parse_payload(client_final, "saslContinue")?;
        let string = |key: &str| -> Result<Option<String>, AuthFailure> {
            match doc.get(key) {
                Ok(None) => Ok(None),
                Ok(Some(bson::RawBsonRef::String(value))) => Ok(Some(value.to_string())),
                Ok(Some(_)) => Err(AuthFailure::bad_request(format!(
                    "saslContinue payload field {key} is not a string"
                ))),
                Err(err) => Err(AuthFailure::bad_request(format!(
                    "saslContinue payload is not valid BSON: {err}"
                ))),
            }
        };
        let authorization = string("a")?.ok_or_else(|| {
            AuthFailure::bad_request("saslContinue payload lacks field a (Authorization)")
        })?;
        let amz_date = string("d")?.ok_or_else(|| {
            AuthFailure::bad_request("saslContinue payload lacks field d (X-Amz-Date)")
        })?;
        let session_token = string("t")?;
        Ok(Self {
            authorization,
            amz_date,
            session_token,
            host: sts_host.to_string(),
            server_nonce: base64::engine::general_purpose::STANDARD.encode(nonce),
        })
    }

    /// The request's headers as (lowercase name, value), in canonical (sorted) order; the
    /// session token only when there is one. `Authorization` is not among them.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-length", STS_BODY.len().to_string()),
            ("content-type", STS_CONTENT_TYPE.to_string()),
            ("host", self.host.clone()),
            ("x-amz-date", self.amz_date.clone()),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        headers.push(("x-mongodb-gs2-cb-flag", GS2_CB_FLAG.to_string()));
        headers.push(("x-mongodb-server-nonce", self.server_nonce.clone()));
        headers
    }
}

fn parse_payload<'a>(bytes: &'a [u8], step: &str) -> Result<&'a RawDocument, AuthFailure> {
    let doc = RawDocument::from_bytes(bytes)
        .map_err(|err| AuthFailure::bad_request(format!("{step} payload is not BSON: {err}")))?;
    // `from_bytes` checks only the framing; walk the elements once to reject garbage early.
    for element in doc {
        element.map_err(|err| {
            AuthFailure::bad_request(format!("{step} payload is not valid BSON: {err}"))
        })?;
    }
    Ok(doc)
}

#[cfg(test)]
mod tests;
