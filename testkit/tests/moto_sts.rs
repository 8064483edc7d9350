//! `aws_auth::verify` in forward mode against moto's STS (PyPI `moto[server]`), which checks
//! SigV4 signatures independently once its IAM authentication is switched on.
//!
//! Each test starts moto with `mongo_pool_testkit::moto::Moto` (a free loopback port,
//! authentication on after its admin bootstrap), creates an IAM user + access key and a role +
//! assumed-role credentials. The tests are skipped, with a printed reason, only when
//! `.venv/bin/moto_server` does not exist (`make venv` installs it).

use std::time::SystemTime;

use anyhow::{bail, ensure};
use base64::Engine as _;
use mongo_pool_testkit::aws_auth::{
    self, AuthFailure, CallerArn, FailureKind, STS_BODY, STS_CONTENT_TYPE, Verifier,
};
use mongo_pool_testkit::moto::{self, ACCOUNT, Keys, Moto, sigv4_headers};

const STS_HOST: &str = "sts.amazonaws.com";
const USER: &str = "alice";
const ROLE: &str = "app-role";
const SESSION: &str = "lambda-session";

/// Starts moto (see `mongo_pool_testkit::moto`), or returns `None` (after printing why) when
/// the venv lacks it.
async fn start_moto() -> anyhow::Result<Option<Moto>> {
    let path = moto::moto_server_path();
    if !path.exists() {
        println!(
            "SKIPPED: {} not found; run `make venv` to test forward mode against moto",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(Moto::start().await?))
}

/// User `alice` with an access key, and role `app-role` assumed as `lambda-session`; moto
/// authenticates every call from the start.
async fn principals(moto: &Moto) -> anyhow::Result<(Keys, Keys)> {
    let user = moto.create_user(USER).await?;
    let role = moto.create_role(ROLE).await?;
    let assumed = moto.assume_role(&role, SESSION).await?;
    Ok((user, assumed))
}

/// How the MONGODB-AWS client misbehaves, if at all.
#[derive(Default, Clone, Copy)]
struct Tamper {
    wrong_secret: bool,
    other_nonce: bool,
    other_host: bool,
}

/// One MONGODB-AWS conversation: saslStart, a driver-style signature, forward verification.
async fn authenticate(
    moto: &Moto,
    keys: &Keys,
    tamper: Tamper,
) -> anyhow::Result<Result<CallerArn, AuthFailure>> {
    let client_first = bson::doc! {
        "r": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![42u8; 32] },
        "p": 110,
    }
    .to_vec()?;
    let first = aws_auth::server_first(&client_first, STS_HOST)?;
    let mut signed_nonce = first.nonce;
    if tamper.other_nonce {
        signed_nonce[40] ^= 0xff;
    }
    let nonce = base64::engine::general_purpose::STANDARD.encode(signed_nonce);
    let host = if tamper.other_host {
        "sts.us-east-1.amazonaws.com"
    } else {
        STS_HOST
    };
    let length = STS_BODY.len().to_string();
    let headers = [
        ("content-type", STS_CONTENT_TYPE),
        ("content-length", length.as_str()),
        ("host", host),
        ("x-mongodb-server-nonce", nonce.as_str()),
        ("x-mongodb-gs2-cb-flag", "n"),
    ];
    let mut keys = keys.clone();
    if tamper.wrong_secret {
        keys.secret.push('x');
    }
    let now = SystemTime::now();
    let signed = sigv4_headers(&keys, "sts", host, &headers, STS_BODY, now)?;
    let mut payload = bson::Document::new();
    for (name, value) in signed {
        match name.to_ascii_lowercase().as_str() {
            "authorization" => payload.insert("a", value),
            "x-amz-date" => payload.insert("d", value),
            _ => None,
        };
    }
    if let Some(token) = &keys.token {
        payload.insert("t", token.as_str());
    }
    let verifier = Verifier::Forward {
        sts_url: format!("{}/", moto.url),
    };
    Ok(aws_auth::verify(&verifier, &payload.to_vec()?, &first.nonce, STS_HOST, now).await)
}

fn expect_sts_failure(
    result: Result<CallerArn, AuthFailure>,
    kind: FailureKind,
    code: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(arn) => bail!("expected {code}, got caller {arn}"),
        Err(failure) => {
            ensure!(failure.kind() == kind, "expected {kind}, got {failure}");
            ensure!(
                failure.sts_code() == Some(code),
                "expected {code}, got {failure}"
            );
            Ok(())
        }
    }
}

#[tokio::test]
async fn forward_returns_the_user_arn_for_long_term_keys() -> anyhow::Result<()> {
    let Some(moto) = start_moto().await? else {
        return Ok(());
    };
    let (user, _) = principals(&moto).await?;
    let arn = authenticate(&moto, &user, Tamper::default()).await??;
    assert_eq!(arn.0, format!("arn:aws:iam::{ACCOUNT}:user/{USER}"));
    assert_eq!(aws_auth::user_for_arn(&arn.0), arn.0);
    Ok(())
}

#[tokio::test]
async fn forward_returns_the_assumed_role_arn_for_temporary_credentials() -> anyhow::Result<()> {
    let Some(moto) = start_moto().await? else {
        return Ok(());
    };
    let (_, role) = principals(&moto).await?;
    let arn = authenticate(&moto, &role, Tamper::default()).await??;
    assert_eq!(
        arn.0,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{SESSION}")
    );
    assert_eq!(
        aws_auth::user_for_arn(&arn.0),
        format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}")
    );
    Ok(())
}

#[tokio::test]
async fn forward_reports_moto_error_codes_for_bad_signatures_keys_and_tokens() -> anyhow::Result<()>
{
    let Some(moto) = start_moto().await? else {
        return Ok(());
    };
    let (user, role) = principals(&moto).await?;
    let wrong_secret = Tamper {
        wrong_secret: true,
        ..Tamper::default()
    };
    expect_sts_failure(
        authenticate(&moto, &user, wrong_secret).await?,
        FailureKind::SignatureMismatch,
        "SignatureDoesNotMatch",
    )?;
    expect_sts_failure(
        authenticate(&moto, &role, wrong_secret).await?,
        FailureKind::SignatureMismatch,
        "SignatureDoesNotMatch",
    )?;
    // moto checks the MongoDB-specific signed headers and the forwarded Host.
    let other_nonce = Tamper {
        other_nonce: true,
        ..Tamper::default()
    };
    expect_sts_failure(
        authenticate(&moto, &user, other_nonce).await?,
        FailureKind::SignatureMismatch,
        "SignatureDoesNotMatch",
    )?;
    let other_host = Tamper {
        other_host: true,
        ..Tamper::default()
    };
    expect_sts_failure(
        authenticate(&moto, &user, other_host).await?,
        FailureKind::SignatureMismatch,
        "SignatureDoesNotMatch",
    )?;
    let unknown = Keys {
        key_id: "AKIAUNKNOWNKEY000000".into(),
        ..user.clone()
    };
    expect_sts_failure(
        authenticate(&moto, &unknown, Tamper::default()).await?,
        FailureKind::UnknownKey,
        "InvalidClientTokenId",
    )?;
    let wrong_token = Keys {
        token: Some("not-the-session-token".into()),
        ..role.clone()
    };
    expect_sts_failure(
        authenticate(&moto, &wrong_token, Tamper::default()).await?,
        FailureKind::UnknownKey,
        "InvalidClientTokenId",
    )?;
    Ok(())
}
