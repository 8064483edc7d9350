//! A raw wire client for atlas-sim tests: one TCP (+TLS) connection to one member, OP_MSG and
//! OP_QUERY requests built with `mongo-pool-wire`, and the client side of MONGODB-AWS signed
//! with `aws-sigv4` as drivers do. Tests use it where they need control a driver does not give:
//! exact `lsid`/`txnNumber`, a request on a connection that is known to be open, the raw
//! `topologyVersion` of an awaitable hello, OP_QUERY.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail, ensure};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, RawDocumentBuf, doc};
use futures_util::{SinkExt as _, StreamExt as _};
use mongo_pool_testkit::process::AtlasSim;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{Frame, OpCode, OpMsgBuilder, OpQueryBuilder};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Any reply a test waits for arrives within this (generous; never a latency assertion).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The long-term key the tests give atlas-sim with `--principal`.
pub const KEY_ID: &str = "AKIDATLASTEST";
/// Its secret.
pub const SECRET: &str = "atlas-test-secret";
/// Its ARN (and database user).
pub const USER_ARN: &str = "arn:aws:iam::123456789012:user/AKIDATLASTEST";

/// `--principal KEY_ID:SECRET`.
pub fn principal_arg() -> String {
    format!("{KEY_ID}:{SECRET}")
}

/// AWS credentials a client signs with.
#[derive(Clone, Debug)]
pub struct Keys {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Keys {
    /// The test principal.
    pub fn test() -> Self {
        Keys {
            key_id: KEY_ID.into(),
            secret: SECRET.into(),
            token: None,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to one member.
pub struct Wire {
    framed: Framed<Box<dyn Stream>, MessageCodec>,
    next_request_id: i32,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("next_request_id", &self.next_request_id)
            .finish()
    }
}

/// Starts atlas-sim with `args` (TLS on, as by default) within a bounded time.
pub async fn start_sim(args: &[&str]) -> AtlasSim {
    tokio::time::timeout(Duration::from_secs(60), AtlasSim::start(args))
        .await
        .expect("atlas-sim started in time")
        .expect("atlas-sim started")
}

/// Starts atlas-sim with the test principal and `extra` options.
pub async fn start_sim_with_principal(extra: &[&str]) -> AtlasSim {
    let principal = principal_arg();
    let mut args = vec!["--principal", principal.as_str()];
    args.extend_from_slice(extra);
    start_sim(&args).await
}

fn tls_config(ca_file: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).context("reading the CA file")? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Wire {
    /// Connects to `member` (`127.0.0.1:port`) of `sim`, over TLS when the sim serves it,
    /// verifying the certificate for `127.0.0.1`.
    pub async fn connect(sim: &AtlasSim, member: &str) -> anyhow::Result<Wire> {
        Self::connect_as(sim, member, "127.0.0.1").await
    }

    /// Like [`Wire::connect`], verifying the server certificate for `server_name`.
    pub async fn connect_as(
        sim: &AtlasSim,
        member: &str,
        server_name: &str,
    ) -> anyhow::Result<Wire> {
        let tcp = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(member)).await??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &sim.start.ca_file {
            Some(ca) => {
                let connector = tokio_rustls::TlsConnector::from(tls_config(ca)?);
                let name = ServerName::try_from(server_name.to_owned())?;
                Box::new(tokio::time::timeout(REPLY_TIMEOUT, connector.connect(name, tcp)).await??)
            }
            None => Box::new(tcp),
        };
        Ok(Wire {
            framed: Framed::new(stream, MessageCodec::default()),
            next_request_id: 1,
        })
    }

    /// Connects and authenticates with the test principal.
    pub async fn authenticated(sim: &AtlasSim, member: &str) -> anyhow::Result<Wire> {
        let mut wire = Self::connect(sim, member).await?;
        wire.hello(None).await?;
        let reply = wire.authenticate(&Keys::test()).await?;
        ensure!(ok(&reply), "authentication failed: {reply}");
        Ok(wire)
    }

    fn request_id(&mut self) -> i32 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Sends `command` as OP_MSG without waiting for the reply.
    pub async fn send(&mut self, command: &Document) -> anyhow::Result<()> {
        let raw = RawDocumentBuf::try_from(command)?;
        let id = self.request_id();
        let frame = OpMsgBuilder::new(&raw).request_id(id).build()?;
        self.framed.send(frame).await?;
        Ok(())
    }

    /// The next reply (OP_MSG or OP_REPLY body); `None` when the server closed the connection.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Document>> {
        let Some(frame) = self.framed.next().await else {
            return Ok(None);
        };
        let frame = match frame {
            Ok(frame) => frame,
            // A reset or a TLS close without close_notify: the server is gone either way.
            Err(mongo_pool_wire::WireError::Io(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(decode(&frame)?))
    }

    /// Like [`Wire::recv`], bounded by [`REPLY_TIMEOUT`].
    pub async fn recv_in_time(&mut self) -> anyhow::Result<Option<Document>> {
        tokio::time::timeout(REPLY_TIMEOUT, self.recv())
            .await
            .context("no reply in time")?
    }

    /// Sends `command` and waits (bounded) for its reply.
    pub async fn command(&mut self, command: Document) -> anyhow::Result<Document> {
        self.send(&command).await?;
        self.recv_in_time()
            .await?
            .context("the server closed the connection")
    }

    /// Sends `command` as OP_QUERY on `admin.$cmd` and returns the OP_REPLY document.
    pub async fn op_query(&mut self, command: Document) -> anyhow::Result<Document> {
        let raw = RawDocumentBuf::try_from(&command)?;
        let id = self.request_id();
        let frame = OpQueryBuilder::new("admin.$cmd", &raw)
            .request_id(id)
            .build()?;
        self.framed.send(frame).await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.framed.next())
            .await?
            .context("closed")??;
        ensure!(
            reply.op_code() == OpCode::Reply,
            "expected OP_REPLY, got {:?}",
            reply.op_code()
        );
        decode(&reply)
    }

    /// `hello` on `admin`, naming `app_name` in the client metadata when given.
    pub async fn hello(&mut self, app_name: Option<&str>) -> anyhow::Result<Document> {
        let mut hello = doc! { "hello": 1, "helloOk": true, "$db": "admin" };
        if let Some(name) = app_name {
            hello.insert(
                "client",
                doc! {
                    "application": { "name": name },
                    "driver": { "name": "atlas-sim-tests", "version": "0" },
                    "os": { "type": "Linux" },
                },
            );
        }
        let reply = self.command(hello).await?;
        ensure!(ok(&reply), "hello failed: {reply}");
        Ok(reply)
    }

    /// The MONGODB-AWS conversation with `keys`; the last server reply (`ok: 1` on success,
    /// the error document otherwise).
    pub async fn authenticate(&mut self, keys: &Keys) -> anyhow::Result<Document> {
        let client_nonce: [u8; 32] = rand::random();
        let first = doc! { "r": binary(client_nonce.to_vec()), "p": 110 }.to_vec()?;
        let reply = self
            .command(doc! {
                "saslStart": 1, "mechanism": "MONGODB-AWS", "payload": binary(first), "$db": "$external",
            })
            .await?;
        if !ok(&reply) {
            return Ok(reply);
        }
        let conversation_id = reply.get_i32("conversationId")?;
        let server: Document =
            bson::deserialize_from_slice(&reply.get_binary_generic("payload")?[..])?;
        let nonce = server.get_binary_generic("s")?.clone();
        let host = server.get_str("h")?.to_owned();
        ensure!(
            nonce.len() == 64 && nonce[..32] == client_nonce,
            "bad server nonce"
        );
        let payload = sign_get_caller_identity(keys, &host, &nonce, SystemTime::now())?;
        self.command(doc! {
            "saslContinue": 1, "conversationId": conversation_id, "payload": binary(payload), "$db": "$external",
        })
        .await
    }

    /// Whether the server closes the connection within `within` without being asked anything.
    pub async fn closed_by_server_within(&mut self, within: Duration) -> anyhow::Result<bool> {
        match tokio::time::timeout(within, self.framed.next()).await {
            Err(_) => Ok(false),
            Ok(None | Some(Err(_))) => Ok(true),
            Ok(Some(Ok(frame))) => bail!("unexpected reply: {:?}", decode(&frame)?),
        }
    }
}

/// The body of a reply frame.
fn decode(frame: &Frame) -> anyhow::Result<Document> {
    match frame.op_code() {
        OpCode::Msg => Ok(Document::try_from(frame.op_msg()?.body)?),
        OpCode::Reply => {
            let reply = frame.op_reply()?;
            let first = reply
                .documents
                .first()
                .context("OP_REPLY without a document")?;
            Ok(Document::try_from(*first)?)
        }
        other => bail!("unexpected op code {other:?}"),
    }
}

/// A generic BinData.
pub fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

/// Whether a reply says `ok: 1`.
pub fn ok(reply: &Document) -> bool {
    match reply.get("ok") {
        Some(Bson::Double(v)) => *v == 1.0,
        Some(Bson::Int32(v)) => *v == 1,
        _ => false,
    }
}

/// The error code of a failed reply (0 when it succeeded).
pub fn code(reply: &Document) -> i32 {
    reply.get_i32("code").unwrap_or(0)
}

/// The error labels of a reply.
pub fn labels(reply: &Document) -> Vec<String> {
    reply
        .get_array("errorLabels")
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The saslContinue payload `{a, d, t?}` for a GetCallerIdentity signed as drivers sign it.
pub fn sign_get_caller_identity(
    keys: &Keys,
    host: &str,
    server_nonce: &[u8],
    at: SystemTime,
) -> anyhow::Result<Vec<u8>> {
    const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
    let nonce = base64::engine::general_purpose::STANDARD.encode(server_nonce);
    let length = BODY.len().to_string();
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-length", length.as_str()),
        ("host", host),
        ("x-mongodb-server-nonce", nonce.as_str()),
        ("x-mongodb-gs2-cb-flag", "n"),
    ];
    let region = if host == "sts.amazonaws.com" {
        "us-east-1"
    } else {
        host.split('.').nth(1).unwrap_or("us-east-1")
    };
    let identity = Credentials::new(
        keys.key_id.clone(),
        keys.secret.clone(),
        keys.token.clone(),
        None,
        "test",
    )
    .into();
    // The default settings add and sign X-Amz-Security-Token for temporary credentials.
    let settings = SigningSettings::default();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()?
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("https://{host}/"),
        headers.iter().copied(),
        SignableBody::Bytes(BODY.as_bytes()),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut payload = Document::new();
    for (name, value) in instructions.headers() {
        match name.to_ascii_lowercase().as_str() {
            "authorization" => payload.insert("a", value.to_string()),
            "x-amz-date" => payload.insert("d", value.to_string()),
            _ => None,
        };
    }
    if let Some(token) = &keys.token {
        payload.insert("t", token.as_str());
    }
    Ok(payload.to_vec()?)
}

/// Polls `/status` until `pred` holds (at most 20 s).
pub async fn wait_for_status(
    sim: &AtlasSim,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let status = sim.status().await.expect("/status");
        if pred(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
