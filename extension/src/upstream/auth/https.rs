//! The one HTTP client of the credential side: hyper 1 over hyper-rustls (ring, the webpki
//! roots), HTTP/1 only. The STS diagnosis uses it directly; aws-config's credential providers
//! (web identity's `AssumeRoleWithWebIdentity`, the ECS container endpoint, IMDSv2) use it
//! through smithy's [`HttpClient`] trait ([`SmithyHttp`]). Every endpoint they call speaks
//! HTTP/1.1, so the binary links no HTTP/2 stack (smithy's own client always brings `h2`).

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest answer read from an AWS endpoint (credentials and STS answers are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The limit of a request when the caller sets none: every wait is bounded.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1 client for `http://` and `https://` URLs (certificates verified against the
/// webpki roots).
pub type HttpsClient = Client<HttpsConnector<TcpConnector>, Full<Bytes>>;

/// Builds the client.
///
/// # Errors
/// When rustls cannot be set up with the ring provider (it can always on supported targets).
pub fn client() -> Result<HttpsClient, rustls::Error> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// [`HttpsClient`] as smithy's [`HttpClient`], for aws-config's credential providers.
#[derive(Debug, Clone)]
pub struct SmithyHttp {
    client: HttpsClient,
}

impl SmithyHttp {
    /// Wraps `client`.
    pub fn new(client: HttpsClient) -> Self {
        SmithyHttp { client }
    }
}

impl HttpClient for SmithyHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // One limit for the whole exchange: the connect and read timeouts the provider asks for
        // (IMDS: 1 s each), added up.
        let timeout = match (settings.connect_timeout(), settings.read_timeout()) {
            (None, None) => DEFAULT_TIMEOUT,
            (connect, read) => connect.unwrap_or_default() + read.unwrap_or_default(),
        };
        SharedHttpConnector::new(Exchange {
            client: self.client.clone(),
            timeout,
        })
    }
}

/// One request/answer exchange under a time limit.
#[derive(Debug)]
struct Exchange {
    client: HttpsClient,
    timeout: Duration,
}

impl HttpConnector for Exchange {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let timeout = self.timeout;
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            // The credential providers send small in-memory bodies (or none); a streaming body
            // would be a programming error on their side.
            let body = match body.bytes() {
                Some(bytes) => Bytes::copy_from_slice(bytes),
                None => {
                    return Err(ConnectorError::user(
                        "a streaming request body is not supported".into(),
                    ));
                }
            };
            let request = http::Request::from_parts(parts, Full::new(body));
            let exchange = async {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map_err(ConnectorError::io)?
                    .to_bytes();
                Ok::<_, ConnectorError>(http::Response::from_parts(parts, SdkBody::from(body)))
            };
            let response = tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| {
                    ConnectorError::timeout(format!("no answer within {timeout:?}").into())
                })??;
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}
