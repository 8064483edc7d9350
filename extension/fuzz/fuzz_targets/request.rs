//! The whole request path with deep and oversized BSON: bytes as a downstream client would send
//! them are framed, OP_COMPRESSED is refused, the OP_MSG is parsed, every document is validated
//! (nesting capped at `MAX_REQUEST_DEPTH`), and only then inspected, turned into a routing
//! `Request` and routed, with the reply learnt as the server's `ok: 1`.
//!
//! Random bytes rarely nest deep or grow large, so each input is also grown: its first byte
//! picks how deep to nest the rest (as a document) under `lsid` and under a field of the command
//! (up to 16,320 levels), and how far to pad an `lsid` (up to 1 MiB); those requests go through
//! the same path.
//!
//! Checked besides not crashing (a stack overflow is a crash): whatever the validator accepts,
//! `bson` converts (the validator is never laxer than the library that later reads the
//! document); nothing beyond the cap is accepted; only driver-shaped session ids are remembered,
//! and never more than the router's bounds.
#![no_main]

use bson::{Document, RawDocument, RawDocumentBuf};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mongo_pool::config::HostPort;
use mongo_pool::route::{MAX_SESSIONS, Request, Router, SessionId};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::{Command, Reply};
use mongo_pool_wire::validate::{self, MAX_REQUEST_DEPTH, Problem};
use mongo_pool_wire::{Frame, OpCode, OpMsgBuilder};
use tokio_util::codec::Decoder;

/// Large enough for a padded `lsid` of 1 MiB and its command.
const MAX_MESSAGE_SIZE: usize = 2 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let router = Router::default();
    let ok = bson::rawdoc! { "ok": 1.0 };
    let ok = Reply::inspect(&ok).expect("a plain ok reply inspects");
    let member = HostPort {
        host: "127.0.0.1".into(),
        port: 27017,
    };

    // The bytes as frames, back to back.
    let mut codec = MessageCodec::new(MAX_MESSAGE_SIZE);
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let _ = request(&router, &frame, &ok, &member);
    }

    // The bytes grown deep and large.
    let inner = RawDocument::from_bytes(rest)
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_else(|_| vec![5, 0, 0, 0, 0]);
    let depth = usize::from(shape) * 64;
    let deep = nest(&inner, depth);
    let pad = (usize::from(shape) << 12).min(1 << 20);
    let filler = "x".repeat(pad);
    let bodies = [
        with_field("lsid", &deep),
        with_field("filter", &deep),
        bson::rawdoc! {
            "find": "c", "$db": "db",
            "lsid": { "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![shape; 16] }, "pad": filler.as_str() },
        },
    ];
    // The command, `depth` wrappers and the input's document: one level each.
    let too_deep = depth + 2 > MAX_REQUEST_DEPTH;
    for (i, body) in bodies.iter().enumerate() {
        let frame = OpMsgBuilder::new(body)
            .build()
            .expect("a grown request fits the message size");
        let accepted = request(&router, &frame, &ok, &member);
        if i < 2 && too_deep {
            assert!(!accepted, "{} levels were accepted", depth + 2);
            let msg = frame.op_msg().expect("built whole");
            assert!(matches!(
                validate::document(msg.body, MAX_REQUEST_DEPTH),
                Err(e) if e.problem == Problem::TooDeep(MAX_REQUEST_DEPTH)
            ));
        }
    }
    let (_, _, sessions) = router.sizes();
    assert!(sessions <= MAX_SESSIONS);
    for id in router.live_sessions() {
        let doc = RawDocumentBuf::try_from(&id.to_document()).expect("a session id is BSON");
        assert_eq!(SessionId::from_lsid(&doc), Some(id));
    }
});

/// What a session does with one frame before anything goes upstream; whether its BSON was
/// accepted.
fn request(router: &Router, frame: &Frame, ok: &Reply<'_>, member: &HostPort) -> bool {
    if frame.op_code() == OpCode::Compressed {
        // Refused at the header: never inflated.
        return false;
    }
    let Ok(msg) = frame.op_msg() else {
        return false;
    };
    if msg.validate(MAX_REQUEST_DEPTH).is_err() {
        return false;
    }
    // Accepted: `bson` must agree, and the conversion is bounded by the cap.
    Document::try_from(msg.body).expect("a document the validator accepts converts");
    for sequence in &msg.sequences {
        for doc in sequence.documents() {
            Document::try_from(doc).expect("a sequence document the validator accepts converts");
        }
    }
    let Ok(command) = Command::inspect(msg.body) else {
        return true;
    };
    let Ok(request) = Request::from_command(&command) else {
        return true;
    };
    if let Some(lsid) = command.lsid {
        assert_eq!(request.lsid, SessionId::from_lsid(lsid));
        assert!(request.lsid.is_none() || lsid.as_bytes().len() <= mongo_pool::route::MAX_LSID_SIZE);
        assert!(validate::document(lsid, MAX_REQUEST_DEPTH).is_ok());
    }
    let _ = router.target(&request);
    router.learn(&request, ok, member);
    true
}

/// `{find: "c", $db: "db", <name>: <doc>}`, from raw bytes.
fn with_field(name: &str, doc: &[u8]) -> RawDocumentBuf {
    let mut bytes = Vec::with_capacity(doc.len() + 64);
    bytes.extend_from_slice(&[0; 4]);
    bytes.push(0x02);
    bytes.extend_from_slice(b"find\0");
    bytes.extend_from_slice(&2i32.to_le_bytes());
    bytes.extend_from_slice(b"c\0");
    bytes.push(0x02);
    bytes.extend_from_slice(b"$db\0");
    bytes.extend_from_slice(&3i32.to_le_bytes());
    bytes.extend_from_slice(b"db\0");
    bytes.push(0x03);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(doc);
    bytes.push(0);
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    RawDocumentBuf::from_bytes(bytes).expect("framed by construction")
}

/// `{a: {a: ... doc ...}}`, `levels` documents around `doc`, built without recursion.
fn nest(doc: &[u8], levels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len() + levels * 8);
    for _ in 0..levels {
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&[0x03, b'a', 0]);
    }
    out.extend_from_slice(doc);
    // Close from the inside out, writing each length once its end is known.
    for level in (0..levels).rev() {
        out.push(0);
        let start = level * 7;
        let len = i32::try_from(out.len() - start).unwrap_or(i32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
    out
}
