//! The HTTP control API (JSON on 127.0.0.1): `/status` for tests to read what the cluster saw,
//! and the fault injections: stepdown, no primary, dropped connections, a blackhole, fail
//! points and STS throttling.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, lock};
use super::failpoint::FailPoint;

type Params = Query<HashMap<String, String>>;
type Reply = (StatusCode, Json<Value>);

fn bad_request(msg: impl Into<String>) -> Reply {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.into() })),
    )
}

fn param(params: &HashMap<String, String>, name: &str) -> Result<u64, Reply> {
    params
        .get(name)
        .ok_or_else(|| bad_request(format!("missing query parameter {name}")))?
        .parse()
        .map_err(|_| bad_request(format!("{name} must be a non-negative integer")))
}

/// The `/status` document.
pub fn status(cluster: &Cluster) -> Value {
    let members: serde_json::Map<String, Value> = cluster
        .members
        .iter()
        .map(|m| {
            let commands: serde_json::Map<String, Value> = lock(&m.commands)
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            (
                m.key.clone(),
                json!({
                    "state": cluster.state_name(m.index),
                    "host": m.host,
                    "connections": {
                        "current": m.connections_current.load(Ordering::Relaxed),
                        "total_created": m.connections_total.load(Ordering::Relaxed),
                    },
                    "commands": commands,
                    "cursors": lock(&m.cursors).len(),
                    "operations": m.operations.status(),
                    "tags": m.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<String, Value>>(),
                }),
            )
        })
        .collect();
    let auth = lock(&cluster.auth_stats).clone();
    json!({
        "primary": cluster.primary().map(|p| cluster.members[p].key.clone()),
        "members": members,
        "auth": {
            "received": auth.received,
            "successful": auth.successful,
            "failed": auth.failed,
            "last_failure": auth.last_failure,
        },
        "sts_calls": auth.sts_calls,
    })
}

/// Serves the control API on `listener` until `shutdown`.
///
/// # Errors
/// When the HTTP server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/status",
            get(|State(c): State<Arc<Cluster>>| async move { Json(status(&c)) }),
        )
        .route(
            "/stepdown",
            post(|State(c): State<Arc<Cluster>>| async move {
                let primary = c.step_down().map(|p| c.members[p].key.clone());
                Json(json!({ "primary": primary }))
            }),
        )
        .route(
            "/no-primary",
            post(
                |State(c): State<Arc<Cluster>>, Query(p): Params| async move {
                    let ms = match param(&p, "ms") {
                        Ok(ms) => ms,
                        Err(e) => return e,
                    };
                    c.no_primary_for(Duration::from_millis(ms));
                    (
                        StatusCode::OK,
                        Json(json!({ "primary": null, "for_ms": ms })),
                    )
                },
            ),
        )
        .route(
            "/drop-connections",
            post(|State(c): State<Arc<Cluster>>| async move {
                Json(json!({ "dropped": c.drop_connections() }))
            }),
        )
        .route(
            "/blackhole",
            post(
                |State(c): State<Arc<Cluster>>, Query(p): Params| async move {
                    let ms = match param(&p, "ms") {
                        Ok(ms) => ms,
                        Err(e) => return e,
                    };
                    let n = c.blackhole(Duration::from_millis(ms));
                    (
                        StatusCode::OK,
                        Json(json!({ "connections": n, "for_ms": ms })),
                    )
                },
            ),
        )
        .route(
            "/failpoint",
            post(
                |State(c): State<Arc<Cluster>>, Json(body): Json<Value>| async move {
                    let command = match bson::serialize_to_document(&body) {
                        Ok(d) => d,
                        Err(e) => return bad_request(format!("body is not a document: {e}")),
                    };
                    match FailPoint::configure(&command) {
                        Ok(fp) => {
                            let on = fp.is_some();
                            *lock(&c.failpoint) = fp;
                            (StatusCode::OK, Json(json!({ "ok": 1, "active": on })))
                        }
                        Err(e) => bad_request(e.errmsg),
                    }
                },
            ),
        )
        .route(
            "/sts/throttle",
            post(
                |State(c): State<Arc<Cluster>>, Query(p): Params| async move {
                    let times = match param(&p, "times") {
                        Ok(t) => t,
                        Err(e) => return e,
                    };
                    c.sts_throttle.store(times, Ordering::SeqCst);
                    (StatusCode::OK, Json(json!({ "throttle": times })))
                },
            ),
        )
        .with_state(cluster);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
