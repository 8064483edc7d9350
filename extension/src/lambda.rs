//! The Lambda lifecycle, over the Extensions API (`2020-01-01`). The socket is bound before
//! registering (Lambda starts the function only after every extension registered, so the
//! socket exists when the function starts); registration names the binary's file name so the
//! extension is external and may receive SHUTDOWN; the pool starts connecting at once, in
//! parallel with the function's init, and `/event/next` is called without waiting for it.
//! SHUTDOWN drains, ends sessions, closes every upstream connection and exits well inside the
//! 2,000 ms the extensions share. Invalid configuration is reported with
//! `/extension/init/error` (`Extension.ConfigInvalid`) before exiting non-zero.
//!
//! The three calls it needs (register, `/event/next`, `init/error`) are plain HTTP/1 requests on
//! the hyper client the crate already has, so the binary carries no second Lambda client stack.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{Config, Prewarm};
use crate::listener::Socket;
use crate::serve::{self, Summary};

/// The extension's name: the binary's file name, as Lambda requires of external extensions.
pub const EXTENSION_NAME: &str = "mongo-pool";
/// Error type for invalid configuration.
pub const CONFIG_INVALID: &str = "Extension.ConfigInvalid";
/// Error type when the pool cannot be established during Init (with `MONGO_POOL_INIT_FAIL_FAST`).
pub const CONNECT_FAILED: &str = "Extension.ConnectFailed";
/// How long Init may wait for the pool with `MONGO_POOL_INIT_FAIL_FAST=true` (Init has 10 s).
pub const INIT_DEADLINE: Duration = Duration::from_secs(7);

/// Why the lifecycle failed.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The Extensions API refused or failed.
    #[error("Extensions API: {0}")]
    Api(String),
    /// The proxy could not start.
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
}

/// Registers, reports `error_type` with `message` through `/extension/init/error`, and returns.
/// Used for configuration errors, which are known before anything else runs.
///
/// # Errors
/// [`LambdaError::Api`] when the API cannot be reached.
pub async fn report_init_error(
    runtime_api: &str,
    error_type: &str,
    message: &str,
) -> Result<(), LambdaError> {
    let api = ExtensionsApi::new(runtime_api);
    let extension_id = api.register(&[]).await?;
    api.post_error(&extension_id, "init", error_type, message)
        .await
}

/// The Extensions API at `AWS_LAMBDA_RUNTIME_API`: one HTTP/1 client, plain requests.
struct ExtensionsApi {
    base: String,
    client: Client<HttpConnector, Full<bytes::Bytes>>,
}

/// What `/event/next` delivered.
enum NextEvent {
    Invoke,
    Shutdown { reason: String, deadline_ms: u64 },
}

impl ExtensionsApi {
    fn new(runtime_api: &str) -> Self {
        Self {
            base: format!("http://{runtime_api}/2020-01-01/extension"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `request`; returns the status, headers and the whole body.
    async fn send(
        &self,
        request: http::Request<Full<bytes::Bytes>>,
    ) -> Result<(http::response::Parts, bytes::Bytes), LambdaError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| LambdaError::Api(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| LambdaError::Api(e.to_string()))?
            .to_bytes();
        Ok((parts, body))
    }

    /// `POST /register` for `events` under [`EXTENSION_NAME`]; returns the extension id.
    async fn register(&self, events: &[&str]) -> Result<String, LambdaError> {
        let body = serde_json::json!({ "events": events }).to_string();
        let request = http::Request::post(format!("{}/register", self.base))
            .header("Lambda-Extension-Name", EXTENSION_NAME)
            .header("Content-Type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| LambdaError::Api(e.to_string()))?;
        let (parts, _) = self.send(request).await?;
        if !parts.status.is_success() {
            return Err(LambdaError::Api(format!(
                "unable to register the extension: {}",
                parts.status
            )));
        }
        parts
            .headers
            .get("Lambda-Extension-Identifier")
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| LambdaError::Api("missing extension id header".into()))
    }

    /// `GET /event/next`: blocks until Lambda has an event for this extension.
    async fn next_event(&self, extension_id: &str) -> Result<NextEvent, LambdaError> {
        let request = http::Request::get(format!("{}/event/next", self.base))
            .header("Lambda-Extension-Identifier", extension_id)
            .body(Full::default())
            .map_err(|e| LambdaError::Api(e.to_string()))?;
        let (parts, body) = self.send(request).await?;
        if !parts.status.is_success() {
            return Err(LambdaError::Api(format!(
                "event/next answered {}",
                parts.status
            )));
        }
        let event: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| LambdaError::Api(format!("event/next: {e}")))?;
        match event["eventType"].as_str() {
            Some("INVOKE") => Ok(NextEvent::Invoke),
            Some("SHUTDOWN") => Ok(NextEvent::Shutdown {
                reason: event["shutdownReason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                deadline_ms: event["deadlineMs"].as_u64().unwrap_or_default(),
            }),
            other => Err(LambdaError::Api(format!(
                "event/next: unknown eventType {other:?}"
            ))),
        }
    }

    /// `POST /{phase}/error` with Lambda's error document.
    async fn post_error(
        &self,
        extension_id: &str,
        phase: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), LambdaError> {
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": []
        })
        .to_string();
        let request = http::Request::post(format!("{}/{phase}/error", self.base))
            .header("Lambda-Extension-Identifier", extension_id)
            .header("Lambda-Extension-Function-Error-Type", error_type)
            .header("Content-Type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| LambdaError::Api(e.to_string()))?;
        let (parts, _) = self.send(request).await?;
        if parts.status.is_success() {
            Ok(())
        } else {
            Err(LambdaError::Api(format!(
                "{phase}/error answered {}",
                parts.status
            )))
        }
    }
}

/// Runs as a Lambda extension until SHUTDOWN.
///
/// # Errors
/// [`LambdaError`] when registration or start fails (after reporting it to Lambda).
pub async fn run(
    config: Config,
    runtime_api: String,
    socket: Socket,
    lookup: impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static,
) -> Result<Summary, LambdaError> {
    let events: &'static [&'static str] = match config.prewarm {
        Prewarm::Off => &["SHUTDOWN"],
        Prewarm::Invoke => &["INVOKE", "SHUTDOWN"],
    };
    let api = ExtensionsApi::new(&runtime_api);
    let extension_id = api.register(events).await?;
    let running = match serve::start(&config, socket, lookup).await {
        Ok(running) => running,
        Err(e) => {
            let _ = api
                .post_error(&extension_id, "init", CONFIG_INVALID, &e.to_string())
                .await;
            return Err(e.into());
        }
    };
    if config.init_fail_fast {
        let deadline = Instant::now() + INIT_DEADLINE.min(config.uri.server_selection_timeout);
        // A primary, and an authenticated connection to it: a member that refuses our
        // credentials still answers `hello`.
        let primary = running
            .proxy
            .topology
            .select(
                mongo_pool_wire::inspect::ReadPreferenceMode::Primary,
                deadline,
            )
            .await
            .map_err(|e| e.to_string());
        let reached = match primary {
            Ok(server) => server
                .pool
                .check_out(deadline)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = reached {
            let message = format!("mongo-pool could not reach Atlas during Init: {e}");
            let _ = api
                .post_error(&extension_id, "init", CONNECT_FAILED, &message)
                .await;
            running.shutdown().await;
            return Err(LambdaError::Api(message));
        }
    }
    // The /next loop: INVOKE (only with MONGO_POOL_PREWARM=invoke) re-validates idle
    // connections, SHUTDOWN ends it; a broken API ends it too, so the pool still drains.
    let mut invocations: u64 = 0;
    loop {
        match api.next_event(&extension_id).await {
            Ok(NextEvent::Invoke) => {
                invocations += 1;
                running.proxy.topology.request_check();
            }
            Ok(NextEvent::Shutdown {
                reason,
                deadline_ms,
            }) => {
                tracing::info!(reason, deadline_ms, "SHUTDOWN");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "lost the Extensions API");
                break;
            }
        }
    }
    let summary = running.shutdown().await;
    let counted = config.prewarm == Prewarm::Invoke;
    summary.log(counted.then_some(invocations));
    Ok(summary)
}
