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

/// The `Lambda-Extension-Identifier` of a request, checked as Lambda does; else the refusal's
/// error type and message (for [`forbidden`]).
fn extension_id(headers: &HeaderMap) -> Result<String, (&'static str, &'static str)> {
    let Some(id) = header_str(headers, ID_HEADER).filter(|id| !id.is_empty()) else {
        return Err((
            "Extension.MissingExtensionIdentifier",
            "Missing Lambda-Extension-Identifier header",
        ));
    };
    if !ids::is_uuid(id) {
        return Err((
            "Extension.InvalidExtensionIdentifier",
            "Invalid Lambda-Extension-Identifier",
        ));
    }
    Ok(id.to_owned())
}

fn unknown_extension(id: &str) -> Response {
    forbidden(
        "Extension.UnknownExtensionIdentifier",
        &format!("Unknown extension {id}"),
    )
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    #[serde(default)]
    events: Vec<String>,
}

async fn register(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(name) = header_str(&headers, NAME_HEADER).filter(|n| !n.is_empty()) else {
        return forbidden("Extension.InvalidExtensionName", "Empty extension name");
    };
    let request: RegisterBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return forbidden("InvalidRequestFormat", &e.to_string()),
    };
    let mut state = shared.lock();
    let external = state.extension_files.contains(name);
    let (mut invoke, mut shutdown) = (false, false);
    for event in &request.events {
        match event.as_str() {
            "INVOKE" => invoke = true,
            "SHUTDOWN" if external => shutdown = true,
            "SHUTDOWN" => {
                return forbidden(
                    "Extension.InvalidEventType",
                    &format!(
                        "SHUTDOWN: event not supported for internal extensions ('{name}' is \
                         not the file name of an external extension)"
                    ),
                );
            }
            other => {
                return forbidden(
                    "Extension.InvalidEventType",
                    &format!("{other}: invalid event type"),
                );
            }
        }
    }
    if !state.registration_open {
        return forbidden(
            "Extension.RegistrationClosed",
            "Extension registration closed already",
        );
    }
    if state.agents.iter().any(|a| a.name == name) {
        return forbidden(
            "Extension.InvalidExtensionState",
            &format!("Extension with this name already registered: {name}"),
        );
    }
    if state.agents.len() >= MAX_EXTENSIONS {
        return forbidden(
            "Extension.TooManyExtensions",
            &format!("Extension limit ({MAX_EXTENSIONS}) reached"),
        );
    }
    let id = ids::uuid_v4();
    let (sender, receiver) = mpsc::unbounded_channel();
    state.agents.push(Agent {
        id: id.clone(),
        name: name.to_owned(),
        external,
        invoke,
        shutdown,
        ready: false,
        ready_at: None,
        sender,
        receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
    });
    drop(state);
    shared.notify();
    tracing::info!(name, external, invoke, shutdown, "extension registered");
    let platform = &shared.platform;
    let mut body = json!({
        "functionName": platform.function_name,
        "functionVersion": platform.function_version,
        "handler": platform.handler,
    });
    let wants_account = header_str(&headers, ACCEPT_FEATURE_HEADER)
        .is_some_and(|features| features.split(',').any(|f| f.trim() == "accountId"));
    if wants_account && let Some(fields) = body.as_object_mut() {
        fields.insert("accountId".into(), Value::from(platform.account_id.clone()));
    }
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(ID_HEADER), value);
    }
    response
}

async fn extension_next(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let id = match extension_id(&headers) {
        Ok(id) => id,
        Err((error_type, message)) => return forbidden(error_type, message),
    };
    let receiver = {
        let mut state = shared.lock();
        let Some(agent) = state.agent_mut(&id) else {
            return unknown_extension(&id);
        };
        agent.ready = true;
        agent.ready_at = Some(Instant::now());
        std::sync::Arc::clone(&agent.receiver)
    };
    shared.notify();
    let mut receiver = receiver.lock().await;
    let Some(event) = receiver.recv().await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal Server Error",
        );
    };
    drop(receiver);
    shared.update(|state| {
        if let Some(agent) = state.agent_mut(&id) {
            agent.ready = false;
        }
    });
    let mut response = (StatusCode::OK, axum::Json(event)).into_response();
    if let Ok(value) = HeaderValue::from_str(&ids::uuid_v4()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(EVENT_ID_HEADER), value);
    }
    response
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

/// `init/error` or `exit/error` from an extension.
async fn extension_error(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    init: bool,
) -> Response {
    let id = match extension_id(headers) {
        Ok(id) => id,
        Err((error_type, message)) => return forbidden(error_type, message),
    };
    let Some(error_type) = header_str(headers, ERROR_TYPE_HEADER).filter(|t| !t.is_empty()) else {
        return forbidden(
            "Extension.MissingHeader",
            "Lambda-Extension-Function-Error-Type not found",
        );
    };
    let parsed = parse_error_body(body);
    let mut state = shared.lock();
    let Some(agent) = state.agent_mut(&id) else {
        return unknown_extension(&id);
    };
    let error = PhaseError {
        source: agent.name.clone(),
        error_type: error_type.to_owned(),
        message: parsed.error_message.unwrap_or_default(),
    };
    tracing::warn!(
        source = error.source,
        error_type = error.error_type,
        message = error.message,
        phase = if init { "init" } else { "exit" },
        "extension reported an error"
    );
    if init {
        if state.init_done {
            return forbidden(
                "Extension.InvalidExtensionState",
                &format!(
                    "Init is over: extension {} cannot report an init error",
                    error.source
                ),
            );
        }
        state.fail(error);
    } else {
        if !state.init_done {
            state.fail(error.clone());
        }
        state.exit_errors.push(error);
    }
    drop(state);
    shared.notify();
    accepted()
}

async fn extension_init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    extension_error(&shared, &headers, &body, true).await
}

async fn extension_exit_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    extension_error(&shared, &headers, &body, false).await
}

async fn runtime_next(State(shared): State<Arc<Shared>>) -> Response {
    let receiver = shared.update(|state| {
        state.runtime.waiting = true;
        state.registration_open = false;
        Arc::clone(&state.runtime.receiver)
    });
    let mut receiver = receiver.lock().await;
    let Some(event) = receiver.recv().await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal Server Error",
        );
    };
    drop(receiver);
    let platform = &shared.platform;
    let mut response = (StatusCode::OK, event.body).into_response();
    let headers = response.headers_mut();
    let pairs = [
        ("lambda-runtime-aws-request-id", event.request_id.clone()),
        ("lambda-runtime-deadline-ms", event.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", platform.arn.clone()),
        ("lambda-runtime-trace-id", event.trace_id.clone()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Records the runtime's answer to invocation `id`.
fn answer(shared: &Shared, id: &str, outcome: Outcome) -> Response {
    let recorded = shared.update(|state| match state.runtime.current.as_mut() {
        Some(current) if current.request_id == id && current.outcome.is_none() => {
            current.outcome = Some(outcome);
            true
        }
        _ => false,
    });
    if recorded {
        accepted()
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        )
    }
}

async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let body = body_value(&body);
    answer(&shared, &id, Outcome::Response { body, at })
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let error_type = header_str(&headers, RUNTIME_ERROR_TYPE_HEADER).map(str::to_owned);
    let body = body_value(&body);
    answer(
        &shared,
        &id,
        Outcome::Error {
            error_type,
            body,
            at,
        },
    )
}

async fn runtime_init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = parse_error_body(&body);
    let error_type = header_str(&headers, RUNTIME_ERROR_TYPE_HEADER)
        .map(str::to_owned)
        .or(parsed.error_type)
        .unwrap_or_else(|| "Runtime.Unknown".to_owned());
    let error = PhaseError {
        source: "function".to_owned(),
        error_type,
        message: parsed.error_message.unwrap_or_default(),
    };
    let mut state = shared.lock();
    if state.init_done {
        return forbidden(
            "InvalidStateTransition",
            "Init is over: the runtime cannot report an init error",
        );
    }
    tracing::warn!(
        error_type = error.error_type,
        message = error.message,
        "runtime init error"
    );
    state.fail(error);
    drop(state);
    shared.notify();
    accepted()
}
