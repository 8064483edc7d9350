//! Forward mode: POST the downstream's signed `GetCallerIdentity` request to an STS endpoint,
//! with exactly the headers that were signed and `Host` set to the conversation's STS host,
//! and read the caller ARN (or the error code) from STS's XML reply.

use std::time::Duration;

use super::{AuthFailure, CallerArn, FailureKind, STS_BODY, SignedRequest};

/// Connecting to STS may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole STS call may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// STS's error message is quoted in a reason up to this many characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// Sends the request to `sts_url` and returns the caller ARN.
///
/// Cancel-safe: dropping the future abandons the HTTP request.
pub(crate) async fn call_sts(
    sts_url: &str,
    request: &SignedRequest,
) -> Result<CallerArn, AuthFailure> {
    let unreachable = |err: reqwest::Error| {
        AuthFailure::new(FailureKind::StsUnreachable, describe(sts_url, &err))
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let mut builder = client
        .post(sts_url)
        .header(reqwest::header::AUTHORIZATION, &request.authorization);
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder.body(STS_BODY).send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    interpret(status.as_u16(), &body, request)
}

/// Turns STS's reply into the caller ARN or a failure.
fn interpret(status: u16, body: &str, request: &SignedRequest) -> Result<CallerArn, AuthFailure> {
    if (200..300).contains(&status) {
        return match element(body, "Arn") {
            Some(arn) if !arn.is_empty() => Ok(CallerArn(arn)),
            _ => Err(AuthFailure::new(
                FailureKind::StsError,
                format!("STS answered HTTP {status} without an Arn"),
            )),
        };
    }
    let Some(code) = element(body, "Code") else {
        return Err(AuthFailure::new(
            FailureKind::StsError,
            format!("STS answered HTTP {status} without an error code"),
        ));
    };
    let message = element(body, "Message")
        .filter(|message| !leaks_secret(message, request))
        .map(|message| message.chars().take(MAX_MESSAGE_CHARS).collect::<String>())
        .unwrap_or_default();
    let kind = kind_for_code(&code, &message);
    Err(AuthFailure::new(
        kind,
        format!("STS rejected the request: HTTP {status} {code}: {message}"),
    )
    .with_sts_code(code))
}

/// How an STS error code maps to a failure kind.
fn kind_for_code(code: &str, message: &str) -> FailureKind {
    match code {
        // STS reports a stale X-Amz-Date as a signature error with this message.
        "SignatureDoesNotMatch" if message.contains("Signature expired") => FailureKind::Expired,
        "SignatureDoesNotMatch" => FailureKind::SignatureMismatch,
        "InvalidClientTokenId" | "UnrecognizedClientException" => FailureKind::UnknownKey,
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => FailureKind::Expired,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
            FailureKind::StsThrottled
        }
        "IncompleteSignature" | "MissingAuthenticationToken" | "InvalidParameterValue" => {
            FailureKind::BadRequest
        }
        _ => FailureKind::StsError,
    }
}

/// True if an STS message quotes the session token or the signature (AWS services sometimes
/// echo parts of the request); such a message stays out of the reason.
fn leaks_secret(message: &str, request: &SignedRequest) -> bool {
    let token = request
        .session_token
        .as_deref()
        .is_some_and(|token| !token.is_empty() && message.contains(token));
    let signature = request
        .authorization
        .rsplit("Signature=")
        .next()
        .is_some_and(|signature| signature.len() >= 16 && message.contains(signature.trim()));
    token || signature
}

/// The unescaped text of the first `<name>...</name>` element (namespace prefixes and
/// attributes are not used by STS replies).
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(unescape(xml[start..start + len].trim()))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An error description naming the URL and the failure, without request contents.
fn describe(sts_url: &str, err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("STS endpoint {sts_url} unreachable: {what}: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_auth::STS_CONTENT_TYPE;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn request(token: Option<&str>) -> SignedRequest {
        SignedRequest {
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/sts/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date;x-mongodb-gs2-cb-flag;x-mongodb-server-nonce, Signature={}",
                "0f".repeat(32)
            ),
            amz_date: "20240102T030405Z".into(),
            session_token: token.map(String::from),
            host: "sts.amazonaws.com".into(),
            server_nonce: "bm9uY2U=".into(),
        }
    }

    const OK_REPLY: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/app&amp;role/s1</Arn>
    <UserId>AROAEXAMPLE:s1</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;

    fn error_reply(code: &str, message: &str) -> String {
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
        )
    }

    #[test]
    fn success_reply_yields_the_unescaped_arn() -> Result<(), AuthFailure> {
        let arn = interpret(200, OK_REPLY, &request(None))?;
        assert_eq!(arn.0, "arn:aws:sts::123456789012:assumed-role/app&role/s1");
        Ok(())
    }

    #[test]
    fn error_codes_map_to_kinds() {
        for (code, message, kind) in [
            (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match",
                FailureKind::SignatureMismatch,
            ),
            (
                "SignatureDoesNotMatch",
                "Signature expired: 20240102T030405Z is now earlier than",
                FailureKind::Expired,
            ),
            (
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
                FailureKind::UnknownKey,
            ),
            ("Throttling", "Rate exceeded", FailureKind::StsThrottled),
            (
                "ExpiredToken",
                "The security token included in the request is expired",
                FailureKind::Expired,
            ),
            ("AccessDenied", "no", FailureKind::StsError),
        ] {
            let err = interpret(403, &error_reply(code, message), &request(None)).err();
            assert_eq!(err.as_ref().map(AuthFailure::kind), Some(kind), "{code}");
            assert_eq!(err.as_ref().and_then(AuthFailure::sts_code), Some(code));
        }
    }

    #[test]
    fn a_message_quoting_the_token_is_left_out() {
        let err = interpret(
            403,
            &error_reply("InvalidClientTokenId", "bad token SECRET-TOKEN-VALUE"),
            &request(Some("SECRET-TOKEN-VALUE")),
        )
        .err()
        .map(|err| err.to_string())
        .unwrap_or_default();
        assert!(err.contains("InvalidClientTokenId"), "{err}");
        assert!(!err.contains("SECRET-TOKEN-VALUE"), "{err}");
    }

    #[test]
    fn reply_without_code_is_an_sts_error() {
        let err = interpret(500, "oops", &request(None)).err();
        assert_eq!(err.map(|err| err.kind()), Some(FailureKind::StsError));
    }

    #[tokio::test]
    async fn forwards_exactly_the_signed_headers_with_the_conversation_host() -> anyhow::Result<()>
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let capture = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "connection closed early");
                raw.extend_from_slice(&buf[..n]);
                if raw.ends_with(STS_BODY.as_bytes()) {
                    break;
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{OK_REPLY}",
                OK_REPLY.len()
            );
            stream.write_all(reply.as_bytes()).await?;
            anyhow::Ok(String::from_utf8(raw)?)
        });
        let signed = request(Some("tok"));
        let arn = call_sts(&url, &signed).await?;
        assert!(arn.0.starts_with("arn:aws:sts::"));
        let raw = capture.await??;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no header end"))?;
        assert_eq!(body, STS_BODY);
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("POST / HTTP/1.1"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let count = |name: &str| headers.iter().filter(|(n, _)| n == name).count();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        for name in [
            "host",
            "content-length",
            "content-type",
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
            "x-mongodb-gs2-cb-flag",
            "x-mongodb-server-nonce",
        ] {
            assert_eq!(count(name), 1, "{name} in {head}");
        }
        assert_eq!(value("host"), Some("sts.amazonaws.com"));
        assert_eq!(value("content-length"), Some("43"));
        assert_eq!(value("content-type"), Some(STS_CONTENT_TYPE));
        assert_eq!(value("authorization"), Some(signed.authorization.as_str()));
        assert_eq!(value("x-amz-date"), Some("20240102T030405Z"));
        assert_eq!(value("x-amz-security-token"), Some("tok"));
        assert_eq!(value("x-mongodb-gs2-cb-flag"), Some("n"));
        assert_eq!(value("x-mongodb-server-nonce"), Some("bm9uY2U="));
        Ok(())
    }

    #[tokio::test]
    async fn closed_port_is_sts_unreachable() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        drop(listener);
        let err = call_sts(&url, &request(None)).await.err();
        assert_eq!(err.map(|err| err.kind()), Some(FailureKind::StsUnreachable));
        Ok(())
    }
}
