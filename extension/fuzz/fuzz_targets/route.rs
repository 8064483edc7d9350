//! Bytes as a downstream driver would send them, through what a session does with a request
//! before anything goes upstream: framing, decompression, the op-code check, the checksum and
//! flag edits, the command inspector, then either the local handshake (a `hello`/`isMaster`
//! answered as a mongos, an authentication refused) or the routing state (`Request`,
//! `Router::target`, `Router::learn`).
//!
//! One `Router` lives for the whole input, so a sequence of frames drives its cursor,
//! transaction and session maps the way a connection would. Each OP_MSG body is also read as
//! the upstream's reply to that request (cursor ids, `ok`, codes) and as an upstream `hello`
//! (which later handshakes are answered from), so mutations reach those parsers too.
//!
//! Checked besides not crashing: every handshake reply can be sent (it converts to BSON and
//! frames as OP_MSG or OP_REPLY); a frame that parsed before the checksum and flag edits still
//! parses after them; a cursor the router learned goes back to the member that opened it, and
//! a killed one is unknown; a `getMore` is never routed by read preference.
#![no_main]

use bson::{Document, RawDocumentBuf, oid::ObjectId};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mongo_pool::config::HostPort;
use mongo_pool::handshake;
use mongo_pool::route::{Request, Router, SessionId, Target};
use mongo_pool::upstream::handshake::{HelloReply, ServerKind};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::{Command, CommandKind, Reply};
use mongo_pool_wire::validate::MAX_REQUEST_DEPTH;
use mongo_pool_wire::{Frame, OpCode, OpMsgBuilder, OpReplyBuilder};
use tokio_util::codec::Decoder;

/// Small enough that decompression claims stay cheap, large enough for real messages.
const MAX_MESSAGE_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut state = State {
        router: Router::default(),
        upstream: primary_hello(),
        service_id: ObjectId::from_bytes([7; 12]),
    };
    let mut codec = MessageCodec::new(MAX_MESSAGE_SIZE);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        state.request(frame);
    }
    for id in state.router.live_sessions() {
        let lsid = RawDocumentBuf::try_from(&id.to_document()).expect("a session id is BSON");
        assert_eq!(SessionId::from_lsid(&lsid), Some(id));
    }
});

struct State {
    router: Router,
    upstream: HelloReply,
    service_id: ObjectId,
}

/// What a replica-set primary's `hello` says before any input changes it.
fn primary_hello() -> HelloReply {
    HelloReply {
        kind: ServerKind::Primary,
        set_name: Some("rs".into()),
        hosts: vec!["a:27017".into()],
        primary: Some("a:27017".into()),
        me: Some("a:27017".into()),
        election_id: None,
        set_version: Some(1),
        min_wire_version: 0,
        max_wire_version: 25,
        max_bson_object_size: 16 * 1024 * 1024,
        max_message_size_bytes: 48_000_000,
        max_write_batch_size: 100_000,
        logical_session_timeout_minutes: Some(30),
        connection_id: Some(1),
    }
}

fn member(request_id: i32) -> HostPort {
    HostPort {
        host: "127.0.0.1".into(),
        port: 27017 + request_id.rem_euclid(3) as u16,
    }
}

impl State {
    fn request(&mut self, frame: Frame) {
        let Ok(mut frame) = frame.decompress(MAX_MESSAGE_SIZE) else {
            return;
        };
        match frame.op_code() {
            OpCode::Query => self.query(&frame),
            OpCode::Msg => {
                if frame.op_msg().is_err() {
                    return;
                }
                let edited = frame
                    .strip_checksum()
                    .and_then(|()| frame.clear_exhaust_allowed());
                if edited.is_err() {
                    return;
                }
                let msg = match frame.op_msg() {
                    Ok(msg) => msg,
                    Err(e) => panic!("a valid OP_MSG no longer parses after the edits: {e}"),
                };
                // As a session does: nothing invalid (or deeper than the cap) goes further.
                if msg.validate(MAX_REQUEST_DEPTH).is_err() {
                    return;
                }
                let Ok(command) = Command::inspect(msg.body) else {
                    return;
                };
                if let Ok(doc) = Document::try_from(msg.body)
                    && let Ok(hello) = HelloReply::parse(&doc)
                {
                    self.upstream = hello;
                }
                let reply = Reply::inspect(msg.body).ok();
                self.command(&command, reply.as_ref(), frame.request_id());
            }
            _ => {}
        }
    }

    /// OP_QUERY: only a handshake is answered (with OP_REPLY).
    fn query(&self, frame: &Frame) {
        let Ok(query) = frame.op_query() else {
            return;
        };
        let Ok(command) = Command::inspect(query.query) else {
            return;
        };
        if query.command_db().is_some() && command.kind == CommandKind::Hello {
            let body = handshake::mongos_reply(&command, 1, &self.upstream, self.service_id);
            let raw = RawDocumentBuf::try_from(&body).expect("a handshake reply is valid BSON");
            OpReplyBuilder::new(vec![&raw])
                .response_to(frame.request_id())
                .build()
                .expect("a handshake reply frames as OP_REPLY");
        }
    }

    fn command(&self, command: &Command<'_>, reply: Option<&Reply<'_>>, request_id: i32) {
        match command.kind {
            CommandKind::Hello => {
                let body = handshake::mongos_reply(command, 1, &self.upstream, self.service_id);
                sendable(&body, request_id);
                return;
            }
            CommandKind::Auth => {
                sendable(&handshake::auth_rejection(), request_id);
                return;
            }
            // Answered locally with `{ok: 1}`: never routed.
            CommandKind::Logout => return,
            _ => {}
        }
        let Ok(request) = Request::from_command(command) else {
            return;
        };
        if let Some(lsid) = request.lsid {
            self.router.saw_session(lsid);
        }
        let target = self.router.target(&request);
        match (request.kind, &target) {
            (CommandKind::GetMore, Target::Select(_)) => {
                panic!("a getMore was routed by read preference: {request:?}")
            }
            (_, Target::UnknownCursor(_)) => assert_eq!(request.kind, CommandKind::GetMore),
            _ => {}
        }
        let Some(reply) = reply else {
            return;
        };
        let address = match target {
            Target::Pinned(address) => address,
            _ => member(request_id),
        };
        self.router.learn(&request, reply, &address);
        match request.kind {
            CommandKind::KillCursors => {
                for id in &request.kill_cursor_ids {
                    assert_eq!(
                        self.router.target(&get_more(*id)),
                        Target::UnknownCursor(*id),
                        "a killed cursor is still routed"
                    );
                }
            }
            CommandKind::GetMore => {}
            _ => {
                if let Some(id) = reply.cursor_id.filter(|id| *id != 0) {
                    assert_eq!(
                        self.router.target(&get_more(id)),
                        Target::Pinned(address),
                        "a new cursor's getMore must reach the member that opened it"
                    );
                }
            }
        }
    }
}

/// A reply the session builds locally must convert to BSON and frame as OP_MSG.
fn sendable(body: &Document, request_id: i32) {
    let raw = RawDocumentBuf::try_from(body).expect("a local reply is valid BSON");
    OpMsgBuilder::new(&raw)
        .response_to(request_id)
        .build()
        .expect("a local reply frames as OP_MSG");
}

fn get_more(id: i64) -> Request {
    Request {
        name: "getMore".into(),
        kind: CommandKind::GetMore,
        get_more_cursor_id: Some(id),
        kill_cursor_ids: Vec::new(),
        lsid: None,
        txn_number: None,
        start_transaction: false,
        in_transaction: false,
        read_preference: None,
        max_time_ms: None,
    }
}
