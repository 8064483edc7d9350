//! MONGODB-AWS, the client side of the SASL conversation (MongoDB auth spec; the facts are in
//! docs/PROTOCOL.md), as pure functions over bytes: no IO happens here.
//!
//! The conversation, run by the upstream connector on a fresh connection after `hello`:
//!
//! 1. [`client_first`] makes a 32-byte nonce and the saslStart payload `{r, p: 110}`;
//!    [`sasl_start_command`] wraps it in `{saslStart: 1, mechanism, payload, $db: "$external"}`.
//! 2. The server answers `{conversationId, payload: {s, h}, done: false}`, read with
//!    [`SaslReply::parse`]. [`client_final`] checks `s` and `h`, signs an STS
//!    `GetCallerIdentity` request with SigV4 for the host `h`, and returns the saslContinue
//!    payload `{a: Authorization, d: X-Amz-Date, t: session token?}`, sent with
//!    [`sasl_continue_command`].
//! 3. The server forwards the signed request to STS and answers `done: true` or code 18.
//!
//! Credentials come from [`credentials`]; on a failure [`sts`] finds out why.

pub mod credentials;
pub mod https;
pub mod sts;

use std::time::SystemTime;

use base64::Engine as _;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use thiserror::Error;

pub use credentials::{Credentials, CredentialsError, CredentialsProvider};

/// The SASL mechanism name.
pub const MECHANISM: &str = "MONGODB-AWS";
/// The database every MONGODB-AWS command runs against.
pub const SOURCE: &str = "$external";
/// Length of the client nonce `r`.
pub const CLIENT_NONCE_LEN: usize = 32;
/// Length of the server nonce `s` (client nonce + 32 server bytes).
pub const SERVER_NONCE_LEN: usize = 64;
/// `p` in the first payload: ASCII `n`, "no channel binding".
pub const GS2_CB_FLAG: i32 = 110;

/// The STS request body; its length is 43 bytes.
pub(crate) const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
pub(crate) const STS_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const STS_SERVICE: &str = "sts";
const DEFAULT_REGION: &str = "us-east-1";

/// Why the conversation cannot continue. Never carries a credential, a signature or a token.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The server's payload is not what the spec says.
    #[error("invalid MONGODB-AWS server payload: {0}")]
    ServerPayload(&'static str),
    /// `s` does not start with our nonce: the reply is not for this conversation.
    #[error("the server nonce does not start with the client nonce")]
    NonceMismatch,
    /// `h` is not a usable STS host name.
    #[error("invalid STS host from the server: {0}")]
    StsHost(&'static str),
    /// SigV4 signing failed.
    #[error("signing the STS request failed: {0}")]
    Signing(String),
    /// BSON encoding failed.
    #[error("encoding the SASL payload failed: {0}")]
    Encode(String),
    /// A saslStart/saslContinue reply that is not a SASL reply.
    #[error("invalid SASL reply: {0}")]
    Reply(&'static str),
    /// The server refused (`ok: 0`); Atlas masks every cause as code 18.
    #[error("the server refused authentication: {code_name} ({code}): {message}")]
    Refused {
        /// Server error code (18 = AuthenticationFailed).
        code: i32,
        /// `codeName`.
        code_name: String,
        /// `errmsg`.
        message: String,
    },
}

/// The first client message: keep `nonce` for [`client_final`], send `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The client nonce `r`.
    pub nonce: [u8; CLIENT_NONCE_LEN],
    /// BSON `{r: BinData(0, nonce), p: 110}`.
    pub payload: Vec<u8>,
}

/// Starts a conversation with a fresh random nonce.
#[must_use]
pub fn client_first() -> ClientFirst {
    let nonce: [u8; CLIENT_NONCE_LEN] = rand::random();
    client_first_with_nonce(nonce)
}

/// The first client message for a given nonce (deterministic, for tests).
#[must_use]
pub fn client_first_with_nonce(nonce: [u8; CLIENT_NONCE_LEN]) -> ClientFirst {
    // Fixed layout, encoded by hand so it cannot fail:
    // i32 total | 0x05 "r\0" i32 32 0x00 nonce | 0x10 "p\0" i32 110 | 0x00
    const LEN: usize = 4 + (1 + 2 + 4 + 1 + CLIENT_NONCE_LEN) + (1 + 2 + 4) + 1;
    let mut payload = Vec::with_capacity(LEN);
    payload.extend_from_slice(&(LEN as i32).to_le_bytes());
    payload.extend_from_slice(&[0x05, b'r', 0]);
    payload.extend_from_slice(&(CLIENT_NONCE_LEN as i32).to_le_bytes());
    payload.push(0x00);
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&[0x10, b'p', 0]);
    payload.extend_from_slice(&GS2_CB_FLAG.to_le_bytes());
    payload.push(0x00);
    ClientFirst { nonce, payload }
}

/// The server's first payload, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// `s`: 64 bytes, starting with the client nonce.
    pub server_nonce: Vec<u8>,
    /// `h`: the STS host the request is signed for.
    pub sts_host: String,
}

impl ServerFirst {
    /// Parses and checks the server payload `{s, h}` against the client nonce.
    ///
    /// # Errors
    ///
    /// [`AuthError::ServerPayload`], [`AuthError::NonceMismatch`] or [`AuthError::StsHost`].
    pub fn parse(payload: &[u8], client_nonce: &[u8; CLIENT_NONCE_LEN]) -> Result<Self, AuthError> {
        // Checked whole, depth included, before the (recursive) conversion.
        let raw = bson::RawDocument::from_bytes(payload)
            .map_err(|_| AuthError::ServerPayload("not a BSON document"))?;
        mongo_pool_wire::validate::document(raw, mongo_pool_wire::validate::MAX_REQUEST_DEPTH)
            .map_err(|_| AuthError::ServerPayload("not a valid BSON document"))?;
        let doc =
            Document::try_from(raw).map_err(|_| AuthError::ServerPayload("not a BSON document"))?;
        let server_nonce = match doc.get("s") {
            Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Generic => b.bytes.clone(),
            Some(_) => return Err(AuthError::ServerPayload("s is not generic binary data")),
            None => return Err(AuthError::ServerPayload("s is missing")),
        };
        if server_nonce.len() != SERVER_NONCE_LEN {
            return Err(AuthError::ServerPayload("s is not 64 bytes long"));
        }
        if !server_nonce.starts_with(client_nonce) {
            return Err(AuthError::NonceMismatch);
        }
        let sts_host = match doc.get("h") {
            Some(Bson::String(h)) => h.clone(),
            Some(_) => return Err(AuthError::ServerPayload("h is not a string")),
            None => return Err(AuthError::ServerPayload("h is missing")),
        };
        validate_sts_host(&sts_host)?;
        Ok(Self {
            server_nonce,
            sts_host,
        })
    }
}

/// Checks `h`: 1 to 255 bytes, no empty label (so no leading or trailing dot), and only
/// characters that can form an HTTP `Host` header.
fn validate_sts_host(host: &str) -> Result<(), AuthError> {
    if host.is_empty() || host.len() > 255 {
        return Err(AuthError::StsHost("must be 1 to 255 bytes long"));
    }
    if host.split('.').any(str::is_empty) {
        return Err(AuthError::StsHost("has an empty label"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
    {
        return Err(AuthError::StsHost(
            "contains characters not allowed in a host name",
        ));
    }
    Ok(())
}

/// The region to sign for, derived from the STS host as the spec says: `sts.amazonaws.com`
/// -> `us-east-1`; otherwise a host with a dot -> its second label; otherwise `us-east-1`.
#[must_use]
pub fn sts_region(host: &str) -> &str {
    if host == "sts.amazonaws.com" {
        return DEFAULT_REGION;
    }
    match host.split('.').nth(1) {
        Some(label) => label,
        None => DEFAULT_REGION,
    }
}

/// Checks the server's payload and builds the saslContinue payload `{a, d, t?}`.
///
/// `now` is the signing time (`SystemTime::now()` outside tests).
///
/// # Errors
///
/// Any check of [`ServerFirst::parse`], or a signing/encoding failure.
pub fn client_final(
    server_payload: &[u8],
    client_nonce: &[u8; CLIENT_NONCE_LEN],
    credentials: &Credentials,
    now: SystemTime,
) -> Result<Vec<u8>, AuthError> {
    let server = ServerFirst::parse(server_payload, client_nonce)?;
    let nonce_b64 = base64::engine::general_purpose::STANDARD.encode(&server.server_nonce);
    let signed = sign_get_caller_identity(
        &server.sts_host,
        sts_region(&server.sts_host),
        credentials,
        now,
        &[
            ("X-MongoDB-Server-Nonce", nonce_b64.as_str()),
            ("X-MongoDB-GS2-CB-Flag", "n"),
        ],
    )?;
    let mut payload = doc! { "a": signed.authorization, "d": signed.amz_date };
    if let Some(token) = credentials.session_token() {
        payload.insert("t", token);
    }
    payload
        .to_vec()
        .map_err(|e| AuthError::Encode(e.to_string()))
}

/// A signed `POST /` `GetCallerIdentity` request.
pub(crate) struct SignedRequest {
    /// The `Authorization` header value.
    pub(crate) authorization: String,
    /// The `X-Amz-Date` header value.
    pub(crate) amz_date: String,
    /// Every header to send, in order, signing headers included (some values are secret).
    pub(crate) headers: Vec<(String, String)>,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest").finish_non_exhaustive()
    }
}

/// Signs `POST /` with body [`STS_BODY`] for `host` with SigV4 (service `sts`), signing
/// `Content-Type`, `Content-Length`, `Host`, `X-Amz-Date`, `X-Amz-Security-Token` (temporary
/// credentials) and `extra`.
pub(crate) fn sign_get_caller_identity(
    host: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
    extra: &[(&str, &str)],
) -> Result<SignedRequest, AuthError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let content_length = STS_BODY.len().to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("Content-Type", STS_CONTENT_TYPE),
        ("Content-Length", &content_length),
        ("Host", host),
    ];
    headers.extend_from_slice(extra);

    let identity = credentials.to_aws().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(STS_SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        "/",
        headers.iter().copied(),
        SignableBody::Bytes(STS_BODY.as_bytes()),
    )
    .map_err(|e| AuthError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into_parts();

    let mut authorization = None;
    let mut amz_date = None;
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (name, value) in instructions.headers() {
        match name {
            "authorization" => authorization = Some(value.to_owned()),
            "x-amz-date" => amz_date = Some(value.to_owned()),
            _ => {}
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    let (Some(authorization), Some(amz_date)) = (authorization, amz_date) else {
        return Err(AuthError::Signing(
            "the signer returned no Authorization or X-Amz-Date header".into(),
        ));
    };
    Ok(SignedRequest {
        authorization,
        amz_date,
        headers: out,
    })
}

/// `{saslStart: 1, mechanism: "MONGODB-AWS", payload: BinData(0, payload), $db: "$external"}`.
#[must_use]
pub fn sasl_start_command(payload: Vec<u8>) -> Document {
    doc! {
        "saslStart": 1_i32,
        "mechanism": MECHANISM,
        "payload": Binary { subtype: BinarySubtype::Generic, bytes: payload },
        "$db": SOURCE,
    }
}

/// `{saslContinue: 1, conversationId, payload: BinData(0, payload), $db: "$external"}`.
#[must_use]
pub fn sasl_continue_command(conversation_id: i32, payload: Vec<u8>) -> Document {
    doc! {
        "saslContinue": 1_i32,
        "conversationId": conversation_id,
        "payload": Binary { subtype: BinarySubtype::Generic, bytes: payload },
        "$db": SOURCE,
    }
}

/// A saslStart/saslContinue reply with `ok: 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslReply {
    /// `conversationId`, echoed in saslContinue.
    pub conversation_id: i32,
    /// `payload` bytes.
    pub payload: Vec<u8>,
    /// `done`.
    pub done: bool,
}

impl SaslReply {
    /// Reads a reply document.
    ///
    /// # Errors
    ///
    /// [`AuthError::Refused`] for `ok: 0` (code 18 for every Atlas auth failure), or
    /// [`AuthError::Reply`] when a field is missing or of the wrong type.
    pub fn parse(reply: &Document) -> Result<Self, AuthError> {
        let ok = match reply.get("ok") {
            Some(Bson::Double(v)) => *v == 1.0,
            Some(Bson::Int32(v)) => *v == 1,
            Some(Bson::Int64(v)) => *v == 1,
            Some(Bson::Boolean(v)) => *v,
            _ => return Err(AuthError::Reply("ok is missing")),
        };
        if !ok {
            let code = match reply.get("code") {
                Some(Bson::Int32(c)) => *c,
                Some(Bson::Int64(c)) => i32::try_from(*c).unwrap_or(-1),
                Some(Bson::Double(c)) => *c as i32,
                _ => -1,
            };
            return Err(AuthError::Refused {
                code,
                code_name: reply.get_str("codeName").unwrap_or("").to_owned(),
                message: reply.get_str("errmsg").unwrap_or("").to_owned(),
            });
        }
        let conversation_id = match reply.get("conversationId") {
            Some(Bson::Int32(c)) => *c,
            Some(Bson::Int64(c)) => {
                i32::try_from(*c).map_err(|_| AuthError::Reply("conversationId out of range"))?
            }
            _ => return Err(AuthError::Reply("conversationId is missing")),
        };
        let payload = match reply.get("payload") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            _ => return Err(AuthError::Reply("payload is missing")),
        };
        let done = reply.get_bool("done").unwrap_or(false);
        Ok(Self {
            conversation_id,
            payload,
            done,
        })
    }
}

#[cfg(test)]
mod tests;
