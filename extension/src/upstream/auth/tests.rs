use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::*;

pub(crate) const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub(crate) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub(crate) const TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";

/// 2024-01-02T03:04:05Z.
fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_164_645)
}

fn temporary() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET, Some(TOKEN.into()), None)
}

fn nonce() -> [u8; 32] {
    [1; 32]
}

fn server_payload(s: &[u8], h: &str) -> Vec<u8> {
    doc! { "s": Binary { subtype: BinarySubtype::Generic, bytes: s.to_vec() }, "h": h }
        .to_vec()
        .unwrap()
}

fn good_server_nonce() -> Vec<u8> {
    let mut s = nonce().to_vec();
    s.extend_from_slice(&[2; 32]);
    s
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of an `Authorization` header.
pub(crate) struct Authorization {
    pub(crate) access_key: String,
    pub(crate) scope: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

pub(crate) fn parse_authorization(a: &str) -> Authorization {
    let rest = a.strip_prefix("AWS4-HMAC-SHA256 ").expect("algorithm");
    let mut credential = "";
    let mut signed = "";
    let mut signature = "";
    for part in rest.split(", ") {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = v;
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = v;
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = v;
        }
    }
    let (access_key, scope) = credential.split_once('/').expect("credential");
    Authorization {
        access_key: access_key.into(),
        scope: scope.into(),
        signed_headers: signed.split(';').map(str::to_owned).collect(),
        signature: signature.into(),
    }
}

/// SigV4 computed independently of aws-sigv4, from the headers as sent: returns the canonical
/// request and the signature.
pub(crate) fn independent_signature(
    secret: &str,
    region: &str,
    amz_date: &str,
    headers: &[(String, String)],
    signed: &[String],
    body: &str,
) -> (String, String) {
    let mut canonical = String::from("POST\n/\n\n");
    for name in signed {
        let value = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("signed header {name} not sent"));
        canonical.push_str(&format!("{name}:{value}\n"));
    }
    canonical.push('\n');
    canonical.push_str(&signed.join(";"));
    canonical.push('\n');
    canonical.push_str(&hex(&Sha256::digest(body.as_bytes())));

    let day = &amz_date[..8];
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/sts/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), day);
    let k = hmac(&k, region);
    let k = hmac(&k, "sts");
    let k = hmac(&k, "aws4_request");
    (canonical, hex(&hmac(&k, &string_to_sign)))
}

/// The headers Atlas rebuilds from `{a, d, t}` and the server nonce.
fn atlas_headers(
    host: &str,
    date: &str,
    token: Option<&str>,
    nonce_b64: &str,
) -> Vec<(String, String)> {
    let mut h = vec![
        ("Content-Type".to_owned(), STS_CONTENT_TYPE.to_owned()),
        ("Content-Length".to_owned(), "43".to_owned()),
        ("Host".to_owned(), host.to_owned()),
        ("X-Amz-Date".to_owned(), date.to_owned()),
        ("X-MongoDB-Server-Nonce".to_owned(), nonce_b64.to_owned()),
        ("X-MongoDB-GS2-CB-Flag".to_owned(), "n".to_owned()),
    ];
    if let Some(t) = token {
        h.push(("X-Amz-Security-Token".to_owned(), t.to_owned()));
    }
    h
}

#[test]
fn client_first_payload_is_r_and_p_110() {
    let first = client_first_with_nonce([7; 32]);
    let doc = Document::from_reader(first.payload.as_slice()).unwrap();
    assert_eq!(doc.get_binary_generic("r").unwrap(), &vec![7u8; 32]);
    assert_eq!(doc.get_i32("p").unwrap(), 110);
    assert_eq!(doc.len(), 2);
    // Same bytes as the bson crate produces.
    let expected = doc! {
        "r": Binary { subtype: BinarySubtype::Generic, bytes: vec![7; 32] },
        "p": 110_i32,
    }
    .to_vec()
    .unwrap();
    assert_eq!(first.payload, expected);
}

#[test]
fn client_first_nonces_are_random() {
    assert_ne!(client_first().nonce, client_first().nonce);
}

#[test]
fn server_payload_checks() {
    let n = nonce();
    assert!(
        ServerFirst::parse(
            &server_payload(&good_server_nonce(), "sts.amazonaws.com"),
            &n
        )
        .is_ok()
    );

    let short = &good_server_nonce()[..63];
    assert_eq!(
        ServerFirst::parse(&server_payload(short, "sts.amazonaws.com"), &n),
        Err(AuthError::ServerPayload("s is not 64 bytes long"))
    );
    let mut other = good_server_nonce();
    other[0] = 9;
    assert_eq!(
        ServerFirst::parse(&server_payload(&other, "sts.amazonaws.com"), &n),
        Err(AuthError::NonceMismatch)
    );
    for h in [
        "",
        ".sts.amazonaws.com",
        "sts.amazonaws.com.",
        "sts..amazonaws.com",
        "a b",
        "a/b",
    ] {
        assert!(
            matches!(
                ServerFirst::parse(&server_payload(&good_server_nonce(), h), &n),
                Err(AuthError::StsHost(_))
            ),
            "{h:?}"
        );
    }
    let long = format!("{}.com", "a".repeat(252));
    assert!(matches!(
        ServerFirst::parse(&server_payload(&good_server_nonce(), &long), &n),
        Err(AuthError::StsHost(_))
    ));
    let max = format!("{}.com", "a".repeat(251));
    assert!(ServerFirst::parse(&server_payload(&good_server_nonce(), &max), &n).is_ok());

    let no_h = doc! { "s": Binary { subtype: BinarySubtype::Generic, bytes: good_server_nonce() } };
    assert_eq!(
        ServerFirst::parse(&no_h.to_vec().unwrap(), &n),
        Err(AuthError::ServerPayload("h is missing"))
    );
    let no_s = doc! { "h": "sts.amazonaws.com" };
    assert_eq!(
        ServerFirst::parse(&no_s.to_vec().unwrap(), &n),
        Err(AuthError::ServerPayload("s is missing"))
    );
    assert_eq!(
        ServerFirst::parse(b"garbage", &n),
        Err(AuthError::ServerPayload("not a BSON document"))
    );
}

#[test]
fn region_from_sts_host() {
    assert_eq!(sts_region("sts.amazonaws.com"), "us-east-1");
    assert_eq!(sts_region("sts.us-west-2.amazonaws.com"), "us-west-2");
    assert_eq!(sts_region("sts.eu-central-1.amazonaws.com"), "eu-central-1");
    assert_eq!(sts_region("localhost"), "us-east-1");
    assert_eq!(sts_region("first.second"), "second");
}

#[test]
fn client_final_signs_what_atlas_rebuilds() {
    let n = nonce();
    let payload = client_final(
        &server_payload(&good_server_nonce(), "sts.amazonaws.com"),
        &n,
        &temporary(),
        fixed_time(),
    )
    .unwrap();
    let doc = Document::from_reader(payload.as_slice()).unwrap();
    let a = doc.get_str("a").unwrap();
    let d = doc.get_str("d").unwrap();
    assert_eq!(doc.get_str("t").unwrap(), TOKEN);
    assert_eq!(d, "20240102T030405Z");

    let auth = parse_authorization(a);
    assert_eq!(auth.access_key, ACCESS_KEY);
    assert_eq!(auth.scope, "20240102/us-east-1/sts/aws4_request");
    assert_eq!(
        auth.signed_headers,
        vec![
            "content-length",
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-security-token",
            "x-mongodb-gs2-cb-flag",
            "x-mongodb-server-nonce"
        ]
    );

    let nonce_b64 = base64::engine::general_purpose::STANDARD.encode(good_server_nonce());
    let headers = atlas_headers("sts.amazonaws.com", d, Some(TOKEN), &nonce_b64);
    let (canonical, signature) = independent_signature(
        SECRET,
        "us-east-1",
        d,
        &headers,
        &auth.signed_headers,
        STS_BODY,
    );
    // Golden canonical request.
    assert_eq!(
        canonical,
        "POST\n/\n\n\
         content-length:43\n\
         content-type:application/x-www-form-urlencoded\n\
         host:sts.amazonaws.com\n\
         x-amz-date:20240102T030405Z\n\
         x-amz-security-token:FwoGZXIvYXdzEXAMPLETOKEN\n\
         x-mongodb-gs2-cb-flag:n\n\
         x-mongodb-server-nonce:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQECAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg==\n\
         \n\
         content-length;content-type;host;x-amz-date;x-amz-security-token;x-mongodb-gs2-cb-flag;x-mongodb-server-nonce\n\
         ab821ae955788b0e33ebd34c208442ccfc2d406e2edc5e7a39bd6458fbb4f843"
    );
    assert_eq!(
        signature, auth.signature,
        "independent SigV4 agrees with aws-sigv4"
    );
    // Golden signature, computed once with Python's hmac/hashlib from the canonical request.
    assert_eq!(
        auth.signature,
        "096f513bbdeccae5c631147841b49ca4093fbbc4af392b54a2f6ee1ba35321d3"
    );
}

#[test]
fn client_final_with_long_term_credentials_has_no_token() {
    let creds = Credentials::new(ACCESS_KEY, SECRET, None, None);
    let payload = client_final(
        &server_payload(&good_server_nonce(), "sts.us-west-2.amazonaws.com"),
        &nonce(),
        &creds,
        fixed_time(),
    )
    .unwrap();
    let doc = Document::from_reader(payload.as_slice()).unwrap();
    assert!(doc.get("t").is_none());
    let auth = parse_authorization(doc.get_str("a").unwrap());
    assert_eq!(auth.scope, "20240102/us-west-2/sts/aws4_request");
    assert!(
        !auth
            .signed_headers
            .contains(&"x-amz-security-token".to_owned())
    );

    let d = doc.get_str("d").unwrap();
    let nonce_b64 = base64::engine::general_purpose::STANDARD.encode(good_server_nonce());
    let headers = atlas_headers("sts.us-west-2.amazonaws.com", d, None, &nonce_b64);
    let (_, signature) = independent_signature(
        SECRET,
        "us-west-2",
        d,
        &headers,
        &auth.signed_headers,
        STS_BODY,
    );
    assert_eq!(signature, auth.signature);
}

#[test]
fn client_final_rejects_a_bad_server_payload_before_signing() {
    let mut other = good_server_nonce();
    other[5] ^= 1;
    assert_eq!(
        client_final(
            &server_payload(&other, "sts.amazonaws.com"),
            &nonce(),
            &temporary(),
            fixed_time()
        ),
        Err(AuthError::NonceMismatch)
    );
}

#[test]
fn sasl_commands_have_the_spec_shape() {
    let start = sasl_start_command(vec![1, 2, 3]);
    let keys: Vec<&str> = start.keys().map(String::as_str).collect();
    assert_eq!(keys, ["saslStart", "mechanism", "payload", "$db"]);
    assert_eq!(start.get_i32("saslStart").unwrap(), 1);
    assert_eq!(start.get_str("mechanism").unwrap(), "MONGODB-AWS");
    assert_eq!(start.get_binary_generic("payload").unwrap(), &vec![1, 2, 3]);
    assert_eq!(start.get_str("$db").unwrap(), "$external");

    let cont = sasl_continue_command(7, vec![4]);
    let keys: Vec<&str> = cont.keys().map(String::as_str).collect();
    assert_eq!(keys, ["saslContinue", "conversationId", "payload", "$db"]);
    assert_eq!(cont.get_i32("conversationId").unwrap(), 7);
    assert_eq!(cont.get_str("$db").unwrap(), "$external");
}

#[test]
fn sasl_replies() {
    let reply = doc! {
        "conversationId": 1_i32,
        "done": false,
        "payload": Binary { subtype: BinarySubtype::Generic, bytes: vec![9] },
        "ok": 1.0,
    };
    assert_eq!(
        SaslReply::parse(&reply).unwrap(),
        SaslReply {
            conversation_id: 1,
            payload: vec![9],
            done: false
        }
    );
    let failed = doc! {
        "ok": 0.0, "errmsg": "Authentication failed.", "code": 18_i32,
        "codeName": "AuthenticationFailed",
    };
    let e = SaslReply::parse(&failed).unwrap_err();
    assert_eq!(
        e,
        AuthError::Refused {
            code: 18,
            code_name: "AuthenticationFailed".into(),
            message: "Authentication failed.".into()
        }
    );
    assert!(matches!(
        SaslReply::parse(&doc! { "ok": 1 }),
        Err(AuthError::Reply("conversationId is missing"))
    ));
    assert!(matches!(
        SaslReply::parse(&doc! { "ok": 1, "conversationId": 1 }),
        Err(AuthError::Reply("payload is missing"))
    ));
    assert!(matches!(
        SaslReply::parse(&doc! {}),
        Err(AuthError::Reply(_))
    ));
}

/// Every type that may be near a secret is formatted with known secrets, which must not show.
#[test]
fn secrets_never_appear_in_debug_display_or_errors() {
    use super::credentials::{CredentialsError, CredentialsSource};
    use super::sts::{Diagnosis, StsEndpoint};

    let creds = temporary();
    let provider = CredentialsProvider::from_static(creds.clone());
    let signed =
        sign_get_caller_identity("sts.amazonaws.com", "us-east-1", &creds, fixed_time(), &[])
            .unwrap();
    let mut texts = vec![
        format!("{creds:?}"),
        format!("{provider:?}"),
        format!("{signed:?}"),
        format!("{:?}", CredentialsError::NotFound),
        CredentialsError::NotFound.to_string(),
        CredentialsError::IncompleteEnvironment {
            present: "AWS_ACCESS_KEY_ID",
            missing: "AWS_SECRET_ACCESS_KEY",
        }
        .to_string(),
        format!("{:?}", CredentialsSource::Environment),
        format!("{:?}", StsEndpoint::from_lookup(|_| None).unwrap()),
        Diagnosis::Rejected {
            code: "SignatureDoesNotMatch".into(),
        }
        .to_string(),
    ];
    let bad_payload = server_payload(&[0; 64], "sts.amazonaws.com");
    let e = client_final(&bad_payload, &nonce(), &creds, fixed_time()).unwrap_err();
    texts.push(e.to_string());
    texts.push(format!("{e:?}"));
    for text in &texts {
        assert!(!text.contains(SECRET), "secret key in {text}");
        assert!(!text.contains(TOKEN), "session token in {text}");
        assert!(!text.contains("wJalr"), "part of the secret in {text}");
    }
    assert!(
        texts[0].contains(ACCESS_KEY),
        "the access key id helps diagnosis: {}",
        texts[0]
    );
}
