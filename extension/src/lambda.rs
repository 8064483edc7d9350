//! The Lambda lifecycle, over the Extensions API (`2020-01-01`). The socket is bound before
//! registering (Lambda starts the function only after every extension registered, so the
//! socket exists when the function starts); registration names the binary's file name so the
//! extension is external and may receive SHUTDOWN; the pool starts connecting at once, in
//! parallel with the function's init, and `/event/next` is called without waiting for it.
//! SHUTDOWN drains, ends sessions, closes every upstream connection and exits well inside the
//! 2,000 ms the extensions share. Invalid configuration is reported with
//! `/extension/init/error` (`Extension.ConfigInvalid`) before exiting non-zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_extension::{Extension, LambdaEvent, NextEvent, service_fn};
use tokio::sync::Notify;

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
    let registered = Extension::new()
        .with_extension_name(EXTENSION_NAME)
        .with_events(&[])
        .register()
        .await
        .map_err(|e| LambdaError::Api(e.to_string()))?;
    post_error(
        runtime_api,
        &registered.extension_id,
        "init",
        error_type,
        message,
    )
    .await
}

async fn post_error(
    runtime_api: &str,
    id: &str,
    phase: &str,
    error_type: &str,
    message: &str,
) -> Result<(), LambdaError> {
    let body =
        serde_json::json!({ "errorMessage": message, "errorType": error_type, "stackTrace": [] })
            .to_string();
    let request = http::Request::post(format!(
        "http://{runtime_api}/2020-01-01/extension/{phase}/error"
    ))
    .header("Lambda-Extension-Identifier", id)
    .header("Lambda-Extension-Function-Error-Type", error_type)
    .header("Content-Type", "application/json")
    .body(Full::new(bytes::Bytes::from(body)))
    .map_err(|e| LambdaError::Api(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let response = client
        .request(request)
        .await
        .map_err(|e| LambdaError::Api(e.to_string()))?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(LambdaError::Api(format!("{phase}/error answered {status}")))
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
    let invocations = Arc::new(AtomicU64::new(0));
    let shutdown = Arc::new(Notify::new());
    let deadline_ms = Arc::new(AtomicU64::new(0));
    let events: &'static [&'static str] = match config.prewarm {
        Prewarm::Off => &["SHUTDOWN"],
        Prewarm::Invoke => &["INVOKE", "SHUTDOWN"],
    };
    // The pool's state is needed by the INVOKE handler, which is built before the pool starts.
    let topology_slot: Arc<std::sync::OnceLock<Arc<crate::topology::Topology>>> = Arc::default();
    let processor = {
        let (invocations, shutdown, deadline_ms, topology_slot) = (
            Arc::clone(&invocations),
            Arc::clone(&shutdown),
            Arc::clone(&deadline_ms),
            Arc::clone(&topology_slot),
        );
        service_fn(move |event: LambdaEvent| {
            let (invocations, shutdown, deadline_ms, topology_slot) = (
                Arc::clone(&invocations),
                Arc::clone(&shutdown),
                Arc::clone(&deadline_ms),
                Arc::clone(&topology_slot),
            );
            async move {
                match event.next {
                    NextEvent::Invoke(_) => {
                        invocations.fetch_add(1, Ordering::Relaxed);
                        if let Some(topology) = topology_slot.get() {
                            topology.request_check();
                        }
                    }
                    NextEvent::Shutdown(e) => {
                        tracing::info!(
                            reason = e.shutdown_reason,
                            deadline_ms = e.deadline_ms,
                            "SHUTDOWN"
                        );
                        deadline_ms.store(e.deadline_ms, Ordering::Relaxed);
                        shutdown.notify_one();
                    }
                }
                Ok::<(), lambda_extension::Error>(())
            }
        })
    };
    let registered = Extension::new()
        .with_extension_name(EXTENSION_NAME)
        .with_events(events)
        .with_events_processor(processor)
        .register()
        .await
        .map_err(|e| LambdaError::Api(e.to_string()))?;
    let extension_id = registered.extension_id.clone();
    let running = match serve::start(&config, socket, lookup).await {
        Ok(running) => running,
        Err(e) => {
            let _ = post_error(
                &runtime_api,
                &extension_id,
                "init",
                CONFIG_INVALID,
                &e.to_string(),
            )
            .await;
            return Err(e.into());
        }
    };
    let _ = topology_slot.set(Arc::clone(&running.proxy.topology));
    if config.init_fail_fast {
        let deadline = Instant::now() + INIT_DEADLINE.min(config.uri.server_selection_timeout);
        if let Err(e) = running
            .proxy
            .topology
            .select(
                mongo_pool_wire::inspect::ReadPreferenceMode::Primary,
                deadline,
            )
            .await
        {
            let message = format!("mongo-pool could not reach Atlas during Init: {e}");
            let _ = post_error(
                &runtime_api,
                &extension_id,
                "init",
                CONNECT_FAILED,
                &message,
            )
            .await;
            running.shutdown().await;
            return Err(LambdaError::Api(message));
        }
    }
    // The /next loop runs until the process exits; SHUTDOWN wakes us through `shutdown`.
    let events_loop = tokio::spawn(registered.run());
    tokio::select! {
        () = shutdown.notified() => {}
        result = events_loop => {
            let message = match result {
                Ok(Ok(())) => "the Extensions API loop ended".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::error!(error = message, "lost the Extensions API");
        }
    }
    let summary = running.shutdown().await;
    let counted = config.prewarm == Prewarm::Invoke;
    summary.log(counted.then(|| invocations.load(Ordering::Relaxed)));
    Ok(summary)
}
