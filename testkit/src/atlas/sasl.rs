//! The server side of MONGODB-AWS on a connection: `saslStart` answers with the server nonce
//! and STS host, `saslContinue` verifies the signed GetCallerIdentity request (locally or by
//! forwarding to STS) and maps the caller to a database user in `$external`. Every failure
//! reaches the client as a real server sends it: code 18, "Authentication failed."; the cause
//! goes to the log and to `/status`.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};

use super::cluster::{Cluster, lock};
use super::reply::{CommandReply, error};
use crate::aws_auth;

/// An authentication in progress on one connection.
#[derive(Debug, Clone)]
pub struct Conversation {
    id: i32,
    nonce: [u8; 64],
}

/// The per-connection authentication state.
#[derive(Debug, Default)]
pub struct AuthState {
    conversation: Option<Conversation>,
    /// The authenticated user (an IAM ARN in `$external`).
    pub user: Option<String>,
}

const MECHANISM: &str = "MONGODB-AWS";

fn payload_of(command: &Document) -> Option<&[u8]> {
    match command.get("payload") {
        Some(Bson::Binary(b)) => Some(&b.bytes),
        _ => None,
    }
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

fn auth_failed() -> CommandReply {
    error(18, "AuthenticationFailed", "Authentication failed.", &[])
}

impl Cluster {
    fn record_auth_failure(&self, cause: &str) {
        tracing::warn!(cause, "MONGODB-AWS authentication failed");
        let mut stats = lock(&self.auth_stats);
        stats.failed += 1;
        stats.last_failure = Some(cause.to_owned());
    }
}

/// `saslStart`.
pub fn start(
    cluster: &Cluster,
    state: &mut AuthState,
    db: &str,
    command: &Document,
) -> CommandReply {
    lock(&cluster.auth_stats).received += 1;
    state.conversation = None;
    let mechanism = command.get_str("mechanism").unwrap_or("");
    if mechanism != MECHANISM {
        cluster.record_auth_failure(&format!("mechanism {mechanism:?} is not enabled"));
        return error(
            334,
            "MechanismUnavailable",
            &format!("Received authentication for mechanism {mechanism} which is not enabled"),
            &[],
        );
    }
    if db != "$external" {
        cluster.record_auth_failure(&format!("MONGODB-AWS on database {db:?}, not $external"));
        return auth_failed();
    }
    let Some(payload) = payload_of(command) else {
        cluster.record_auth_failure("saslStart without a binary payload");
        return auth_failed();
    };
    match aws_auth::server_first(payload, &cluster.auth.sts_host) {
        Ok(first) => {
            state.conversation = Some(Conversation {
                id: 1,
                nonce: first.nonce,
            });
            CommandReply::ok(doc! {
                "conversationId": 1,
                "done": false,
                "payload": binary(first.payload),
            })
        }
        Err(failure) => {
            cluster.record_auth_failure(&failure.to_string());
            auth_failed()
        }
    }
}

/// `saslContinue`.
pub async fn next(cluster: &Cluster, state: &mut AuthState, command: &Document) -> CommandReply {
    let Some(conversation) = state.conversation.take() else {
        cluster.record_auth_failure("saslContinue without a conversation");
        return error(17, "ProtocolError", "No SASL session state found", &[]);
    };
    let id = match command.get("conversationId") {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        _ => -1,
    };
    if id != i64::from(conversation.id) {
        cluster.record_auth_failure("saslContinue with a wrong conversationId");
        return error(17, "ProtocolError", "Mismatched conversation id", &[]);
    }
    let Some(payload) = payload_of(command) else {
        cluster.record_auth_failure("saslContinue without a binary payload");
        return auth_failed();
    };
    if !cluster.auth.sts_delay.is_zero() {
        tokio::time::sleep(cluster.auth.sts_delay).await;
    }
    lock(&cluster.auth_stats).sts_calls += 1;
    let throttled = cluster
        .sts_throttle
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if throttled {
        cluster.record_auth_failure("STS GetCallerIdentity failed: Throttling (Rate exceeded)");
        return auth_failed();
    }
    let verified = aws_auth::verify(
        &cluster.auth.verifier,
        payload,
        &conversation.nonce,
        &cluster.auth.sts_host,
        SystemTime::now(),
    )
    .await;
    let caller = match verified {
        Ok(caller) => caller.0,
        Err(failure) => {
            cluster.record_auth_failure(&failure.to_string());
            return auth_failed();
        }
    };
    let user = aws_auth::user_for_arn(&caller);
    if let Some(users) = &cluster.auth.users
        && !users.contains(&user)
    {
        cluster.record_auth_failure(&format!(
            "Could not find user \"{user}\" for db \"$external\" (caller {caller})"
        ));
        return auth_failed();
    }
    tracing::debug!(user, "MONGODB-AWS authentication succeeded");
    lock(&cluster.auth_stats).successful += 1;
    state.user = Some(user);
    CommandReply::ok(doc! {
        "conversationId": conversation.id,
        "done": true,
        "payload": binary(Vec::new()),
    })
}
