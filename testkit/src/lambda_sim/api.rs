//! The HTTP side of the simulated platform on 127.0.0.1: the Extensions API (`2020-01-01`)
//! and the Runtime API (`2018-06-01`). Handlers only read and change [`Shared`]; the
//! lifecycle decides what happens next. Status codes, headers and error bodies follow
//! Lambda's (`{"errorMessage","errorType"}`, 403 for Extensions API refusals, 202 for
//! accepted reports).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ids;
use super::report::PhaseError;
use super::state::{Agent, MAX_EXTENSIONS, Outcome, Shared};

mod extensions;
mod runtime;

use extensions::{extension_exit_error, extension_init_error, extension_next, register};
use runtime::{invocation_error, invocation_response, runtime_init_error, runtime_next};

const NAME_HEADER: &str = "lambda-extension-name";
const ID_HEADER: &str = "lambda-extension-identifier";
const EVENT_ID_HEADER: &str = "lambda-extension-event-identifier";
const ERROR_TYPE_HEADER: &str = "lambda-extension-function-error-type";
const ACCEPT_FEATURE_HEADER: &str = "lambda-extension-accept-feature";
const RUNTIME_ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";
/// Lambda's limit for a synchronous invocation's response.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

/// The router for both APIs over `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2020-01-01/extension/register", post(register))
        .route("/2020-01-01/extension/event/next", get(extension_next))
        .route(
            "/2020-01-01/extension/init/error",
            post(extension_init_error),
        )
        .route(
            "/2020-01-01/extension/exit/error",
            post(extension_exit_error),
        )
        .route("/2018-06-01/runtime/invocation/next", get(runtime_next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(runtime_init_error))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD))
        .with_state(shared)
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = json!({ "errorMessage": message, "errorType": error_type });
    (status, axum::Json(body)).into_response()
}

fn forbidden(error_type: &str, message: &str) -> Response {
    error(StatusCode::FORBIDDEN, error_type, message)
}

/// The reply to a `/next` that can no longer get an event: the environment is being torn down
/// and the channel its events came from is closed.
fn internal_error() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "Internal Server Error",
    )
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such Runtime API or Extensions API endpoint",
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
}

fn parse_error_body(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_default()
}
