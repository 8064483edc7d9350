//! SigV4 verification of the MONGODB-AWS `GetCallerIdentity` request: parsing the
//! `Authorization` header, rebuilding the canonical request from the headers the server knows
//! the request carries, and checking what STS would check. Pure: no IO.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::macros::format_description;

use super::{
    AuthFailure, CallerArn, FailureKind, Principal, STS_BODY, SignedRequest, region_for_host,
};

/// The only algorithm MONGODB-AWS uses.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service every credential scope must name.
const SERVICE: &str = "sts";
/// The credential scope terminator.
const TERMINATOR: &str = "aws4_request";
/// How far the request date may be from the server's clock, either way (as STS allows).
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// Headers every MONGODB-AWS request must sign.
const REQUIRED_SIGNED_HEADERS: [&str; 6] = [
    "content-length",
    "content-type",
    "host",
    "x-amz-date",
    "x-mongodb-gs2-cb-flag",
    "x-mongodb-server-nonce",
];
const SECURITY_TOKEN_HEADER: &str = "x-amz-security-token";

type HmacSha256 = Hmac<Sha256>;

/// A parsed `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/sts/aws4_request,
/// SignedHeaders=a;b;c, Signature=<64 hex digits>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) key_id: String,
    pub(crate) scope_date: String,
    pub(crate) scope_region: String,
    /// As given, semicolon-separated; the canonical request uses it verbatim.
    pub(crate) signed_headers: String,
    /// Lowercase hex; never logged.
    signature: String,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("key_id", &self.key_id)
            .field("scope_date", &self.scope_date)
            .field("scope_region", &self.scope_region)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Parses the header; checks the algorithm, the scope's service and terminator, and that
    /// the signature is 64 hex digits.
    pub(crate) fn parse(header: &str) -> Result<Self, AuthFailure> {
        let bad = |reason: String| AuthFailure::bad_request(reason);
        let (algorithm, rest) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("Authorization header has no algorithm".into()))?;
        if algorithm != ALGORITHM {
            return Err(bad(format!(
                "Authorization algorithm {algorithm:?} is not {ALGORITHM}"
            )));
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| bad("Authorization header component without '='".into()))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                other => {
                    return Err(bad(format!(
                        "Authorization header has unknown component {other:?}"
                    )));
                }
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(bad(format!("Authorization header repeats {name}")));
            }
        }
        let credential =
            credential.ok_or_else(|| bad("Authorization header lacks Credential".into()))?;
        let signed_headers =
            signed_headers.ok_or_else(|| bad("Authorization header lacks SignedHeaders".into()))?;
        let signature =
            signature.ok_or_else(|| bad("Authorization header lacks Signature".into()))?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "Signature is not 64 hex digits ({} characters)",
                signature.len()
            )));
        }
        let parts: Vec<&str> = credential.split('/').collect();
        let [key_id, date, region, service, terminator] = parts.as_slice() else {
            return Err(bad(
                "Credential is not AKID/YYYYMMDD/REGION/SERVICE/aws4_request".into(),
            ));
        };
        if key_id.is_empty() {
            return Err(bad("Credential has an empty access key id".into()));
        }
        if *service != SERVICE {
            return Err(bad(format!(
                "credential scope service {service:?} is not {SERVICE:?}"
            )));
        }
        if *terminator != TERMINATOR {
            return Err(bad(format!(
                "credential scope terminator {terminator:?} is not {TERMINATOR:?}"
            )));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "credential scope date {date:?} is not YYYYMMDD"
            )));
        }
        Ok(Self {
            key_id: (*key_id).to_string(),
            scope_date: (*date).to_string(),
            scope_region: (*region).to_string(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }

    /// Checks that `SignedHeaders` names every header the request carries, and nothing else
    /// (the server sends no other header, so STS could not verify it).
    pub(crate) fn check_signed_headers(&self, has_session_token: bool) -> Result<(), AuthFailure> {
        let signed: Vec<&str> = self.signed_headers.split(';').collect();
        for name in &signed {
            let known = REQUIRED_SIGNED_HEADERS.contains(name)
                || (*name == SECURITY_TOKEN_HEADER && has_session_token);
            if !known {
                return Err(AuthFailure::bad_request(format!(
                    "SignedHeaders names {name:?}, which the request does not carry"
                )));
            }
        }
        let mut required: Vec<&str> = REQUIRED_SIGNED_HEADERS.to_vec();
        if has_session_token {
            required.push(SECURITY_TOKEN_HEADER);
        }
        for name in required {
            if !signed.contains(&name) {
                return Err(AuthFailure::bad_request(format!(
                    "SignedHeaders lacks {name}"
                )));
            }
        }
        Ok(())
    }
}

/// What [`super::Verifier::Local`] checks after the request's shape.
pub(crate) fn verify_local(
    request: &SignedRequest,
    authorization: &Authorization,
    principals: &[Principal],
    now: SystemTime,
) -> Result<CallerArn, AuthFailure> {
    let signed_at = parse_amz_date(&request.amz_date)?;
    if !request.amz_date.starts_with(&authorization.scope_date) {
        return Err(AuthFailure::bad_request(format!(
            "credential scope date {} does not match X-Amz-Date {}",
            authorization.scope_date, request.amz_date
        )));
    }
    let region = region_for_host(&request.host);
    if authorization.scope_region != region {
        return Err(AuthFailure::bad_request(format!(
            "credential scope region {:?} does not match region {region:?} of STS host {:?}",
            authorization.scope_region, request.host
        )));
    }
    let now = OffsetDateTime::from(now);
    let skew = (now - signed_at).unsigned_abs();
    if skew > MAX_CLOCK_SKEW {
        return Err(AuthFailure::new(
            FailureKind::Expired,
            format!(
                "request date {} outside 15 minutes of the server's clock ({}s off)",
                request.amz_date,
                skew.as_secs()
            ),
        ));
    }
    let principal = principals
        .iter()
        .find(|principal| principal.key_id == authorization.key_id)
        .ok_or_else(|| {
            AuthFailure::new(
                FailureKind::UnknownKey,
                format!("unknown access key id {}", authorization.key_id),
            )
        })?;
    check_session_token(principal, request.session_token.as_deref())?;
    let expected = signature(request, authorization, &principal.secret, region);
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(authorization.signature.as_bytes()),
    ) {
        return Err(AuthFailure::new(
            FailureKind::SignatureMismatch,
            format!(
                "signature mismatch for access key id {} (request for host {:?}, region {region:?}, this conversation's server nonce)",
                authorization.key_id, request.host
            ),
        ));
    }
    Ok(CallerArn(principal.arn.clone()))
}

fn check_session_token(principal: &Principal, token: Option<&str>) -> Result<(), AuthFailure> {
    let failure = |what: &str| {
        AuthFailure::new(
            FailureKind::UnknownKey,
            format!(
                "session token {what} for access key id {}",
                principal.key_id
            ),
        )
    };
    match (principal.session_token.as_deref(), token) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(failure("present but unexpected")),
        (Some(_), None) => Err(failure("missing")),
        (Some(expected), Some(got)) => {
            if bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
                Ok(())
            } else {
                Err(failure("mismatch"))
            }
        }
    }
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(value: &str) -> Result<OffsetDateTime, AuthFailure> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(value, format)
        .map(time::PrimitiveDateTime::assume_utc)
        .map_err(|_| {
            AuthFailure::bad_request(format!("X-Amz-Date {value:?} is not YYYYMMDDTHHMMSSZ"))
        })
}

/// The canonical request STS rebuilds: the signed headers, in the order `SignedHeaders` lists
/// them, with the values the server sends.
pub(crate) fn canonical_request(request: &SignedRequest, signed_headers: &str) -> String {
    let headers = request.headers();
    let mut canonical = String::from("POST\n/\n\n");
    for name in signed_headers.split(';') {
        let value = headers
            .iter()
            .find(|(header, _)| *header == name)
            .map_or("", |(_, value)| value.as_str());
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&collapse_whitespace(value));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(signed_headers);
    canonical.push('\n');
    canonical.push_str(&hex::encode(Sha256::digest(STS_BODY.as_bytes())));
    canonical
}

/// The hex signature of `request` under `secret`.
fn signature(
    request: &SignedRequest,
    authorization: &Authorization,
    secret: &str,
    region: &str,
) -> String {
    let canonical = canonical_request(request, &authorization.signed_headers);
    let scope = format!(
        "{}/{region}/{SERVICE}/{TERMINATOR}",
        authorization.scope_date
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        request.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(secret, &authorization.scope_date, region, SERVICE);
    hex::encode(hmac(&key, string_to_sign.as_bytes()))
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4 header value normalisation: trim, and collapse runs of spaces to one.
fn collapse_whitespace(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing key derivation example in the AWS documentation ("Examples of how to
    /// derive a signing key": IAM, us-east-1, 20120215).
    #[test]
    fn signing_key_matches_the_aws_example() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn authorization_parses_the_components() -> Result<(), AuthFailure> {
        let auth = Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/sts/aws4_request, SignedHeaders=content-length;host, Signature={}",
            "ab".repeat(32)
        ))?;
        assert_eq!(auth.key_id, "AKIDEXAMPLE");
        assert_eq!(auth.scope_date, "20240102");
        assert_eq!(auth.scope_region, "us-east-1");
        assert_eq!(auth.signed_headers, "content-length;host");
        Ok(())
    }

    #[test]
    fn authorization_rejects_other_algorithms_services_and_short_signatures() {
        let sig = "ab".repeat(32);
        for (header, reason) in [
            (
                format!("AWS4-HMAC-SHA1 Credential=A/20240102/us-east-1/sts/aws4_request, SignedHeaders=host, Signature={sig}"),
                "algorithm",
            ),
            (
                format!("AWS4-HMAC-SHA256 Credential=A/20240102/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
                "service",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20240102/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=abcd".to_string(),
                "64 hex digits",
            ),
            (
                format!("AWS4-HMAC-SHA256 Credential=A/20240102/us-east-1/sts/aws4_request, Signature={sig}"),
                "lacks SignedHeaders",
            ),
        ] {
            let err = Authorization::parse(&header).err();
            assert!(
                err.as_ref().is_some_and(|err| err.kind() == FailureKind::BadRequest
                    && err.reason().contains(reason)),
                "{header}: {err:?}"
            );
        }
    }

    #[test]
    fn amz_date_parses_basic_iso8601() -> Result<(), AuthFailure> {
        let date = parse_amz_date("20240102T030405Z")?;
        assert_eq!(date.unix_timestamp(), 1_704_164_645);
        assert!(parse_amz_date("2024-01-02T03:04:05Z").is_err());
        Ok(())
    }
}
