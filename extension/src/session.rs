//! One downstream connection: frames in from the driver, replies out. Handshakes,
//! authentication attempts and `mongoPoolStats` are answered here; everything else is
//! forwarded verbatim over an exclusively checked-out upstream connection, one round trip per
//! check-out, and the reply goes back with the driver's own `requestID` as `responseTo`.
//!
//! Messages are read within the shared buffer budget ([`inbound`]). A malformed frame closes
//! this connection only; so does OP_COMPRESSED, which mongo-pool never offers. A well-framed
//! request whose BSON is invalid anywhere (every document, nested ones included, up to
//! [`MAX_REQUEST_DEPTH`] levels) is answered with InvalidBSON (22) and goes nowhere, and a
//! routing field of the wrong type with TypeMismatch (14) or BadValue (2): the connection stays
//! open, and no upstream connection ever sees the request.
//!
//! A driver that closes its connection while its request runs upstream (a `socketTimeoutMS`
//! that fired) has given up on it: the upstream connection running it is closed, never
//! returned to the pool, so that the server kills the operation (as mongod does since 4.2)
//! instead of running it on next to the driver's retry. The member's state and pool are left
//! alone: nothing is wrong with it. Bytes that arrive meanwhile (a pipelined `moreToCome`
//! message) are kept; only the end of the connection cancels.
//!
//! An upstream connection that fails mid-request is discarded alone (it is broken; the member
//! is re-checked but keeps its state and its pool, [`Failure::ConnectionLost`]), and this
//! connection is closed, so the driver sees a network error and applies its own retry rules.
//! Failures of the proxy itself (no member in time, no pooled connection in time) are answered
//! with a retryable error.

mod inbound;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, RawDocumentBuf, doc};
use mongo_pool_wire::inspect::{Command, CommandKind, ReadPreferenceMode, Reply};
use mongo_pool_wire::validate::MAX_REQUEST_DEPTH;
use mongo_pool_wire::{
    Frame, MAX_MESSAGE_SIZE, MsgFlags, OpCode, OpMsgBuilder, OpReplyBuilder, WireError,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::handshake;
use crate::listener::Activity;
use crate::pool::CheckoutError;
use crate::proxy::{DownstreamCounters, Proxy};
use crate::route::{Request, SessionId, Target};
use crate::stats;
use crate::topology::{Failure, STATE_CHANGE_CODES, SelectionError, TopologyKind};
use crate::upstream::connection::BrokenReason;

/// How long a message that has started arriving may take to arrive whole. An idle connection
/// (no byte of a next message yet) may wait for ever; one that sent part of a message and
/// stalled would hold a client slot for ever (a slow-loris), so it is closed as malformed.
pub const PARTIAL_MESSAGE_LIMIT: Duration = Duration::from_secs(5);
/// How often a waiting connection looks for a stalled partial message.
const STALL_CHECK: Duration = Duration::from_millis(500);

/// What to do after a request.
enum Action {
    /// Send this reply.
    Reply(Frame),
    /// Send nothing (the request had `moreToCome`).
    Nothing,
    /// Close the downstream connection.
    Close(Close),
}

/// Why a downstream connection is closed.
#[derive(Debug)]
enum Close {
    /// The driver sent something that is not a valid request.
    Malformed(String),
    /// The upstream connection failed mid-request.
    Upstream(String),
    /// The driver closed its connection while its request ran upstream.
    DownstreamGone,
}

/// Serves one downstream connection until the driver closes it, it breaks the protocol, or
/// `shutdown` fires between requests (a request in flight is finished first). Each request is
/// marked on `activity` while in flight, so the listener never closes a busy connection.
pub async fn run(
    proxy: Arc<Proxy>,
    stream: UnixStream,
    shutdown: CancellationToken,
    activity: &Activity,
) {
    let connection_id = proxy.next_connection_id();
    let span = tracing::debug_span!("session", connection_id);
    async move {
        let (reader, mut writer) = stream.into_split();
        let mut inbound = inbound::Inbound::new(reader, MAX_MESSAGE_SIZE);
        let shared = Arc::clone(&proxy);
        // Cancelled when the driver closes its connection while a request is in flight.
        let gone = CancellationToken::new();
        let mut session = Session {
            proxy,
            connection_id,
            next_reply_id: 1,
            gone: gone.clone(),
        };
        // Set when `shutdown` fired while a message was arriving: that request is read, served
        // and answered, then the connection closes.
        let mut closing = false;
        loop {
            let next = tokio::select! {
                // Closed between requests: at once. A message that has started arriving is a
                // request in flight (the driver has sent it): it is finished first, bounded by
                // PARTIAL_MESSAGE_LIMIT like any other, so an eviction never cuts a request.
                () = shutdown.cancelled(), if !closing => {
                    if inbound.partial_len() == 0 {
                        break;
                    }
                    closing = true;
                    continue;
                }
                // Cancel-safe: bytes read so far stay in `inbound`.
                next = inbound.next(&shared.budget) => next,
                () = tokio::time::sleep(STALL_CHECK) => {
                    let stalled = inbound
                        .receiving_since()
                        .is_some_and(|since| since.elapsed() >= PARTIAL_MESSAGE_LIMIT);
                    if stalled {
                        session.malformed(&format!(
                            "{} bytes of a message and nothing more for {PARTIAL_MESSAGE_LIMIT:?}",
                            inbound.partial_len()
                        ));
                        break;
                    }
                    continue;
                }
            };
            // `_reservation` holds the request's bytes against the budget until it is done.
            let (frame, _reservation) = match next {
                Ok(next) => next,
                Err(inbound::ReadError::Closed) => break,
                Err(e @ inbound::ReadError::Io(_)) => {
                    tracing::debug!(error = %e, "downstream read failed");
                    break;
                }
                // A truncated message is as malformed as any other; OP_COMPRESSED was never
                // offered.
                Err(e) => {
                    session.malformed(&e.to_string());
                    inbound.discard_pending().await;
                    break;
                }
            };
            // Busy until the reply is written: the listener never evicts this connection now.
            let _busy = activity.busy();
            // Meanwhile, watch for the driver giving up: the end of its connection cancels
            // the request's round trip (see `Session::forward`), which then finishes at once.
            let action = {
                let handling = session.handle(frame);
                tokio::pin!(handling);
                loop {
                    tokio::select! {
                        action = &mut handling => break action,
                        () = inbound.closed(), if !gone.is_cancelled() => gone.cancel(),
                    }
                }
            };
            match action {
                Action::Reply(reply) => {
                    if let Err(e) = writer.write_all(reply.as_bytes()).await {
                        tracing::debug!(error = %e, "downstream write failed");
                        break;
                    }
                }
                Action::Nothing => {}
                Action::Close(Close::Malformed(why)) => {
                    session.malformed(&why);
                    break;
                }
                Action::Close(Close::Upstream(why)) => {
                    tracing::debug!(
                        why,
                        "closing the downstream connection after an upstream network error"
                    );
                    break;
                }
                Action::Close(Close::DownstreamGone) => break,
            }
            if closing {
                break;
            }
        }
    }
    .instrument(span)
    .await;
}

/// The labels of an error mongo-pool itself answers with (nothing reached the server), per the
/// transactions and retryable-writes specs:
/// - `commitTransaction`: `UnknownTransactionCommitResult`, never `TransientTransactionError`.
///   An earlier attempt of this commit may have applied (its reply lost), and a driver that saw
///   TransientTransactionError would run the whole transaction again: stored twice. With
///   `RetryableWriteError` the driver retries the commit itself.
/// - `abortTransaction`: retryable; drivers ignore a failed abort after their retry.
/// - any other statement of a transaction: `TransientTransactionError` (the driver retries the
///   whole transaction: nothing of it can have committed).
/// - anything else: `RetryableWriteError` + `NoWritesPerformed`.
fn proxy_error_labels(kind: CommandKind, in_transaction: bool) -> Vec<&'static str> {
    match kind {
        CommandKind::CommitTransaction => vec![
            "UnknownTransactionCommitResult",
            "RetryableWriteError",
            "NoWritesPerformed",
        ],
        CommandKind::AbortTransaction => vec!["RetryableWriteError", "NoWritesPerformed"],
        _ if in_transaction => vec!["TransientTransactionError"],
        _ => vec!["RetryableWriteError", "NoWritesPerformed"],
    }
}

struct Session {
    proxy: Arc<Proxy>,
    connection_id: i64,
    next_reply_id: i32,
    /// Cancelled once the driver has closed its connection.
    gone: CancellationToken,
}

fn malformed(e: impl std::fmt::Display) -> Action {
    Action::Close(Close::Malformed(e.to_string()))
}

impl Session {
    fn malformed(&self, why: &str) {
        DownstreamCounters::add(&self.proxy.downstream.malformed);
        tracing::warn!(
            connection_id = self.connection_id,
            why,
            "closing a downstream connection that sent a malformed message"
        );
    }

    fn reply_id(&mut self) -> i32 {
        let id = self.next_reply_id;
        self.next_reply_id = self.next_reply_id.wrapping_add(1).max(1);
        id
    }

    /// An OP_MSG reply carrying `body`, answering `request_id`.
    fn msg(&mut self, body: &Document, request_id: i32) -> Action {
        let reply_id = self.reply_id();
        match RawDocumentBuf::try_from(body) {
            Ok(raw) => match OpMsgBuilder::new(&raw)
                .request_id(reply_id)
                .response_to(request_id)
                .build()
            {
                Ok(frame) => Action::Reply(frame),
                Err(e) => malformed(e),
            },
            Err(e) => malformed(e),
        }
    }

    /// A request refused before routing (invalid BSON, a wrongly typed field): an error reply,
    /// nothing upstream, the connection stays open. A `moreToCome` request gets no reply.
    fn reject(
        &mut self,
        code: i32,
        code_name: &str,
        errmsg: String,
        request_id: i32,
        more_to_come: bool,
    ) -> Action {
        DownstreamCounters::add(&self.proxy.downstream.rejected);
        tracing::debug!(code, errmsg, "refusing a request");
        if more_to_come {
            return Action::Nothing;
        }
        let body = doc! { "ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name };
        self.msg(&body, request_id)
    }

    async fn handle(&mut self, frame: Frame) -> Action {
        DownstreamCounters::add(&self.proxy.downstream.requests);
        match frame.op_code() {
            OpCode::Msg => self.handle_msg(frame).await,
            OpCode::Query => self.handle_query(&frame).await,
            other => malformed(format!("drivers do not send {other:?}")),
        }
    }

    /// OP_QUERY: only the first handshake of some drivers.
    async fn handle_query(&mut self, frame: &Frame) -> Action {
        let query = match frame.op_query() {
            Ok(q) => q,
            Err(e) => return malformed(e),
        };
        let checked = query
            .validate(MAX_REQUEST_DEPTH)
            .and_then(|()| Command::inspect(query.query));
        let body = match checked {
            Ok(command) if query.command_db().is_some() && command.kind == CommandKind::Hello => {
                handshake::reply(&self.proxy, &command, self.connection_id).await
            }
            Ok(command) => doc! {
                "ok": 0.0,
                "errmsg": format!("Unsupported OP_QUERY command: {}. The client driver may require an upgrade.", command.name),
                "code": 352,
                "codeName": "UnsupportedOpQueryCommand",
            },
            Err(e) => {
                let (code, code_name) = match &e {
                    WireError::InvalidBson { .. } => (22, "InvalidBSON"),
                    WireError::FieldType { .. } => (14, "TypeMismatch"),
                    _ => return malformed(e),
                };
                DownstreamCounters::add(&self.proxy.downstream.rejected);
                tracing::debug!(error = %e, "refusing an OP_QUERY");
                doc! { "ok": 0.0, "errmsg": e.to_string(), "code": code, "codeName": code_name }
            }
        };
        let reply_id = self.reply_id();
        let built = RawDocumentBuf::try_from(&body)
            .map_err(|e| e.to_string())
            .and_then(|raw| {
                OpReplyBuilder::new(vec![&raw])
                    .request_id(reply_id)
                    .response_to(frame.request_id())
                    .build()
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok(reply) => Action::Reply(reply),
            Err(e) => malformed(e),
        }
    }

    async fn handle_msg(&mut self, mut frame: Frame) -> Action {
        let request_id = frame.request_id();
        // Parse once to validate everything (the checksum, then every document) before
        // editing the frame.
        let (flags, invalid) = match frame.op_msg() {
            Ok(msg) => (msg.flags, msg.validate(MAX_REQUEST_DEPTH).err()),
            Err(e) => return malformed(e),
        };
        let more_to_come = flags.contains(MsgFlags::MORE_TO_COME);
        if let Some(e) = invalid {
            return self.reject(22, "InvalidBSON", e.to_string(), request_id, more_to_come);
        }
        if let Err(e) = frame
            .strip_checksum()
            .and_then(|()| frame.clear_exhaust_allowed())
        {
            return malformed(e);
        }
        let (request, local) = {
            let msg = match frame.op_msg() {
                Ok(msg) => msg,
                Err(e) => return malformed(e),
            };
            let command = match Command::inspect(msg.body) {
                Ok(c) => c,
                // As the server: `maxTimeMS` of the wrong kind is BadValue, any other field
                // TypeMismatch.
                Err(e @ WireError::FieldType { field, .. }) => {
                    let (code, name) = if field == "maxTimeMS" {
                        (2, "BadValue")
                    } else {
                        (14, "TypeMismatch")
                    };
                    return self.reject(code, name, e.to_string(), request_id, more_to_come);
                }
                Err(e) => return malformed(e),
            };
            let local = match command.kind {
                CommandKind::Hello => {
                    Some(handshake::reply(&self.proxy, &command, self.connection_id).await)
                }
                CommandKind::Auth => Some(handshake::auth_rejection()),
                // The downstream connection has no user to log out (mongo-pool authenticates
                // upstream), and forwarding would log a shared pooled connection out for every
                // client: answered here, as mongod answers a connection with no user.
                CommandKind::Logout => Some(doc! { "ok": 1.0 }),
                _ if command.name == stats::COMMAND => Some(stats::reply(&self.proxy)),
                _ => None,
            };
            if let Some(body) = local {
                (None, Some(body))
            } else {
                match Request::from_command(&command) {
                    Ok(request) => {
                        if command.kind == CommandKind::EndSessions {
                            self.forget_sessions(msg.body);
                        }
                        (Some(request), None)
                    }
                    Err(e) => {
                        let body = doc! { "ok": 0.0, "errmsg": e.to_string(), "code": 2, "codeName": "BadValue" };
                        (None, Some(body))
                    }
                }
            }
        };
        if let Some(body) = local {
            return if more_to_come {
                Action::Nothing
            } else {
                self.msg(&body, request_id)
            };
        }
        let Some(request) = request else {
            return Action::Nothing;
        };
        match self.forward(frame, request, request_id, more_to_come).await {
            // A moreToCome request gets no reply, not even a proxy-side error: the driver
            // reads none, and would take it for the reply to its next request.
            Action::Reply(_) if more_to_come => Action::Nothing,
            action => action,
        }
    }

    fn forget_sessions(&self, body: &bson::RawDocument) {
        if let Ok(Some(bson::RawBsonRef::Array(ids))) = body.get("endSessions") {
            let ids = ids.into_iter().filter_map(|id| match id {
                Ok(bson::RawBsonRef::Document(d)) => SessionId::from_lsid(d),
                _ => None,
            });
            self.proxy.router.ended_sessions(ids);
        }
    }

    /// A proxy-side failure: a retryable error document (no write reached the server). A
    /// `getMore` gets a closed connection instead, as on a direct connection to a member that
    /// went away: drivers resume a change stream on a network error (an error document without
    /// `ResumableChangeStreamError` would end it) and fail a plain cursor cleanly.
    fn proxy_error(
        &mut self,
        request: &Request,
        code: i32,
        code_name: &str,
        errmsg: String,
        request_id: i32,
    ) -> Action {
        DownstreamCounters::add(&self.proxy.downstream.errors);
        if request.kind == CommandKind::GetMore {
            tracing::debug!(
                code,
                errmsg,
                "closing the downstream connection: a getMore whose member cannot be reached"
            );
            return Action::Close(Close::Upstream(errmsg));
        }
        tracing::debug!(
            command = request.name,
            code,
            errmsg,
            "answering with a proxy-side error"
        );
        let labels = proxy_error_labels(request.kind, request.in_transaction);
        let body = doc! { "ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name, "errorLabels": labels };
        self.msg(&body, request_id)
    }

    /// Atlas refuses mongo-pool's credentials, and only a configuration change can fix that:
    /// AuthenticationFailed without retry labels, so the driver reports it at once.
    fn refusal(&mut self, errmsg: String, request_id: i32) -> Action {
        DownstreamCounters::add(&self.proxy.downstream.errors);
        let body =
            doc! { "ok": 0.0, "errmsg": errmsg, "code": 18, "codeName": "AuthenticationFailed" };
        self.msg(&body, request_id)
    }

    /// A `killCursors` naming cursors of several members: one command per member, with only
    /// that member's ids, and one reply merging theirs, as a mongos answers. Ids no member owns
    /// are reported not found; ids whose member cannot be reached, unknown.
    async fn kill_cursors_on_each_member(
        &mut self,
        frame: &Frame,
        request: &Request,
        groups: Vec<(crate::config::HostPort, Vec<i64>)>,
        unknown: Vec<i64>,
        request_id: i32,
    ) -> Action {
        let proxy = Arc::clone(&self.proxy);
        let body = match frame.op_msg() {
            Ok(msg) => msg.body.to_owned(),
            Err(e) => return malformed(e),
        };
        let mut merged: [(&str, Vec<i64>); 4] = [
            ("cursorsKilled", Vec::new()),
            ("cursorsNotFound", unknown),
            ("cursorsAlive", Vec::new()),
            ("cursorsUnknown", Vec::new()),
        ];
        DownstreamCounters::add(&proxy.downstream.forwarded);
        for (address, ids) in groups {
            match self.kill_cursors_on(&body, &address, &ids).await {
                Some(reply) => {
                    for (field, out) in &mut merged {
                        if let Ok(list) = reply.get_array(*field) {
                            out.extend(list.iter().filter_map(|id| match id {
                                bson::Bson::Int64(n) => Some(*n),
                                bson::Bson::Int32(n) => Some(i64::from(*n)),
                                _ => None,
                            }));
                        }
                    }
                }
                None => merged[3].1.extend(ids),
            }
        }
        // Killed or not, none of these cursors is routed again.
        proxy.router.forget_cursors(&request.kill_cursor_ids);
        let mut reply = Document::new();
        for (field, ids) in merged {
            reply.insert(field, ids);
        }
        reply.insert("ok", 1.0);
        self.msg(&reply, request_id)
    }

    /// One member's part of a split `killCursors`: its reply, or `None` when it could not be
    /// reached or answered badly (those cursors are then reported unknown).
    async fn kill_cursors_on(
        &self,
        body: &bson::RawDocument,
        address: &crate::config::HostPort,
        ids: &[i64],
    ) -> Option<Document> {
        let proxy = &self.proxy;
        let mut sub = bson::RawDocumentBuf::new();
        for element in body {
            let (key, value) = element.ok()?;
            if key.as_str() == "cursors" {
                let list: bson::RawArrayBuf = ids.iter().copied().collect();
                sub.append(key, list);
            } else {
                sub.append(key, value);
            }
        }
        let frame = OpMsgBuilder::new(&sub).request_id(0).build().ok()?;
        let server = proxy.topology.server(address)?;
        let deadline = Instant::now() + proxy.options.wait_queue_timeout;
        let mut conn = server.pool.check_out(deadline).await.ok()?;
        let mut reply = match conn.round_trip_within(frame, None).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(%address, error = %e, "killCursors on one member failed");
                return None;
            }
        };
        if reply.op_code() != OpCode::Msg || reply.strip_checksum().is_err() {
            conn.mark_broken(BrokenReason::Protocol);
            return None;
        }
        let msg = reply.op_msg().ok()?;
        mongo_pool_wire::validate::document(msg.body, MAX_REQUEST_DEPTH).ok()?;
        Document::try_from(msg.body).ok()
    }

    /// The driver closed its connection before `request` was answered: nothing to reply to.
    fn abandoned(&self, request: &Request, when: &'static str) -> Action {
        DownstreamCounters::add(&self.proxy.downstream.abandoned);
        tracing::debug!(
            command = request.name,
            when,
            "the driver closed its connection mid-request; abandoning the request"
        );
        Action::Close(Close::DownstreamGone)
    }

    async fn forward(
        &mut self,
        mut frame: Frame,
        request: Request,
        request_id: i32,
        more_to_come: bool,
    ) -> Action {
        let proxy = Arc::clone(&self.proxy);
        proxy
            .router
            .set_sharded(proxy.topology.kind() == TopologyKind::Sharded);
        let mut target = proxy.router.target(&request);
        // A sharded transaction's commit or abort whose mongos is gone goes to another mongos,
        // as drivers do (the commit carries the transaction's `recoveryToken`).
        if let Target::Pinned(address) = &target
            && matches!(
                request.kind,
                CommandKind::CommitTransaction | CommandKind::AbortTransaction
            )
            && proxy
                .topology
                .server(address)
                .is_none_or(|server| server.kind().is_none())
        {
            target = Target::Select(ReadPreferenceMode::Primary);
        }
        if request.kind == CommandKind::KillCursors {
            let (groups, unknown) = proxy
                .router
                .kill_cursors_by_member(&request.kill_cursor_ids);
            if groups.len() > 1 {
                return self
                    .kill_cursors_on_each_member(&frame, &request, groups, unknown, request_id)
                    .await;
            }
        }
        let server = match target {
            Target::UnknownCursor(id) => {
                let body = doc! { "ok": 0.0, "errmsg": format!("cursor id {id} not found"), "code": 43, "codeName": "CursorNotFound" };
                return self.msg(&body, request_id);
            }
            Target::Pinned(address) => match proxy.topology.server(&address) {
                Some(server) => server,
                None if request.in_transaction => {
                    let body = doc! {
                        "ok": 0.0, "errmsg": format!("the member {address} running this transaction is gone"),
                        "code": 251, "codeName": "NoSuchTransaction", "errorLabels": ["TransientTransactionError"],
                    };
                    return self.msg(&body, request_id);
                }
                None if request.kind == CommandKind::GetMore => {
                    return self.proxy_error(
                        &request,
                        6,
                        "HostUnreachable",
                        format!("the member {address} holding this cursor is gone"),
                        request_id,
                    );
                }
                None => {
                    let body = doc! { "ok": 0.0, "errmsg": format!("the member {address} holding this cursor is gone"), "code": 43, "codeName": "CursorNotFound" };
                    return self.msg(&body, request_id);
                }
            },
            Target::Select(mode) => {
                let deadline = Instant::now() + proxy.options.server_selection_timeout;
                match proxy.topology.select(mode, deadline).await {
                    Ok(server) => server,
                    Err(SelectionError::Closed) => {
                        return self.proxy_error(
                            &request,
                            91,
                            "ShutdownInProgress",
                            "mongo-pool is shutting down".into(),
                            request_id,
                        );
                    }
                    Err(e) => {
                        return self.proxy_error(
                            &request,
                            6,
                            "HostUnreachable",
                            format!("mongo-pool: {e}"),
                            request_id,
                        );
                    }
                }
            }
        };
        let deadline = Instant::now() + proxy.options.wait_queue_timeout;
        let mut conn = match server.pool.check_out(deadline).await {
            Ok(conn) => conn,
            Err(e @ CheckoutError::Timeout { .. }) => {
                return self.proxy_error(
                    &request,
                    89,
                    "NetworkTimeout",
                    format!("mongo-pool: {e}"),
                    request_id,
                );
            }
            Err(e @ CheckoutError::Closed(_)) => {
                return self.proxy_error(
                    &request,
                    91,
                    "ShutdownInProgress",
                    format!("mongo-pool: {e}"),
                    request_id,
                );
            }
            Err(CheckoutError::Connect(e)) if e.refused_by().is_some() => {
                return self.refusal(
                    format!("mongo-pool could not authenticate to Atlas: {e}"),
                    request_id,
                );
            }
            Err(CheckoutError::Connect(e)) => {
                if !e.is_auth() {
                    proxy.topology.report(&server.address, Failure::Network);
                }
                return self.proxy_error(
                    &request,
                    6,
                    "HostUnreachable",
                    format!("mongo-pool could not connect to Atlas: {e}"),
                    request_id,
                );
            }
        };
        if !more_to_come && self.gone.is_cancelled() {
            // The driver left while this request waited for a member or a connection. Nothing
            // was sent: the connection is clean and returns to the pool.
            drop(conn);
            return self.abandoned(&request, "before it was sent");
        }
        DownstreamCounters::add(&proxy.downstream.forwarded);
        if more_to_come {
            return match conn.send_only(frame).await {
                Ok(()) => Action::Nothing,
                Err(e) => {
                    drop(conn);
                    proxy
                        .topology
                        .report(&server.address, Failure::ConnectionLost);
                    Action::Close(Close::Upstream(e.to_string()))
                }
            };
        }
        let limit = request.max_time_ms.filter(|ms| *ms > 0).map(|ms| {
            std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
                + proxy.options.max_time_margin
        });
        frame.set_request_id(0);
        let gone = self.gone.clone();
        let outcome = tokio::select! {
            biased;
            () = gone.cancelled() => None,
            outcome = conn.round_trip_within(frame, limit) => Some(outcome),
        };
        let Some(outcome) = outcome else {
            // Its reply (or part of the request) may be on the wire, and the server must kill
            // the operation: the connection is closed, never checked in. Not a member failure.
            conn.mark_broken(BrokenReason::DownstreamGone);
            drop(conn);
            return self.abandoned(&request, "while it ran upstream");
        };
        let mut reply = match outcome {
            Ok(reply) => reply,
            Err(e) => {
                // That connection is broken and goes; the member keeps its state and its pool
                // (a timeout included): one request must not clear the pool for everyone.
                drop(conn);
                proxy
                    .topology
                    .report(&server.address, Failure::ConnectionLost);
                return Action::Close(Close::Upstream(e.to_string()));
            }
        };
        if reply.op_code() != OpCode::Msg || reply.strip_checksum().is_err() {
            conn.mark_broken(BrokenReason::Protocol);
            return Action::Close(Close::Upstream(
                "the server's reply is not an OP_MSG".into(),
            ));
        }
        let state_change = {
            let parsed = reply.op_msg().and_then(|msg| Reply::inspect(msg.body));
            match parsed {
                Ok(view) => {
                    proxy
                        .router
                        .set_sharded(proxy.topology.kind() == TopologyKind::Sharded);
                    proxy.router.learn(&request, &view, &server.address);
                    view.code
                        .filter(|c| !view.ok && STATE_CHANGE_CODES.contains(c))
                        .or(view
                            .write_concern_error_code
                            .filter(|c| STATE_CHANGE_CODES.contains(c)))
                }
                Err(e) => {
                    conn.mark_broken(BrokenReason::Protocol);
                    return Action::Close(Close::Upstream(format!(
                        "the server's reply is malformed: {e}"
                    )));
                }
            }
        };
        drop(conn);
        if let Some(code) = state_change {
            // Find the new primary now, so the driver's single retry lands on it.
            proxy
                .topology
                .report(&server.address, Failure::StateChange(code));
        }
        let reply_id = self.reply_id();
        reply.set_request_id(reply_id);
        reply.set_response_to(request_id);
        Action::Reply(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_mongo_pool_could_not_deliver_is_unknown_never_transient() {
        let labels = proxy_error_labels(CommandKind::CommitTransaction, true);
        assert!(
            labels.contains(&"UnknownTransactionCommitResult"),
            "{labels:?}"
        );
        assert!(labels.contains(&"RetryableWriteError"), "{labels:?}");
        assert!(!labels.contains(&"TransientTransactionError"), "{labels:?}");
        let abort = proxy_error_labels(CommandKind::AbortTransaction, true);
        assert!(!abort.contains(&"TransientTransactionError"), "{abort:?}");
    }

    #[test]
    fn a_statement_of_a_transaction_is_transient_and_others_retryable() {
        assert_eq!(
            proxy_error_labels(CommandKind::Other, true),
            vec!["TransientTransactionError"]
        );
        assert_eq!(
            proxy_error_labels(CommandKind::Other, false),
            vec!["RetryableWriteError", "NoWritesPerformed"]
        );
    }
}
