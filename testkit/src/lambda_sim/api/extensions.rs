//! The Extensions API (`2020-01-01`): register, event/next, init/error, exit/error.

use super::*;

/// The `Lambda-Extension-Identifier` of a request, checked as Lambda does; else the refusal's
/// error type and message (for [`forbidden`]).
pub(super) fn extension_id(headers: &HeaderMap) -> Result<String, (&'static str, &'static str)> {
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

pub(super) fn unknown_extension(id: &str) -> Response {
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

pub(super) async fn register(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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

pub(super) async fn extension_next(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
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
        return internal_error();
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

/// `init/error` or `exit/error` from an extension.
pub(super) async fn extension_error(
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

pub(super) async fn extension_init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    extension_error(&shared, &headers, &body, true).await
}

pub(super) async fn extension_exit_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    extension_error(&shared, &headers, &body, false).await
}
