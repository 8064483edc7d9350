use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::test_support::{Seen, serve_http};
use crate::upstream::auth::tests::{
    ACCESS_KEY, SECRET, TOKEN, independent_signature, parse_authorization,
};

const SUCCESS: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/orders-fn-role/orders-fn</Arn>
    <UserId>AROAEXAMPLE:orders-fn</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;

fn error_xml(code: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>The security token included in the request is invalid.</Message></Error>
  <RequestId>01234567</RequestId>
</ErrorResponse>"#
    )
}

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn assumed_role_maps_to_the_role_arn() {
    assert_eq!(
        atlas_user_arn("arn:aws:sts::123456789012:assumed-role/orders-fn-role/orders-fn"),
        "arn:aws:iam::123456789012:role/orders-fn-role"
    );
    assert_eq!(
        atlas_user_arn("arn:aws-cn:sts::123456789012:assumed-role/r/s"),
        "arn:aws-cn:iam::123456789012:role/r"
    );
    for same in [
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:root",
        "arn:aws:sts::123456789012:federated-user/bob",
        "not an arn",
    ] {
        assert_eq!(atlas_user_arn(same), same);
    }
}

#[test]
fn success_reply_gives_the_caller_and_the_atlas_user() {
    let d = interpret(200, SUCCESS);
    assert_eq!(
        d,
        Diagnosis::Caller {
            arn: "arn:aws:sts::123456789012:assumed-role/orders-fn-role/orders-fn".into(),
            atlas_user_arn: "arn:aws:iam::123456789012:role/orders-fn-role".into(),
        }
    );
    let text = d.to_string();
    assert!(
        text.contains("authenticating as ARN arn:aws:sts::123456789012:assumed-role"),
        "{text}"
    );
    assert!(
        text.contains("Atlas needs a database user for ARN arn:aws:iam::123456789012:role/orders-fn-role in $external"),
        "{text}"
    );
}

#[test]
fn error_replies() {
    assert_eq!(
        interpret(403, &error_xml("InvalidClientTokenId")),
        Diagnosis::Rejected {
            code: "InvalidClientTokenId".into()
        }
    );
    assert!(
        interpret(403, &error_xml("SignatureDoesNotMatch"))
            .to_string()
            .starts_with("STS rejected the credentials (SignatureDoesNotMatch)")
    );
    assert_eq!(
        interpret(400, &error_xml("Throttling")),
        Diagnosis::Throttled
    );
    assert_eq!(interpret(429, ""), Diagnosis::Throttled);
    assert!(matches!(
        interpret(503, "<html>down</html>"),
        Diagnosis::Unreachable { .. }
    ));
    assert!(matches!(
        interpret(500, &error_xml("InternalFailure")),
        Diagnosis::Unreachable { .. }
    ));
    assert!(matches!(
        interpret(200, "<x/>"),
        Diagnosis::Unreachable { .. }
    ));
    assert!(Diagnosis::Throttled.to_string().contains("throttling"));
}

#[test]
fn xml_entities_are_decoded() {
    assert_eq!(
        xml_element("<a><Arn> x&amp;y&lt;z </Arn></a>", "Arn").as_deref(),
        Some("x&y<z")
    );
    assert_eq!(xml_element("<Arn>unterminated", "Arn"), None);
}

#[test]
fn endpoint_selection() {
    let e = |pairs: &[(&str, &str)]| StsEndpoint::from_lookup(lookup(pairs)).unwrap();
    assert_eq!(e(&[]).url(), "https://sts.amazonaws.com/");
    assert_eq!(e(&[]).region(), "us-east-1");
    let regional = e(&[(ENV_REGION, "eu-west-1")]);
    assert_eq!(regional.url(), "https://sts.eu-west-1.amazonaws.com/");
    assert_eq!(regional.region(), "eu-west-1");
    assert_eq!(
        e(&[(ENV_DEFAULT_REGION, "us-west-2")]).url(),
        "https://sts.us-west-2.amazonaws.com/"
    );
    assert_eq!(
        e(&[(ENV_REGION, "cn-north-1")]).url(),
        "https://sts.cn-north-1.amazonaws.com.cn/"
    );
    let legacy = e(&[
        (ENV_REGION, "eu-west-1"),
        (ENV_STS_REGIONAL_ENDPOINTS, "legacy"),
    ]);
    assert_eq!(legacy.url(), "https://sts.amazonaws.com/");
    assert_eq!(legacy.region(), "us-east-1");
    assert_eq!(
        e(&[
            (ENV_REGION, "af-south-1"),
            (ENV_STS_REGIONAL_ENDPOINTS, "legacy")
        ])
        .url(),
        "https://sts.af-south-1.amazonaws.com/"
    );
    let custom = e(&[
        (ENV_REGION, "eu-west-1"),
        (ENV_ENDPOINT_URL_STS, "http://127.0.0.1:5000"),
    ]);
    assert_eq!(custom.url(), "http://127.0.0.1:5000/");
    assert_eq!(custom.region(), "eu-west-1");
    assert_eq!(
        e(&[(ENV_ENDPOINT_URL, "https://sts.internal.example:443/")]).url(),
        "https://sts.internal.example/"
    );
    assert_eq!(
        e(&[
            (ENV_ENDPOINT_URL, "http://a:1"),
            (ENV_ENDPOINT_URL_STS, "http://b:2")
        ])
        .url(),
        "http://b:2/"
    );
    for (var, bad) in [
        (ENV_ENDPOINT_URL_STS, "ftp://x"),
        (ENV_ENDPOINT_URL_STS, "http://x/path"),
        (ENV_ENDPOINT_URL_STS, "sts.amazonaws.com"),
        (ENV_STS_REGIONAL_ENDPOINTS, "sometimes"),
    ] {
        assert!(
            StsEndpoint::from_lookup(lookup(&[(var, bad)])).is_err(),
            "{var}={bad}"
        );
    }
}

#[test]
fn one_diagnosis_per_failure_episode() {
    let episode = FailureEpisode::default();
    assert!(episode.should_diagnose());
    assert!(!episode.should_diagnose());
    assert!(!episode.should_diagnose());
    episode.end();
    assert!(episode.should_diagnose());
}

async fn sts_server(
    status: u16,
    body: String,
) -> (
    StsEndpoint,
    Arc<Mutex<Vec<Seen>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let (addr, task) = serve_http(move |req| {
        log.lock().unwrap().push(req);
        (
            status,
            vec![("content-type", "text/xml".to_owned())],
            body.clone(),
        )
    })
    .await;
    let endpoint =
        StsEndpoint::from_url(ENV_ENDPOINT_URL_STS, &format!("http://{addr}"), "eu-west-1")
            .unwrap();
    (endpoint, seen, task)
}

#[tokio::test]
async fn diagnose_sends_a_verifiable_signed_request() {
    let (endpoint, seen, server) = sts_server(200, SUCCESS.to_owned()).await;
    let creds = Credentials::new(ACCESS_KEY, SECRET, Some(TOKEN.into()), None);
    let d = diagnose(&endpoint, &creds, DIAGNOSIS_TIMEOUT).await;
    assert!(matches!(d, Diagnosis::Caller { .. }), "{d:?}");

    let req = seen.lock().unwrap().pop().unwrap();
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
    assert_eq!(req.body, "Action=GetCallerIdentity&Version=2011-06-15");
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(header("content-type"), "application/x-www-form-urlencoded");
    assert_eq!(header("content-length"), "43");
    assert_eq!(header("x-amz-security-token"), TOKEN);
    let auth = parse_authorization(&header("authorization"));
    assert!(
        auth.scope.ends_with("/eu-west-1/sts/aws4_request"),
        "{}",
        auth.scope
    );
    assert_eq!(
        auth.signed_headers,
        [
            "content-length",
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-security-token"
        ]
    );
    let (_, signature) = independent_signature(
        SECRET,
        "eu-west-1",
        &header("x-amz-date"),
        &req.headers,
        &auth.signed_headers,
        &req.body,
    );
    assert_eq!(
        signature, auth.signature,
        "the server can verify what we sent"
    );
    server.abort();
}

#[tokio::test]
async fn diagnose_reports_rejection_and_throttling() {
    let creds = Credentials::new(ACCESS_KEY, SECRET, None, None);
    let (endpoint, _, server) = sts_server(403, error_xml("InvalidClientTokenId")).await;
    assert_eq!(
        diagnose(&endpoint, &creds, DIAGNOSIS_TIMEOUT).await,
        Diagnosis::Rejected {
            code: "InvalidClientTokenId".into()
        }
    );
    server.abort();
    let (endpoint, _, server) = sts_server(400, error_xml("Throttling")).await;
    assert_eq!(
        diagnose(&endpoint, &creds, DIAGNOSIS_TIMEOUT).await,
        Diagnosis::Throttled
    );
    server.abort();
}

#[tokio::test]
async fn diagnose_reports_an_unreachable_endpoint() {
    // Bind then drop: nothing listens on that port any more.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = StsEndpoint::from_url(
        ENV_ENDPOINT_URL_STS,
        &format!("http://127.0.0.1:{port}"),
        "us-east-1",
    )
    .unwrap();
    let creds = Credentials::new(ACCESS_KEY, SECRET, Some(TOKEN.into()), None);
    let d = diagnose(&endpoint, &creds, DIAGNOSIS_TIMEOUT).await;
    let Diagnosis::Unreachable { cause } = &d else {
        panic!("{d:?}")
    };
    assert!(cause.contains(&format!("127.0.0.1:{port}")), "{cause}");
    let text = d.to_string();
    assert!(text.contains("STS is unreachable"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(TOKEN));
}

#[tokio::test]
async fn diagnose_times_out() {
    // Accepts but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let _conn = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let endpoint =
        StsEndpoint::from_url(ENV_ENDPOINT_URL_STS, &format!("http://{addr}"), "us-east-1")
            .unwrap();
    let creds = Credentials::new(ACCESS_KEY, SECRET, None, None);
    let d = diagnose(&endpoint, &creds, Duration::from_millis(200)).await;
    assert!(
        matches!(&d, Diagnosis::Unreachable { cause } if cause.contains("no answer within 200 ms")),
        "{d:?}"
    );
    hold.abort();
}

#[test]
fn an_error_code_with_control_characters_is_cleaned_before_it_reaches_a_message() {
    // A forged log line, a terminal escape and a bidi override inside <Code>.
    let code = "Invalid\nERROR mongo-pool: forged line\x1b[31m\u{202E}Token\r\u{7}";
    let d = interpret(403, &error_xml(code));
    let Diagnosis::Rejected { code } = &d else {
        panic!("expected Rejected, got {d:?}");
    };
    assert_eq!(code, "Invalid ERROR mongo-pool: forged line[31mToken");
    let message = d.to_string();
    assert!(
        !message.chars().any(|c| c.is_control() || c == '\u{202E}'),
        "{message:?}"
    );
    // A 5xx echoes the code into the cause: cleaned there too.
    let d = interpret(503, &error_xml("Busy\n\x1b[0m"));
    assert_eq!(
        d,
        Diagnosis::Unreachable {
            cause: "HTTP 503 (Busy [0m)".into()
        }
    );
}

#[test]
fn an_error_code_is_length_capped() {
    let long = "A".repeat(10_000);
    let Diagnosis::Rejected { code } = interpret(400, &error_xml(&long)) else {
        panic!("expected Rejected");
    };
    assert_eq!(code, format!("{}...", "A".repeat(MAX_CODE_CHARS)));
    let huge_arn = format!("arn:aws:iam::123456789012:user/{}", "u".repeat(100_000));
    let body = SUCCESS.replace(
        "arn:aws:sts::123456789012:assumed-role/orders-fn-role/orders-fn",
        &huge_arn,
    );
    let Diagnosis::Caller { arn, .. } = interpret(200, &body) else {
        panic!("expected Caller");
    };
    assert_eq!(arn.chars().count(), MAX_ARN_CHARS + 3);
    // Codes as AWS sends them are untouched.
    assert_eq!(
        interpret(403, &error_xml("SignatureDoesNotMatch")),
        Diagnosis::Rejected {
            code: "SignatureDoesNotMatch".into()
        }
    );
}

#[tokio::test]
async fn diagnose_cleans_and_caps_what_sts_answers() {
    let creds = Credentials::new(ACCESS_KEY, SECRET, None, None);
    let code = format!("Bad\n\u{1b}]0;title\u{7}{}", "x".repeat(500));
    let (endpoint, _, server) = sts_server(403, error_xml(&code)).await;
    let Diagnosis::Rejected { code } = diagnose(&endpoint, &creds, DIAGNOSIS_TIMEOUT).await else {
        panic!("expected Rejected");
    };
    server.abort();
    assert!(!code.chars().any(char::is_control), "{code:?}");
    assert!(code.chars().count() <= MAX_CODE_CHARS + 3, "{code:?}");
    assert!(code.starts_with("Bad ]0;title"), "{code:?}");
}
