//! One client connection to a member: frames in, replies out. OP_MSG for every command,
//! OP_QUERY only for the handshake (answered with OP_REPLY), `moreToCome` requests unanswered.
//! The control API can close the connection or blackhole it (stop reading and answering
//! without closing, as a silently dropped network path behaves).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bson::{Bson, Document, RawDocumentBuf};
use futures_util::{SinkExt, StreamExt};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::CommandKind;
use mongo_pool_wire::{Frame, MsgFlags, OpCode, OpMsgBuilder, OpReplyBuilder, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, ConnControl};
use super::commands::{self, Connection};
use super::reply::{CommandReply, error};

/// Why a connection ended, for the log.
#[derive(Debug)]
enum End {
    ClientClosed,
    Dropped,
    Idle,
    Protocol(String),
    Io(String),
    FailPoint,
}

/// Serves one accepted (and, with TLS, handshaken) connection until it ends.
pub async fn serve<S>(cluster: Arc<Cluster>, member: usize, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connection_id = cluster.next_connection_id();
    let key = u64::try_from(connection_id).unwrap_or_default();
    let close = CancellationToken::new();
    let (blackhole_tx, blackhole) = watch::channel(None);
    cluster.register_connection(
        key,
        ConnControl {
            close: close.clone(),
            blackhole: blackhole_tx,
        },
    );
    let m = &cluster.members[member];
    m.connections_current.fetch_add(1, Ordering::Relaxed);
    m.connections_total.fetch_add(1, Ordering::Relaxed);

    let end = run(&cluster, member, connection_id, stream, &close, blackhole).await;
    match &end {
        End::Protocol(cause) => {
            tracing::warn!(
                member = m.key,
                connection_id,
                cause,
                "closing a connection that broke the protocol"
            );
        }
        End::Io(cause) => {
            tracing::debug!(member = m.key, connection_id, cause, "connection failed")
        }
        other => tracing::debug!(member = m.key, connection_id, end = ?other, "connection ended"),
    }

    m.connections_current.fetch_sub(1, Ordering::Relaxed);
    cluster.unregister_connection(key);
}

/// Waits while the connection is blackholed. Returns false if it was closed meanwhile.
async fn sit_out_blackhole(
    blackhole: &mut watch::Receiver<Option<Instant>>,
    close: &CancellationToken,
) -> bool {
    loop {
        let until = *blackhole.borrow_and_update();
        match until {
            Some(until) if until > Instant::now() => {
                tokio::select! {
                    () = close.cancelled() => return false,
                    () = tokio::time::sleep_until(until.into()) => {}
                    _ = blackhole.changed() => {}
                }
            }
            _ => return true,
        }
    }
}

async fn run<S>(
    cluster: &Arc<Cluster>,
    member: usize,
    connection_id: i64,
    stream: S,
    close: &CancellationToken,
    mut blackhole: watch::Receiver<Option<Instant>>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Split so that the connection keeps reading while a command runs: that is how a server
    // notices a client that disconnects mid-command (and kills a read, see `operations`).
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read_half, MessageCodec::default());
    let mut writer = FramedWrite::new(write_half, MessageCodec::default());
    let mut conn = Connection::new(member, connection_id);
    let mut next_request_id: i32 = 1;
    // A request that arrived while the previous one ran (clients rarely pipeline).
    let mut pending: Option<Frame> = None;
    let idle = cluster.settings.idle_disconnect;
    loop {
        if !sit_out_blackhole(&mut blackhole, close).await {
            return End::Dropped;
        }
        let idle_timer = async {
            match idle {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let frame = match pending.take() {
            Some(frame) => frame,
            None => tokio::select! {
                () = close.cancelled() => return End::Dropped,
                _ = blackhole.changed() => continue,
                () = idle_timer => return End::Idle,
                next = reader.next() => match next {
                    None => return End::ClientClosed,
                    Some(Err(WireError::Io(e))) => return End::Io(e.to_string()),
                    Some(Err(e)) => return End::Protocol(e.to_string()),
                    Some(Ok(frame)) => frame,
                },
            },
        };
        let client_gone = CancellationToken::new();
        conn.client_gone = client_gone.clone();
        let reply = {
            let answering = answer(cluster, &mut conn, frame);
            tokio::pin!(answering);
            loop {
                tokio::select! {
                    () = close.cancelled() => return End::Dropped,
                    reply = &mut answering => break reply,
                    next = reader.next(), if !client_gone.is_cancelled() && pending.is_none() => {
                        match next {
                            Some(Ok(frame)) => pending = Some(frame),
                            // EOF or a broken stream: the client is gone. A read is killed; any
                            // other command runs to completion, as on a server.
                            None | Some(Err(_)) => client_gone.cancel(),
                        }
                    }
                }
            }
        };
        if client_gone.is_cancelled() {
            return End::ClientClosed;
        }
        let reply = match reply {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(end) => return end,
        };
        if !sit_out_blackhole(&mut blackhole, close).await {
            return End::Dropped;
        }
        let mut reply = reply;
        reply.set_request_id(next_request_id);
        next_request_id = next_request_id.wrapping_add(1);
        if let Err(e) = writer.send(reply).await {
            return End::Io(e.to_string());
        }
    }
}

/// Runs the request in `frame`; the reply frame to send, if any.
async fn answer(
    cluster: &Arc<Cluster>,
    conn: &mut Connection,
    frame: Frame,
) -> Result<Option<Frame>, End> {
    let frame = frame
        .decompress(mongo_pool_wire::MAX_MESSAGE_SIZE)
        .map_err(|e| End::Protocol(e.to_string()))?;
    let request_id = frame.request_id();
    match frame.op_code() {
        OpCode::Msg => {
            let msg = frame.op_msg().map_err(|e| End::Protocol(e.to_string()))?;
            let more_to_come = msg.flags.contains(MsgFlags::MORE_TO_COME);
            let mut command =
                Document::try_from(msg.body).map_err(|e| End::Protocol(e.to_string()))?;
            for sequence in &msg.sequences {
                let docs = sequence
                    .documents()
                    .map(|d| Document::try_from(d).map(Bson::Document))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| End::Protocol(e.to_string()))?;
                command.insert(sequence.identifier, docs);
            }
            if !command.contains_key("$db") {
                // Counted as received, like every command `commands::handle` runs.
                if let Some(name) = command.keys().next() {
                    cluster.members[conn.member].count_command(name);
                }
                let reply = error(
                    40571,
                    "Location40571",
                    "OP_MSG requests require a $db argument",
                    &[],
                );
                return encode_msg(cluster, reply, request_id).map(Some);
            }
            let reply = commands::handle(cluster, conn, command).await;
            if more_to_come {
                return if matches!(reply, CommandReply::Close) {
                    Err(End::FailPoint)
                } else {
                    Ok(None)
                };
            }
            encode_msg(cluster, reply, request_id).map(Some)
        }
        OpCode::Query => {
            let query = frame.op_query().map_err(|e| End::Protocol(e.to_string()))?;
            let mut command =
                Document::try_from(query.query).map_err(|e| End::Protocol(e.to_string()))?;
            let name = command.keys().next().cloned().unwrap_or_default();
            let db = query.command_db().map(str::to_owned);
            let reply = match db {
                Some(db) if CommandKind::of(&name) == CommandKind::Hello => {
                    command.insert("$db", db);
                    commands::handle(cluster, conn, command).await
                }
                _ => {
                    cluster.members[conn.member].count_command(&name);
                    error(
                        352,
                        "UnsupportedOpQueryCommand",
                        &format!(
                            "Unsupported OP_QUERY command: {name}. The client driver may require an upgrade."
                        ),
                        &[],
                    )
                }
            };
            let Some(body) = reply.into_document(cluster.gossip()) else {
                return Err(End::FailPoint);
            };
            let raw = RawDocumentBuf::try_from(&body).map_err(|e| End::Protocol(e.to_string()))?;
            OpReplyBuilder::new(vec![&raw])
                .response_to(request_id)
                .build()
                .map(Some)
                .map_err(|e| End::Protocol(e.to_string()))
        }
        other => Err(End::Protocol(format!(
            "unexpected op code {other:?} from a client"
        ))),
    }
}

fn encode_msg(cluster: &Cluster, reply: CommandReply, request_id: i32) -> Result<Frame, End> {
    let Some(body) = reply.into_document(cluster.gossip()) else {
        return Err(End::FailPoint);
    };
    let raw = RawDocumentBuf::try_from(&body).map_err(|e| End::Protocol(e.to_string()))?;
    OpMsgBuilder::new(&raw)
        .response_to(request_id)
        .build()
        .map_err(|e| End::Protocol(e.to_string()))
}
