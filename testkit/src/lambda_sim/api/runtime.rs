//! The Runtime API (`2018-06-01`): invocation/next, response, error, init/error.

use super::*;

pub(super) async fn runtime_next(State(shared): State<Arc<Shared>>) -> Response {
    let receiver = shared.update(|state| {
        state.runtime.waiting = true;
        state.registration_open = false;
        Arc::clone(&state.runtime.receiver)
    });
    let mut receiver = receiver.lock().await;
    let Some(event) = receiver.recv().await else {
        return internal_error();
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

pub(super) fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Records the runtime's answer to invocation `id`.
pub(super) fn answer(shared: &Shared, id: &str, outcome: Outcome) -> Response {
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

pub(super) async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let body = body_value(&body);
    answer(&shared, &id, Outcome::Response { body, at })
}

pub(super) async fn invocation_error(
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

pub(super) async fn runtime_init_error(
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
