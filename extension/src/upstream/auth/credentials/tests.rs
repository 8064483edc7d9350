use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_credential_types::provider::{error::CredentialsError as AwsError, future};

use super::*;

type Env = Arc<Mutex<HashMap<String, String>>>;

fn env(pairs: &[(&str, &str)]) -> Env {
    Arc::new(Mutex::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ))
}

fn lookup(env: &Env) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let env = env.clone();
    move |k| env.lock().unwrap().get(k).cloned()
}

#[derive(Debug)]
struct Counting {
    calls: Arc<AtomicUsize>,
    lifetime: Option<Duration>,
    fail: bool,
    delay: Duration,
}

impl Counting {
    fn new(lifetime: Option<Duration>) -> (Self, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            Self {
                calls: calls.clone(),
                lifetime,
                fail: false,
                delay: Duration::ZERO,
            },
            calls,
        )
    }
}

impl ProvideCredentials for Counting {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.fail {
                return Err(AwsError::provider_error("endpoint said no"));
            }
            Ok(aws_credential_types::Credentials::new(
                format!("ASIAENDPOINT{n}"),
                "endpoint-secret",
                Some("endpoint-token".into()),
                self.lifetime.map(|l| SystemTime::now() + l),
                "test",
            ))
        })
    }
}

#[tokio::test]
async fn static_provider_returns_its_credentials() {
    let p = CredentialsProvider::from_static(Credentials::new("AKID", "secret", None, None));
    let (c, source) = p.credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "AKID");
    assert_eq!(source, CredentialsSource::Static);
}

#[tokio::test]
async fn environment_is_read_at_every_call_and_wins_over_the_endpoint() {
    let vars = env(&[
        (ENV_ACCESS_KEY_ID, "ASIA1"),
        (ENV_SECRET_ACCESS_KEY, "s1"),
        (ENV_SESSION_TOKEN, "t1"),
    ]);
    let (endpoint, calls) = Counting::new(Some(Duration::from_secs(3600)));
    let p = CredentialsProvider::with_endpoint_provider(
        lookup(&vars),
        CredentialsSource::Imds,
        endpoint,
    );

    let (c, source) = p.credentials().await.unwrap();
    assert_eq!(
        (c.access_key_id(), source),
        ("ASIA1", CredentialsSource::Environment)
    );
    assert_eq!(c.session_token(), Some("t1"));

    // Lambda rotates the role's keys in place: the next authentication sees the new ones.
    vars.lock()
        .unwrap()
        .insert(ENV_ACCESS_KEY_ID.into(), "ASIA2".into());
    vars.lock().unwrap().remove(ENV_SESSION_TOKEN);
    let (c, _) = p.credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "ASIA2");
    assert_eq!(c.session_token(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Without them, the endpoint source is used.
    vars.lock().unwrap().clear();
    let (_, source) = p.credentials().await.unwrap();
    assert_eq!(source, CredentialsSource::Imds);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn half_set_environment_is_an_error() {
    for (set, missing) in [
        (ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY),
        (ENV_SECRET_ACCESS_KEY, ENV_ACCESS_KEY_ID),
    ] {
        let vars = env(&[(set, "x")]);
        let (endpoint, _) = Counting::new(None);
        let p = CredentialsProvider::with_endpoint_provider(
            lookup(&vars),
            CredentialsSource::Imds,
            endpoint,
        );
        let e = p.credentials().await.unwrap_err();
        assert!(e.to_string().contains(missing), "{e}");
    }
}

#[tokio::test]
async fn endpoint_credentials_are_cached_until_five_minutes_before_expiry() {
    let (endpoint, calls) = Counting::new(Some(Duration::from_secs(3600)));
    let p = CredentialsProvider::with_endpoint_provider(
        |_| None,
        CredentialsSource::Container,
        endpoint,
    );
    let (a, source) = p.credentials().await.unwrap();
    let (b, _) = p.credentials().await.unwrap();
    assert_eq!(source, CredentialsSource::Container);
    assert_eq!(a.access_key_id(), b.access_key_id());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn endpoint_credentials_close_to_expiry_are_refreshed() {
    let (endpoint, calls) = Counting::new(Some(Duration::from_secs(240)));
    let p =
        CredentialsProvider::with_endpoint_provider(|_| None, CredentialsSource::Imds, endpoint);
    let (a, _) = p.credentials().await.unwrap();
    let (b, _) = p.credentials().await.unwrap();
    assert_ne!(a.access_key_id(), b.access_key_id());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalidate_drops_the_cache() {
    let (endpoint, calls) = Counting::new(None);
    let p = CredentialsProvider::with_endpoint_provider(
        |_| None,
        CredentialsSource::WebIdentity,
        endpoint,
    );
    p.credentials().await.unwrap();
    p.credentials().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no expiry: cached");
    p.invalidate();
    let (c, _) = p.credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "ASIAENDPOINT2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let (mut endpoint, calls) = Counting::new(Some(Duration::from_secs(3600)));
    endpoint.delay = Duration::from_millis(50);
    let p =
        CredentialsProvider::with_endpoint_provider(|_| None, CredentialsSource::Imds, endpoint);
    let (a, b, c) = tokio::join!(p.credentials(), p.credentials(), p.credentials());
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn endpoint_failure_names_the_source_and_is_not_cached() {
    let (mut endpoint, calls) = Counting::new(None);
    endpoint.fail = true;
    let p = CredentialsProvider::with_endpoint_provider(
        |_| None,
        CredentialsSource::Container,
        endpoint,
    );
    let e = p.credentials().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("container endpoint") && text.contains("endpoint said no"),
        "{text}"
    );
    p.credentials().await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn freshness_boundary() {
    let now = SystemTime::now();
    let c = |exp| Credentials::new("a", "b", None, exp);
    assert!(c(None).is_fresh(now));
    assert!(c(Some(now + Duration::from_secs(301))).is_fresh(now));
    assert!(!c(Some(now + Duration::from_secs(300))).is_fresh(now));
    assert!(!c(Some(now - Duration::from_secs(1))).is_fresh(now));
}

#[tokio::test]
async fn standard_chain_picks_the_endpoint_source_from_the_environment() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                (ENV_WEB_IDENTITY_TOKEN_FILE, "/var/run/token"),
                (ENV_ROLE_ARN, "arn:aws:iam::1:role/r"),
            ],
            "web identity",
        ),
        (
            &[(ENV_CONTAINER_RELATIVE_URI, "/v2/credentials/x")],
            "container endpoint",
        ),
        (
            &[(ENV_CONTAINER_FULL_URI, "http://127.0.0.1:1/creds")],
            "container endpoint",
        ),
        (
            &[(ENV_WEB_IDENTITY_TOKEN_FILE, "/var/run/token")],
            "EC2 instance metadata",
        ),
        (&[], "EC2 instance metadata"),
        (&[(ENV_EC2_METADATA_DISABLED, "true")], "nothing"),
    ];
    for (pairs, expected) in cases {
        let vars = env(pairs);
        let p = CredentialsProvider::standard_chain(lookup(&vars), Some("us-east-1".into()));
        let text = format!("{p:?}");
        assert!(
            text.ends_with(&format!("then {expected})")),
            "{pairs:?}: {text}"
        );
    }
}

#[tokio::test]
async fn standard_chain_with_nothing_available_says_what_to_set() {
    let p = CredentialsProvider::standard_chain(
        |k| (k == ENV_EC2_METADATA_DISABLED).then(|| "true".into()),
        None,
    );
    let e = p.credentials().await.unwrap_err();
    assert!(matches!(e, CredentialsError::NotFound));
    assert!(e.to_string().contains(ENV_ACCESS_KEY_ID));
}

#[tokio::test]
async fn standard_chain_reads_environment_credentials() {
    let vars = env(&[(ENV_ACCESS_KEY_ID, "AKIDENV"), (ENV_SECRET_ACCESS_KEY, "s")]);
    let p = CredentialsProvider::standard_chain(lookup(&vars), None);
    let (c, source) = p.credentials().await.unwrap();
    assert_eq!(
        (c.access_key_id(), source),
        ("AKIDENV", CredentialsSource::Environment)
    );
}

#[tokio::test]
async fn imds_credentials_are_fetched_from_the_configured_endpoint() {
    use crate::test_support::serve_http;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let (addr, server) = serve_http(move |req| {
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => (
                200,
                vec![("x-aws-ec2-metadata-token-ttl-seconds", "21600".into())],
                "imds-session-token".into(),
            ),
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                (200, vec![], "mongo-pool-role".into())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/mongo-pool-role") => (
                200,
                vec![],
                r#"{"Code":"Success","LastUpdated":"2024-01-01T00:00:00Z","Type":"AWS-HMAC",
                    "AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret",
                    "Token":"imds-token","Expiration":"2100-01-01T00:00:00Z"}"#
                    .into(),
            ),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let vars = env(&[(ENV_EC2_METADATA_SERVICE_ENDPOINT, &format!("http://{addr}"))]);
    let p = CredentialsProvider::standard_chain(lookup(&vars), Some("us-east-1".into()));
    let (c, source) = p.credentials().await.unwrap();
    assert_eq!(source, CredentialsSource::Imds);
    assert_eq!(c.access_key_id(), "ASIAIMDS");
    assert_eq!(c.session_token(), Some("imds-token"));
    assert!(c.expiry().is_some());
    // Cached: a second authentication makes no request.
    let before = seen.lock().unwrap().len();
    p.credentials().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), before);
    // Invalidated: it fetches again.
    p.invalidate();
    p.credentials().await.unwrap();
    assert!(seen.lock().unwrap().len() > before);
    server.abort();
}

#[test]
fn printable_strips_control_and_invisible_characters_and_caps_the_length() {
    assert_eq!(printable("plain text", 100), "plain text");
    assert_eq!(
        printable("a\nb\r\nc\td\u{0}e\u{7f}f\u{85}g\u{1b}[2Jh", 100),
        "a b  c defg[2Jh"
    );
    assert_eq!(printable("x\u{202E}y\u{200B}z\u{FEFF}\u{2066}", 100), "xyz");
    assert_eq!(printable("abcdef", 3), "abc...");
    assert_eq!(printable("abc", 3), "abc");
    // Characters, not bytes: never a cut inside a UTF-8 sequence.
    assert_eq!(printable("ééé", 2), "éé...");
}

#[test]
fn an_error_chain_is_printable_and_bounded() {
    #[derive(Debug)]
    struct Echo(String);
    impl fmt::Display for Echo {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Echo {}
    let text = error_chain(&Echo(format!("endpoint said\n{}", "z".repeat(5000))));
    assert!(!text.contains('\n'));
    assert_eq!(text.chars().count(), MAX_ERROR_CHARS + 3);
}

#[tokio::test]
async fn a_container_token_that_is_not_a_header_value_is_refused_without_showing_it() {
    const TOKEN_VALUE: &str = "container-token-value-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let with_newline = dir.path().join("token-with-newline");
    std::fs::write(&with_newline, format!("{TOKEN_VALUE}\n")).unwrap();
    let good_file = dir.path().join("token");
    std::fs::write(&good_file, TOKEN_VALUE).unwrap();
    let bad_inline = format!("{TOKEN_VALUE}\r\nX-Injected: 1");
    let cases: [(&str, &str, Option<&str>); 2] = [
        (
            ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE,
            with_newline.to_str().unwrap(),
            Some(ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE),
        ),
        (
            ENV_CONTAINER_AUTHORIZATION_TOKEN,
            bad_inline.as_str(),
            Some(ENV_CONTAINER_AUTHORIZATION_TOKEN),
        ),
    ];
    for (var, value, refused) in cases {
        let e = env(&[(var, value)]);
        let result = check_container_token(&lookup(&e)).await;
        match (result, refused) {
            (Err(err @ CredentialsError::InvalidContainerToken { var }), Some(expected)) => {
                assert_eq!(var, expected);
                let text = format!("{err} {err:?}");
                assert!(!text.contains(TOKEN_VALUE), "{text}");
            }
            (other, _) => panic!("{var}: expected a refusal, got {other:?}"),
        }
    }
    for (var, value) in [
        (
            ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE,
            good_file.to_str().unwrap(),
        ),
        (ENV_CONTAINER_AUTHORIZATION_TOKEN, TOKEN_VALUE),
        // Not readable: aws-config reports that itself, and it holds no token to leak.
        (ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE, "/nonexistent/token"),
    ] {
        let e = env(&[(var, value)]);
        assert!(
            check_container_token(&lookup(&e)).await.is_ok(),
            "{var}={value}"
        );
    }
    assert!(check_container_token(&lookup(&env(&[]))).await.is_ok());
}
