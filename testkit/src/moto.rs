//! A local moto server (PyPI `moto[server]`, installed into `.venv` by `make venv`) as a real
//! STS/IAM for tests: it checks SigV4 signatures and answers `GetCallerIdentity`,
//! `AssumeRole` and `AssumeRoleWithWebIdentity` like AWS.
//!
//! [`Moto::start`] runs `.venv/bin/moto_server` on a free 127.0.0.1 port (killed when the
//! handle drops, also when a test panics), creates an `admin` IAM user with an allow-all policy
//! while moto's authentication is still off, then switches authentication on (`POST
//! /moto-api/reset-auth` with body `0`, the runtime form of `INITIAL_NO_AUTH_ACTION_COUNT=0`:
//! set at start-up, not even the first `CreateUser` could be authenticated). From then on every
//! call, the helper's own set-up calls included, is signed (with the admin key) and verified.
//!
//! One gap of moto: it authenticates `AssumeRoleWithWebIdentity`, which AWS serves unsigned
//! (the web-identity token is the proof). [`Moto::allow_unsigned`] opens a window of `n`
//! unauthenticated calls for exactly that case.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
/// The region every call is signed for.
pub const REGION: &str = "us-east-1";
const STS_HOST: &str = "sts.amazonaws.com";
const IAM_HOST: &str = "iam.amazonaws.com";
const FORM: &str = "application/x-www-form-urlencoded";
/// A trust policy any AWS principal (and any web identity) may assume.
const TRUST_ANYONE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"Federated":"*"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// Access key id, secret and (for temporary credentials) session token, with the ARN STS
/// reports for them.
#[derive(Clone)]
pub struct Keys {
    /// `AWS_ACCESS_KEY_ID`.
    pub key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub token: Option<String>,
    /// The caller ARN (`arn:aws:iam::A:user/U` or `arn:aws:sts::A:assumed-role/R/S`).
    pub arn: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("key_id", &self.key_id)
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

/// A running moto server; see the module docs.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`, the endpoint for `AWS_ENDPOINT_URL_STS` or atlas-sim
    /// `--sts-url`.
    pub url: String,
    admin: Keys,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `make venv` installs moto_server.
pub fn moto_server_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
}

impl Moto {
    /// Starts moto, bootstraps the admin user and switches authentication on. Waits at most
    /// 60 s for moto to come up.
    ///
    /// # Errors
    /// When `.venv/bin/moto_server` is missing (run `make venv`), does not start, or a set-up
    /// call fails.
    pub async fn start() -> anyhow::Result<Moto> {
        let path = moto_server_path();
        ensure!(
            path.exists(),
            "{} is missing: run `make venv` (make test does)",
            path.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Authentication is switched on after set-up (see the module docs).
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            // Any key is accepted while authentication is off.
            admin: Keys {
                key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret: "bootstrap-secret".into(),
                token: None,
                arn: String::new(),
            },
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = moto
                .http
                .get(format!("{}/moto-api/data.json", moto.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                bail!("moto_server exited ({status}) before it was ready");
            }
            ensure!(Instant::now() < deadline, "moto_server not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let admin = moto.create_user("admin").await?;
        moto.iam(&format!(
            "Action=PutUserPolicy&UserName=admin&PolicyName=allow-all&PolicyDocument={}",
            form_encode(ALLOW_ALL)
        ))
        .await?;
        moto.admin = admin;
        moto.allow_unsigned(0).await?;
        Ok(moto)
    }

    /// Creates IAM user `name` and an access key for it (no policy: enough for
    /// `GetCallerIdentity`, which is always allowed).
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn create_user(&self, name: &str) -> anyhow::Result<Keys> {
        self.iam(&format!("Action=CreateUser&UserName={}", form_encode(name)))
            .await?;
        let key = self
            .iam(&format!(
                "Action=CreateAccessKey&UserName={}",
                form_encode(name)
            ))
            .await?;
        Ok(Keys {
            key_id: element(&key, "AccessKeyId")?,
            secret: element(&key, "SecretAccessKey")?,
            token: None,
            arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
        })
    }

    /// Creates role `name`, which anyone may assume (also by web identity); returns its ARN.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn create_role(&self, name: &str) -> anyhow::Result<String> {
        let reply = self
            .iam(&format!(
                "Action=CreateRole&RoleName={}&AssumeRolePolicyDocument={}",
                form_encode(name),
                form_encode(TRUST_ANYONE)
            ))
            .await?;
        element(&reply, "Arn")
    }

    /// Assumes `role_arn` as session `session` (signed by the admin user): temporary
    /// credentials whose caller ARN is `arn:aws:sts::A:assumed-role/ROLE/SESSION`.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn assume_role(&self, role_arn: &str, session: &str) -> anyhow::Result<Keys> {
        let reply = self
            .call(
                &self.admin,
                "sts",
                STS_HOST,
                &format!(
                    "Action=AssumeRole&RoleArn={}&RoleSessionName={}&Version=2011-06-15",
                    form_encode(role_arn),
                    form_encode(session)
                ),
            )
            .await?;
        Ok(Keys {
            key_id: element(&reply, "AccessKeyId")?,
            secret: element(&reply, "SecretAccessKey")?,
            token: Some(element(&reply, "SessionToken")?),
            arn: element(&reply, "Arn")?,
        })
    }

    /// `GetCallerIdentity` signed with `keys`: the caller ARN, or the STS error.
    ///
    /// # Errors
    /// When moto rejects the credentials or does not answer.
    pub async fn caller_identity(&self, keys: &Keys) -> anyhow::Result<String> {
        let reply = self
            .call(
                keys,
                "sts",
                STS_HOST,
                "Action=GetCallerIdentity&Version=2011-06-15",
            )
            .await?;
        element(&reply, "Arn")
    }

    /// Lets the next `n` calls through without authentication, then authenticates again
    /// (`n = 0`: authenticate everything from now on). For `AssumeRoleWithWebIdentity`, which
    /// AWS serves unsigned but moto authenticates.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn allow_unsigned(&self, n: u32) -> anyhow::Result<()> {
        // The body is a number, not a form.
        let reply = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.url))
            .header("content-type", "text/plain")
            .body(n.to_string())
            .send()
            .await?;
        ensure!(
            reply.status().is_success(),
            "moto reset-auth: {}",
            reply.status()
        );
        Ok(())
    }

    async fn iam(&self, action: &str) -> anyhow::Result<String> {
        self.call(
            &self.admin,
            "iam",
            IAM_HOST,
            &format!("{action}&Version=2010-05-08"),
        )
        .await
    }

    /// A signed AWS Query API call; the XML of a 2xx answer.
    async fn call(
        &self,
        keys: &Keys,
        service: &str,
        host: &str,
        body: &str,
    ) -> anyhow::Result<String> {
        let headers = [("content-type", FORM), ("host", host)];
        let signed = sigv4_headers(keys, service, host, &headers, body, SystemTime::now())?;
        let mut request = self
            .http
            .post(format!("{}/", self.url))
            .header("content-type", FORM)
            .header("host", host);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response = request.body(body.to_owned()).send().await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(
            status.is_success(),
            "moto {service} call failed: {status}: {text}"
        );
        Ok(text)
    }
}

/// The headers that sign `headers` + `body` as `POST https://host/` for `service` with SigV4.
///
/// # Errors
/// When signing fails.
pub fn sigv4_headers(
    keys: &Keys,
    service: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
    at: SystemTime,
) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let identity = aws_credential_types::Credentials::new(
        keys.key_id.clone(),
        keys.secret.clone(),
        keys.token.clone(),
        None,
        "moto-test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("https://{host}/"),
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// The text of the first `<name>...</name>` in `xml`.
///
/// # Errors
/// When there is none.
pub fn element(xml: &str, name: &str) -> anyhow::Result<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml
        .find(&open)
        .with_context(|| format!("no <{name}> in {xml}"))?
        + open.len();
    let len = xml[start..]
        .find(&close)
        .with_context(|| format!("no </{name}> in {xml}"))?;
    Ok(xml[start..start + len].to_owned())
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
