//! Tests of the MONGODB-AWS server side. Client signatures come from `aws-sigv4` (the AWS
//! SDK's signer), signing the request exactly as a MongoDB driver does, so the verifier is
//! checked against an independent implementation.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;

use super::*;

const KEY_ID: &str = "AKIASIMUSER0000001";
const SECRET: &str = "s3cr3t/KEY+value0000000000000000000000000";
const TEMP_KEY_ID: &str = "ASIASIMROLE0000001";
const TEMP_SECRET: &str = "t3mp/SECRET+value000000000000000000000000";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLE-session-token//value==";
const HOST: &str = DEFAULT_STS_HOST;

/// How the test client signs: defaults are what a correct MongoDB driver does.
#[derive(Debug, Clone)]
struct Signing {
    key_id: &'static str,
    secret: &'static str,
    token: Option<&'static str>,
    host: &'static str,
    region: Option<&'static str>,
    nonce: [u8; NONCE_LEN],
    at: SystemTime,
    omit_header: Option<&'static str>,
}

impl Signing {
    fn long_term(nonce: [u8; NONCE_LEN], at: SystemTime) -> Self {
        Self {
            key_id: KEY_ID,
            secret: SECRET,
            token: None,
            host: HOST,
            region: None,
            nonce,
            at,
            omit_header: None,
        }
    }

    fn temporary(nonce: [u8; NONCE_LEN], at: SystemTime) -> Self {
        Self {
            key_id: TEMP_KEY_ID,
            secret: TEMP_SECRET,
            token: Some(TOKEN),
            ..Self::long_term(nonce, at)
        }
    }

    /// The `saslContinue` payload `{a, d, t?}`.
    fn client_final(&self) -> anyhow::Result<Vec<u8>> {
        let nonce = base64::engine::general_purpose::STANDARD.encode(self.nonce);
        let length = STS_BODY.len().to_string();
        let headers: Vec<(&str, &str)> = [
            ("content-type", STS_CONTENT_TYPE),
            ("content-length", length.as_str()),
            ("host", self.host),
            ("x-mongodb-server-nonce", nonce.as_str()),
            ("x-mongodb-gs2-cb-flag", GS2_CB_FLAG),
        ]
        .into_iter()
        .filter(|(name, _)| Some(*name) != self.omit_header)
        .collect();
        let identity = Credentials::new(
            self.key_id,
            self.secret,
            self.token.map(String::from),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region.unwrap_or_else(|| region_for_host(self.host)))
            .name("sts")
            .time(self.at)
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            "POST",
            format!("https://{}/", self.host),
            headers.into_iter(),
            SignableBody::Bytes(STS_BODY.as_bytes()),
        )?;
        let (instructions, _signature) = sign(signable, &params)?.into_parts();
        let mut doc = bson::Document::new();
        for (name, value) in instructions.headers() {
            if name.eq_ignore_ascii_case("authorization") {
                doc.insert("a", value);
            } else if name.eq_ignore_ascii_case("x-amz-date") {
                doc.insert("d", value);
            }
        }
        if let Some(token) = self.token {
            doc.insert("t", token);
        }
        anyhow::ensure!(
            doc.contains_key("a") && doc.contains_key("d"),
            "signer output"
        );
        Ok(doc.to_vec()?)
    }
}

fn principals() -> Verifier {
    Verifier::Local(vec![
        Principal::long_term(KEY_ID, SECRET),
        Principal::assumed_role(
            TEMP_KEY_ID,
            TEMP_SECRET,
            TOKEN,
            "app-role",
            "lambda-session",
        ),
    ])
}

fn client_first(r: &[u8], p: i32) -> anyhow::Result<Vec<u8>> {
    Ok(bson::doc! {
        "r": bson::Binary { subtype: BinarySubtype::Generic, bytes: r.to_vec() },
        "p": p,
    }
    .to_vec()?)
}

/// Runs a full conversation: saslStart, then the client signs with `tamper` applied.
async fn conversation(
    verifier: &Verifier,
    signing: impl FnOnce([u8; NONCE_LEN], SystemTime) -> Signing,
) -> anyhow::Result<Result<CallerArn, AuthFailure>> {
    let first = server_first(&client_first(&[7u8; 32], 110)?, HOST)?;
    let now = SystemTime::now();
    let payload = signing(first.nonce, now).client_final()?;
    Ok(verify(verifier, &payload, &first.nonce, HOST, now).await)
}

/// Asserts a failure of `kind` whose reason contains `reason` and no secret material.
fn assert_failure(
    result: Result<CallerArn, AuthFailure>,
    kind: FailureKind,
    reason: &str,
) -> anyhow::Result<()> {
    let Err(failure) = result else {
        anyhow::bail!("expected a {kind} failure, got {result:?}");
    };
    assert_eq!(failure.kind(), kind, "{failure}");
    assert!(
        failure.reason().contains(reason),
        "reason {:?} lacks {reason:?}",
        failure.reason()
    );
    let shown = format!("{failure} {failure:?}");
    for secret in [SECRET, TEMP_SECRET, TOKEN, "Signature="] {
        assert!(!shown.contains(secret), "failure leaks {secret:?}: {shown}");
    }
    Ok(())
}

#[test]
fn server_first_echoes_r_and_names_the_host() -> anyhow::Result<()> {
    let r: Vec<u8> = (0u8..32).collect();
    let first = server_first(&client_first(&r, 110)?, "sts.us-west-2.amazonaws.com")?;
    assert_eq!(&first.nonce[..32], r.as_slice());
    let reply = bson::Document::from_reader(first.payload.as_slice())?;
    let s = reply.get_binary_generic("s")?;
    assert_eq!(s.as_slice(), first.nonce.as_slice());
    assert_eq!(reply.get_str("h")?, "sts.us-west-2.amazonaws.com");
    let again = server_first(&client_first(&r, 110)?, HOST)?;
    assert_ne!(
        again.nonce[32..],
        first.nonce[32..],
        "server half is random"
    );
    Ok(())
}

#[test]
fn server_first_rejects_a_short_nonce_a_wrong_flag_and_garbage() -> anyhow::Result<()> {
    for (payload, reason) in [
        (client_first(&[1u8; 31], 110)?, "32 bytes"),
        (client_first(&[1u8; 32], 121)?, "must be 110"),
        (bson::doc! {"p": 110}.to_vec()?, "lacks binary field r"),
        (vec![5, 0, 0], "not BSON"),
    ] {
        let result = server_first(&payload, HOST);
        let err = result.err();
        assert!(
            err.as_ref().is_some_and(
                |err| err.kind() == FailureKind::BadRequest && err.reason().contains(reason)
            ),
            "{reason}: {err:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn good_long_term_signature_yields_the_user_arn() -> anyhow::Result<()> {
    let arn = conversation(&principals(), Signing::long_term).await??;
    assert_eq!(arn.0, format!("arn:aws:iam::123456789012:user/{KEY_ID}"));
    assert_eq!(user_for_arn(&arn.0), arn.0);
    Ok(())
}

#[tokio::test]
async fn good_temporary_signature_yields_the_assumed_role_arn() -> anyhow::Result<()> {
    let arn = conversation(&principals(), Signing::temporary).await??;
    assert_eq!(
        arn.0,
        "arn:aws:sts::123456789012:assumed-role/app-role/lambda-session"
    );
    assert_eq!(
        user_for_arn(&arn.0),
        "arn:aws:iam::123456789012:role/app-role"
    );
    Ok(())
}

#[tokio::test]
async fn regional_sts_host_is_signed_for_its_region() -> anyhow::Result<()> {
    let host = "sts.eu-west-1.amazonaws.com";
    let first = server_first(&client_first(&[3u8; 32], 110)?, host)?;
    let now = SystemTime::now();
    let payload = Signing {
        host,
        ..Signing::long_term(first.nonce, now)
    }
    .client_final()?;
    let arn = verify(&principals(), &payload, &first.nonce, host, now).await?;
    assert!(arn.0.ends_with(KEY_ID));
    Ok(())
}

#[tokio::test]
async fn wrong_secret_is_a_signature_mismatch() -> anyhow::Result<()> {
    let result = conversation(&principals(), |nonce, at| Signing {
        secret: "not-the-secret",
        ..Signing::long_term(nonce, at)
    })
    .await?;
    assert_failure(result, FailureKind::SignatureMismatch, "signature mismatch")
}

#[tokio::test]
async fn signature_over_another_nonce_is_a_signature_mismatch() -> anyhow::Result<()> {
    let result = conversation(&principals(), |mut nonce, at| {
        nonce[63] ^= 1;
        Signing::long_term(nonce, at)
    })
    .await?;
    assert_failure(result, FailureKind::SignatureMismatch, "signature mismatch")
}

#[tokio::test]
async fn signature_for_another_host_is_a_signature_mismatch() -> anyhow::Result<()> {
    // Same derived region (us-east-1), so only the signature can tell.
    let result = conversation(&principals(), |nonce, at| Signing {
        host: "sts.us-east-1.amazonaws.com",
        ..Signing::long_term(nonce, at)
    })
    .await?;
    assert_failure(result, FailureKind::SignatureMismatch, "signature mismatch")
}

#[tokio::test]
async fn credential_scope_for_another_region_is_rejected() -> anyhow::Result<()> {
    let result = conversation(&principals(), |nonce, at| Signing {
        region: Some("us-west-2"),
        ..Signing::long_term(nonce, at)
    })
    .await?;
    assert_failure(result, FailureKind::BadRequest, "region \"us-west-2\"")
}

#[tokio::test]
async fn every_required_header_must_be_signed() -> anyhow::Result<()> {
    for header in [
        "x-mongodb-server-nonce",
        "x-mongodb-gs2-cb-flag",
        "content-type",
        "content-length",
    ] {
        let result = conversation(&principals(), |nonce, at| Signing {
            omit_header: Some(header),
            ..Signing::long_term(nonce, at)
        })
        .await?;
        assert_failure(result, FailureKind::BadRequest, &format!("lacks {header}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn signed_headers_without_host_are_rejected() -> anyhow::Result<()> {
    // aws-sigv4 always signs `host`, so edit the header a driver would have sent.
    let first = server_first(&client_first(&[5u8; 32], 110)?, HOST)?;
    let now = SystemTime::now();
    let payload = Signing::long_term(first.nonce, now).client_final()?;
    let mut doc = bson::Document::from_reader(payload.as_slice())?;
    let authorization = doc.get_str("a")?.replace(";host;", ";");
    doc.insert("a", authorization);
    let result = verify(&principals(), &doc.to_vec()?, &first.nonce, HOST, now).await;
    assert_failure(result, FailureKind::BadRequest, "lacks host")
}

#[tokio::test]
async fn stale_or_future_date_is_expired() -> anyhow::Result<()> {
    for offset in [-16i64 * 60, 16 * 60] {
        let result = conversation(&principals(), |nonce, at| {
            let at = if offset < 0 {
                at - Duration::from_secs(offset.unsigned_abs())
            } else {
                at + Duration::from_secs(offset.unsigned_abs())
            };
            Signing::long_term(nonce, at)
        })
        .await?;
        assert_failure(result, FailureKind::Expired, "outside 15 minutes")?;
    }
    // Within the window is fine.
    let arn = conversation(&principals(), |nonce, at| {
        Signing::long_term(nonce, at - Duration::from_secs(14 * 60))
    })
    .await?;
    assert!(arn.is_ok(), "{arn:?}");
    Ok(())
}

#[tokio::test]
async fn unknown_key_id_is_named_in_the_reason() -> anyhow::Result<()> {
    let result = conversation(&principals(), |nonce, at| Signing {
        key_id: "AKIAUNKNOWN000000000",
        ..Signing::long_term(nonce, at)
    })
    .await?;
    assert_failure(
        result,
        FailureKind::UnknownKey,
        "unknown access key id AKIAUNKNOWN000000000",
    )
}

#[tokio::test]
async fn session_token_must_match_and_be_present_exactly_when_expected() -> anyhow::Result<()> {
    let wrong = conversation(&principals(), |nonce, at| Signing {
        token: Some("another-token"),
        ..Signing::temporary(nonce, at)
    })
    .await?;
    assert_failure(wrong, FailureKind::UnknownKey, "session token mismatch")?;

    let missing = conversation(&principals(), |nonce, at| Signing {
        token: None,
        ..Signing::temporary(nonce, at)
    })
    .await?;
    assert_failure(missing, FailureKind::UnknownKey, "session token missing")?;

    let unexpected = conversation(&principals(), |nonce, at| Signing {
        token: Some("a-token"),
        ..Signing::long_term(nonce, at)
    })
    .await?;
    assert_failure(
        unexpected,
        FailureKind::UnknownKey,
        "session token present but unexpected",
    )
}

#[tokio::test]
async fn token_sent_but_not_signed_is_rejected() -> anyhow::Result<()> {
    let first = server_first(&client_first(&[9u8; 32], 110)?, HOST)?;
    let now = SystemTime::now();
    let payload = Signing::long_term(first.nonce, now).client_final()?;
    let mut doc = bson::Document::from_reader(payload.as_slice())?;
    doc.insert("t", TOKEN);
    let result = verify(&principals(), &doc.to_vec()?, &first.nonce, HOST, now).await;
    assert_failure(
        result,
        FailureKind::BadRequest,
        "lacks x-amz-security-token",
    )
}

#[tokio::test]
async fn payload_without_authorization_is_a_bad_request() -> anyhow::Result<()> {
    let nonce = [0u8; NONCE_LEN];
    let payload = bson::doc! {"d": "20240102T030405Z"}.to_vec()?;
    let result = verify(&principals(), &payload, &nonce, HOST, SystemTime::now()).await;
    assert_failure(result, FailureKind::BadRequest, "lacks field a")
}

#[test]
fn assumed_role_arn_maps_to_the_role_and_others_to_themselves() {
    for (arn, user) in [
        (
            "arn:aws:sts::111122223333:assumed-role/my-role/my-session",
            "arn:aws:iam::111122223333:role/my-role",
        ),
        (
            "arn:aws-cn:sts::111122223333:assumed-role/r/s@example.com",
            "arn:aws-cn:iam::111122223333:role/r",
        ),
        (
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:user/alice",
        ),
        (
            "arn:aws:sts::111122223333:federated-user/bob",
            "arn:aws:sts::111122223333:federated-user/bob",
        ),
        ("not-an-arn", "not-an-arn"),
    ] {
        assert_eq!(user_for_arn(arn), user, "{arn}");
    }
}

#[test]
fn region_follows_the_driver_rules() {
    assert_eq!(region_for_host("sts.amazonaws.com"), "us-east-1");
    assert_eq!(region_for_host("sts.us-west-2.amazonaws.com"), "us-west-2");
    assert_eq!(region_for_host("first.second"), "second");
    assert_eq!(region_for_host("localhost"), "us-east-1");
}

#[test]
fn principal_debug_redacts_secret_and_token() {
    let principal = Principal::assumed_role(TEMP_KEY_ID, TEMP_SECRET, TOKEN, "r", "s");
    let shown = format!("{principal:?} {:?}", principals());
    assert!(shown.contains(TEMP_KEY_ID));
    assert!(!shown.contains(TEMP_SECRET) && !shown.contains(TOKEN) && !shown.contains(SECRET));
}
