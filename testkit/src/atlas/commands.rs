//! Dispatch of one command on one connection: the handshake and authentication first, then
//! the authentication gate, fail points, the primary/secondary rules of a replica set,
//! transactions and retryable writes around the store, and cursors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, Document, doc};

use super::change_stream;
use super::cluster::{Cluster, lock};
use super::cursors::{DEFAULT_FIRST_BATCH, next_batch};
use super::failpoint::FailPoint;
use super::handshake::{self, HelloRequest};
use super::operations::KILLED_ON_DISCONNECT;
use super::reply::{CommandReply, code_name, error};
use super::sasl::{self, AuthState};
use crate::store::{Outcome, Store};

mod cursor;
mod transaction;

use cursor::{get_more, kill_cursors};
use transaction::{finish_transaction, no_such_transaction, session_key, txn_number};

/// The state of one client connection that commands read and change.
#[derive(Debug)]
pub struct Connection {
    /// The member it is connected to.
    pub member: usize,
    /// Its `connectionId`.
    pub connection_id: i64,
    /// Authentication.
    pub auth: AuthState,
    /// `client.application.name` from its first hello.
    pub app_name: Option<String>,
    /// Cancelled when the client closes the connection while a command runs.
    pub client_gone: tokio_util::sync::CancellationToken,
    handshake_seen: bool,
}

impl Connection {
    /// A new, unauthenticated connection.
    pub fn new(member: usize, connection_id: i64) -> Self {
        Connection {
            member,
            connection_id,
            auth: AuthState::default(),
            app_name: None,
            client_gone: tokio_util::sync::CancellationToken::new(),
            handshake_seen: false,
        }
    }
}

/// The error label of a write the driver may retry once.
pub(super) const RETRYABLE: &str = "RetryableWriteError";
/// The error label of a transaction the driver may run again from the start.
pub(super) const TRANSIENT: &str = "TransientTransactionError";

/// Runs one command. `command` is the whole body with kind-1 sequences merged in and `$db` set.
///
/// Around the command itself: it is listed as running on its member; a `maxTimeMS` bounds it
/// (fail-point blocking included); and a read whose client disconnects is killed.
pub async fn handle(
    cluster: &Arc<Cluster>,
    conn: &mut Connection,
    command: Document,
) -> CommandReply {
    let Some(name) = command.keys().next().cloned() else {
        return error(59, "CommandNotFound", "no such command: ''", &[]);
    };
    let member = &cluster.members[conn.member];
    tracing::debug!(
        member = member.key,
        connection_id = conn.connection_id,
        command = name,
        "command"
    );
    member.count_command(&name);
    let _running = member.operations.begin(&name, conn.connection_id);
    if !cluster.settings.latency.is_zero() {
        tokio::time::sleep(cluster.settings.latency).await;
    }
    let max_time = max_time(&name, &command);
    let client_gone = conn.client_gone.clone();
    let run = run_command(cluster, conn, &name, command);
    let bounded = async {
        match max_time {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(reply) => reply,
                // The server checks the deadline while the command (or the fail point's
                // blockConnection) waits, and fails it with MaxTimeMSExpired, no labels.
                Err(_) => error(50, "MaxTimeMSExpired", "operation exceeded time limit", &[]),
            },
            None => run.await,
        }
    };
    if !KILLED_ON_DISCONNECT.contains(&name.as_str()) {
        return bounded.await;
    }
    tokio::select! {
        reply = bounded => reply,
        () = client_gone.cancelled() => {
            member.operations.record_killed(&name);
            tracing::debug!(member = member.key, command = name, "client disconnected: operation killed");
            CommandReply::Close
        }
    }
}

/// The `maxTimeMS` that bounds command `name`, if any. Not for `getMore`, where it is how long
/// an awaitData cursor waits for data, nor for hello, whose wait is `maxAwaitTimeMS`.
fn max_time(name: &str, command: &Document) -> Option<Duration> {
    if matches!(name, "getMore" | "hello" | "isMaster" | "ismaster") {
        return None;
    }
    let ms = match command.get("maxTimeMS")? {
        Bson::Int32(v) => u64::try_from(*v).ok()?,
        Bson::Int64(v) => u64::try_from(*v).ok()?,
        Bson::Double(v) if *v >= 0.0 => *v as u64,
        _ => return None,
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The `failCommand` fail point, then the command.
async fn run_command(
    cluster: &Arc<Cluster>,
    conn: &mut Connection,
    name: &str,
    command: Document,
) -> CommandReply {
    let db = command.get_str("$db").unwrap_or("admin").to_owned();
    let was_writable = cluster.is_writable(conn.member);

    if name != "configureFailPoint" {
        let fired = {
            let mut fp = lock(&cluster.failpoint);
            let fired = fp
                .as_mut()
                .and_then(|f| f.fire(name, conn.app_name.as_deref()));
            if matches!(fired, Some((_, true))) {
                *fp = None;
            }
            fired.map(|(action, _)| action)
        };
        if let Some(action) = fired {
            if let Some(block) = action.block {
                tokio::time::sleep(block).await;
            }
            if action.close_connection {
                return CommandReply::Close;
            }
            if let Some((code, labels)) = action.error {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                return error(
                    code,
                    code_name(code),
                    "Failing command via 'failCommand' failpoint",
                    &labels,
                );
            }
            let reply = dispatch(cluster, conn, name, &db, command, was_writable).await;
            if action.close_after_apply {
                // atlas-sim's own option: the command applied, the reply is lost.
                return CommandReply::Close;
            }
            return match (reply, action.write_concern_error) {
                (CommandReply::Ok(mut body), Some(wce)) => {
                    body.insert("writeConcernError", wce);
                    if !action.labels.is_empty() {
                        body.insert("errorLabels", action.labels);
                    }
                    CommandReply::Ok(body)
                }
                (reply, _) => reply,
            };
        }
    }
    dispatch(cluster, conn, name, &db, command, was_writable).await
}

async fn dispatch(
    cluster: &Arc<Cluster>,
    conn: &mut Connection,
    name: &str,
    db: &str,
    command: Document,
    was_writable: bool,
) -> CommandReply {
    match name {
        "hello" | "isMaster" | "ismaster" => {
            if !conn.handshake_seen {
                conn.handshake_seen = true;
                conn.app_name = command
                    .get_document("client")
                    .and_then(|c| c.get_document("application"))
                    .and_then(|a| a.get_str("name"))
                    .ok()
                    .map(str::to_owned);
            }
            let request = HelloRequest::parse(name, &command);
            handshake::await_topology_change(cluster, conn.member, &request).await;
            CommandReply::ok(handshake::reply(
                cluster,
                conn.member,
                conn.connection_id,
                &request,
            ))
        }
        "saslStart" => sasl::start(cluster, &mut conn.auth, db, &command),
        "saslContinue" => sasl::next(cluster, &mut conn.auth, &command).await,
        // mongod still runs logout (deprecated since 5.0): the connection is no longer
        // authenticated, and needs no authentication to ask.
        "logout" => {
            conn.auth = AuthState::default();
            CommandReply::ok(Document::new())
        }
        "authenticate" => error(
            334,
            "MechanismUnavailable",
            "Received authentication for mechanism MONGODB-X509 which is not enabled",
            &[],
        ),
        "ping" => CommandReply::ok(Document::new()),
        "buildInfo" | "buildinfo" => CommandReply::ok(build_info(cluster)),
        // A server looks the command up before it checks authentication or the member state.
        _ if !is_known(name) => error(
            59,
            "CommandNotFound",
            &format!("no such command: '{name}'"),
            &[],
        ),
        _ if conn.auth.user.is_none() => error(
            13,
            "Unauthorized",
            &format!("Command {name} requires authentication"),
            &[],
        ),
        _ => authenticated(cluster, conn, name, db, command, was_writable).await,
    }
}

/// Commands answered outside the store, once the connection is authenticated.
const SERVER_COMMANDS: &[&str] = &[
    "configureFailPoint",
    "replSetStepDown",
    "serverStatus",
    "connectionStatus",
    "endSessions",
    "killSessions",
    "refreshSessions",
    "getMore",
    "killCursors",
    "commitTransaction",
    "abortTransaction",
];

/// Whether atlas-sim implements `name` (the handshake and authentication commands aside).
fn is_known(name: &str) -> bool {
    SERVER_COMMANDS.contains(&name) || Store::commands().contains(&name)
}

fn build_info(cluster: &Cluster) -> Document {
    doc! {
        "version": "8.0.4",
        "gitVersion": "atlas-sim",
        "versionArray": [8, 0, 4, 0],
        "maxBsonObjectSize": mongo_pool_wire::MAX_BSON_OBJECT_SIZE as i32,
        "bits": 64,
        "modules": ["enterprise"],
        "maxWireVersion": cluster.settings.max_wire_version,
    }
}

async fn authenticated(
    cluster: &Arc<Cluster>,
    conn: &mut Connection,
    name: &str,
    db: &str,
    command: Document,
    was_writable: bool,
) -> CommandReply {
    let member = conn.member;
    match name {
        "configureFailPoint" => {
            if db != "admin" {
                return error(
                    13,
                    "Unauthorized",
                    "configureFailPoint may only be run against the admin database.",
                    &[],
                );
            }
            match FailPoint::configure(&command) {
                Ok(fp) => {
                    *lock(&cluster.failpoint) = fp;
                    CommandReply::ok(doc! { "count": 0 })
                }
                Err(e) => e.into(),
            }
        }
        "replSetStepDown" => {
            if cluster.sharded() || !cluster.is_writable(member) {
                return error(
                    10107,
                    "NotWritablePrimary",
                    "not primary so can't step down",
                    &[],
                );
            }
            cluster.step_down();
            CommandReply::ok(Document::new())
        }
        "serverStatus" => CommandReply::ok(server_status(cluster, member)),
        "connectionStatus" => {
            let user = conn.auth.user.clone().unwrap_or_default();
            CommandReply::ok(doc! {
                "authInfo": {
                    "authenticatedUsers": [{ "user": user, "db": "$external" }],
                    "authenticatedUserRoles": [{ "role": "readWriteAnyDatabase", "db": "admin" }],
                }
            })
        }
        "endSessions" | "killSessions" | "refreshSessions" => CommandReply::ok(Document::new()),
        "getMore" => get_more(cluster, member, db, &command).await,
        "killCursors" => kill_cursors(cluster, member, &command),
        "commitTransaction" | "abortTransaction" => {
            finish_transaction(cluster, member, name, &command)
        }
        _ => data_command(cluster, member, name, db, command, was_writable),
    }
}

fn server_status(cluster: &Cluster, member: usize) -> Document {
    let m = &cluster.members[member];
    let stats = lock(&cluster.auth_stats).clone();
    doc! {
        "host": m.host.clone(),
        "version": "8.0.4",
        "process": if cluster.sharded() { "mongos" } else { "mongod" },
        "pid": i64::from(std::process::id()),
        "uptime": cluster.uptime().as_secs_f64(),
        "uptimeMillis": i64::try_from(cluster.uptime().as_millis()).unwrap_or(i64::MAX),
        "localTime": bson::DateTime::now(),
        "connections": {
            "current": m.connections_current.load(std::sync::atomic::Ordering::Relaxed) as i64,
            "available": 1000_i64,
            "totalCreated": m.connections_total.load(std::sync::atomic::Ordering::Relaxed) as i64,
        },
        "security": { "authentication": { "mechanisms": { "MONGODB-AWS": { "authenticate": {
            "received": stats.received as i64,
            "successful": stats.successful as i64,
        } } } } },
    }
}

pub(super) fn collection_ns(db: &str, command: &Document, field: &str) -> String {
    format!("{db}.{}", command.get_str(field).unwrap_or(""))
}

pub(crate) fn positive(value: Option<&Bson>) -> Option<usize> {
    match value? {
        Bson::Int32(v) => usize::try_from(*v).ok(),
        Bson::Int64(v) => usize::try_from(*v).ok(),
        Bson::Double(v) if *v >= 0.0 => Some(*v as usize),
        _ => None,
    }
}

fn read_preference_allows_secondary(command: &Document) -> bool {
    command
        .get_document("$readPreference")
        .and_then(|p| p.get_str("mode"))
        .is_ok_and(|mode| mode != "primary")
}

fn data_command(
    cluster: &Arc<Cluster>,
    member: usize,
    name: &str,
    db: &str,
    command: Document,
    was_writable: bool,
) -> CommandReply {
    let is_write = Store::is_write(name);
    let lsid = session_key(&command);
    let txn = txn_number(&command);
    let in_transaction = command.get_bool("autocommit").ok() == Some(false) && txn.is_some();
    let retryable_write = is_write && !in_transaction && lsid.is_some() && txn.is_some();
    let retry_label: &[&str] = if retryable_write { &[RETRYABLE] } else { &[] };

    if !cluster.sharded() {
        let writable = cluster.is_writable(member);
        // A statement of a transaction that fails as not primary is labelled
        // TransientTransactionError: the whole transaction may run again (mongodb/mongo
        // src/mongo/db/error_labels.cpp, isTransientTransactionError: retriable errors outside
        // commit/abort). A retryable write's gets RetryableWriteError instead.
        let labels: &[&str] = if in_transaction {
            &[TRANSIENT]
        } else {
            retry_label
        };
        if (is_write || in_transaction) && was_writable && !writable {
            return error(
                11602,
                "InterruptedDueToReplStateChange",
                "operation was interrupted because of a replica set state change",
                labels,
            );
        }
        if (is_write || in_transaction) && !writable {
            return error(10107, "NotWritablePrimary", "not primary", labels);
        }
        if !writable && !read_preference_allows_secondary(&command) {
            return error(
                13435,
                "NotPrimaryNoSecondaryOk",
                "not primary and secondaryOk=false",
                &[],
            );
        }
    }

    if in_transaction {
        let (Some(key), Some(n)) = (lsid, txn) else {
            return error(
                50768,
                "InvalidOptions",
                "transactions need lsid and txnNumber",
                &[],
            );
        };
        let mut sessions = lock(&cluster.sessions);
        // Checked again under the sessions lock: a stepdown since the check above has aborted
        // the transactions, and must not let this statement open a new one on a secondary.
        if !cluster.sharded() && !cluster.is_writable(member) {
            return error(
                11602,
                "InterruptedDueToReplStateChange",
                "operation was interrupted because of a replica set state change",
                &[TRANSIENT],
            );
        }
        if command.get_bool("startTransaction").unwrap_or(false) {
            let store = lock(&cluster.store);
            sessions.start(key.clone(), n, &store);
        }
        let Some(transaction) = sessions.transaction(&key, n) else {
            return no_such_transaction(n);
        };
        let result = transaction.snapshot.execute(db, &command);
        if is_write && result.is_ok() {
            transaction.writes.push((db.to_owned(), command.clone()));
        }
        drop(sessions);
        return shape(cluster, member, &command, result);
    }

    if retryable_write && let (Some(key), Some(n)) = (lsid, txn) {
        // Look up, apply and remember under one lock: two concurrent retries of the same
        // write (lock order: sessions, then store) cannot both apply it.
        let mut sessions = lock(&cluster.sessions);
        if let Some(stored) = sessions.retry_result(&key, n) {
            return CommandReply::ok(stored);
        }
        let result = cluster.execute(db, &command);
        let reply = shape(cluster, member, &command, result);
        if let CommandReply::Ok(body) = &reply {
            sessions.remember(key, n, body.clone());
        }
        return reply;
    }
    if name == "aggregate" && change_stream::is_change_stream(&command) {
        return change_stream::open(cluster, member, db, &command);
    }
    let result = cluster.execute(db, &command);
    shape(cluster, member, &command, result)
}

fn shape(
    cluster: &Cluster,
    member: usize,
    command: &Document,
    result: Result<Outcome, crate::store::CommandError>,
) -> CommandReply {
    match result {
        Err(e) => e.into(),
        Ok(Outcome::Reply(body)) => CommandReply::ok(body),
        Ok(Outcome::Cursor { ns, documents }) => {
            let find = command.contains_key("find");
            let batch_size = if find {
                positive(command.get("batchSize"))
            } else {
                command
                    .get_document("cursor")
                    .ok()
                    .and_then(|c| positive(c.get("batchSize")))
            };
            let single_batch = find
                && (command.get_bool("singleBatch").unwrap_or(false)
                    || matches!(command.get("limit"), Some(Bson::Int32(v)) if *v < 0)
                    || matches!(command.get("limit"), Some(Bson::Int64(v)) if *v < 0));
            let mut remaining: VecDeque<Document> = documents.into();
            let first = match batch_size {
                Some(0) => Vec::new(),
                Some(n) => next_batch(&mut remaining, n),
                None => next_batch(&mut remaining, DEFAULT_FIRST_BATCH),
            };
            let id = if remaining.is_empty() || single_batch {
                0
            } else {
                lock(&cluster.members[member].cursors).open(ns.clone(), remaining)
            };
            CommandReply::ok(doc! { "cursor": { "firstBatch": first, "id": id, "ns": ns } })
        }
    }
}
