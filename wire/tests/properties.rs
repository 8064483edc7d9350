//! Properties over generated messages:
//! (a) build -> codec decode -> parse gives back what was built, and re-encoding the parsed
//!     message gives identical bytes (encode . decode = identity);
//! (b) the codec and every parser return, never panic, on arbitrary bytes, including arbitrary
//!     bytes behind a valid header and valid messages with bytes overwritten;
//! (c) changing any one byte of a checksummed message is detected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bson::{Bson, Document, RawDocument, RawDocumentBuf};
use bytes::BytesMut;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::{Command, Reply};
use mongo_pool_wire::{
    Compressor, Frame, MAX_MESSAGE_SIZE, MsgFlags, OpCompressed, OpMsg, OpMsgBuilder, OpQuery,
    OpQueryBuilder, OpReply, OpReplyBuilder,
};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

// ------------------------------------------------------------------------------- generators

fn key() -> impl Strategy<Value = String> {
    "[a-zA-Z$_][a-zA-Z0-9_.]{0,8}"
}

fn value() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        "[ -~]{0,16}".prop_map(Bson::String),
        Just(Bson::Null),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec((key(), inner.clone()), 0..4)
                .prop_map(|fields| Bson::Document(fields.into_iter().collect())),
            prop::collection::vec(inner, 0..4).prop_map(Bson::Array),
        ]
    })
}

fn document() -> impl Strategy<Value = RawDocumentBuf> {
    prop::collection::vec((key(), value()), 0..6).prop_map(|fields| {
        let doc: Document = fields.into_iter().collect();
        RawDocumentBuf::try_from(&doc).unwrap()
    })
}

/// Flags a valid OP_MSG may carry (checksumPresent is the builder's to set).
fn flags() -> impl Strategy<Value = MsgFlags> {
    (any::<u16>(), any::<bool>()).prop_map(|(high, more)| {
        MsgFlags::from_bits((u32::from(high) << 16) | (u32::from(more) << 1))
    })
}

fn sequences() -> impl Strategy<Value = Vec<(String, Vec<RawDocumentBuf>)>> {
    prop::collection::vec(
        ("[a-zA-Z]{0,10}", prop::collection::vec(document(), 0..4)),
        0..3,
    )
}

#[derive(Debug, Clone)]
struct MsgSpec {
    request_id: i32,
    response_to: i32,
    flags: MsgFlags,
    body: RawDocumentBuf,
    sequences: Vec<(String, Vec<RawDocumentBuf>)>,
    checksum: bool,
}

fn msg_spec() -> impl Strategy<Value = MsgSpec> {
    (
        any::<i32>(),
        any::<i32>(),
        flags(),
        document(),
        sequences(),
        any::<bool>(),
    )
        .prop_map(
            |(request_id, response_to, flags, body, sequences, checksum)| MsgSpec {
                request_id,
                response_to,
                flags,
                body,
                sequences,
                checksum,
            },
        )
}

fn build(spec: &MsgSpec) -> Frame {
    let mut builder = OpMsgBuilder::new(&spec.body)
        .request_id(spec.request_id)
        .response_to(spec.response_to)
        .flags(spec.flags)
        .checksum(spec.checksum);
    for (identifier, docs) in &spec.sequences {
        builder = builder.sequence(identifier, docs.iter().map(|d| d.as_ref()).collect());
    }
    builder.build().unwrap()
}

fn decode_all(bytes: &[u8]) -> Vec<Frame> {
    let mut codec = MessageCodec::default();
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        frames.push(frame);
    }
    frames
}

/// Everything a proxy might do with a frame; results are ignored, only panics matter.
fn exercise(frame: &Frame) {
    let _ = frame.header();
    if let Ok(msg) = frame.op_msg() {
        inspect_command(msg.body);
        let _ = Reply::inspect(msg.body);
        for seq in &msg.sequences {
            for doc in seq.documents() {
                let _ = Command::inspect(doc);
            }
        }
    }
    if let Ok(query) = frame.op_query() {
        inspect_command(query.query);
        let _ = query.command_db();
    }
    if let Ok(reply) = frame.op_reply() {
        for doc in reply.documents {
            inspect_reply(doc);
        }
    }
    let _ = frame.op_compressed();
    let _ = frame.msg_flags();
    let mut edited = frame.clone();
    let _ = edited.clear_exhaust_allowed();
    let _ = edited.strip_checksum();
    let _ = edited.append_checksum();
    edited.set_request_id(1);
    edited.set_response_to(2);
    if let Ok(plain) = frame.clone().decompress(MAX_MESSAGE_SIZE)
        && plain.op_code() != frame.op_code()
    {
        exercise(&plain);
    }
}

fn inspect_command(doc: &RawDocument) {
    if let Ok(command) = Command::inspect(doc) {
        let _ = command.read_preference_mode();
        let _ = command.kill_cursor_ids();
        let _ = command.in_transaction();
    }
}

fn inspect_reply(doc: &RawDocument) {
    if let Ok(reply) = Reply::inspect(doc) {
        let _ = reply.has_label("RetryableWriteError");
        let _ = reply.labels().count();
    }
}

/// A message: a valid header (right length, the given op code) and then `body`.
fn with_header(op_code: i32, body: &[u8]) -> Vec<u8> {
    let mut out = i32::try_from(16 + body.len())
        .unwrap()
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&op_code.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Arbitrary bytes framed as a BSON document: a right length prefix and a NUL terminator, so
/// `RawDocument::from_bytes` accepts it and the inspectors see the arbitrary elements.
fn as_document(inner: &[u8]) -> Vec<u8> {
    let mut out = i32::try_from(inner.len() + 5)
        .unwrap()
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(inner);
    out.push(0);
    out
}

fn op_code() -> impl Strategy<Value = i32> {
    prop_oneof![Just(1i32), Just(2004), Just(2012), Just(2013)]
}

// --------------------------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// (a) OP_MSG: build -> codec -> parse gives back every field; re-encoding is identical.
    #[test]
    fn op_msg_build_decode_parse_is_identity(spec in msg_spec()) {
        let frame = build(&spec);
        let decoded = decode_all(frame.as_bytes());
        prop_assert_eq!(decoded.len(), 1);
        let decoded = &decoded[0];
        prop_assert_eq!(decoded.request_id(), spec.request_id);
        prop_assert_eq!(decoded.response_to(), spec.response_to);
        let msg = decoded.op_msg().unwrap();
        let expected_flags =
            if spec.checksum { spec.flags.with(MsgFlags::CHECKSUM_PRESENT) } else { spec.flags };
        prop_assert_eq!(msg.flags, expected_flags);
        prop_assert_eq!(msg.checksum.is_some(), spec.checksum);
        prop_assert_eq!(msg.body.as_bytes(), spec.body.as_bytes());
        prop_assert_eq!(msg.sequences.len(), spec.sequences.len());
        for (got, (identifier, docs)) in msg.sequences.iter().zip(&spec.sequences) {
            prop_assert_eq!(got.identifier, identifier.as_str());
            let got_docs: Vec<&[u8]> = got.documents().map(RawDocument::as_bytes).collect();
            let want_docs: Vec<&[u8]> = docs.iter().map(|d| d.as_bytes()).collect();
            prop_assert_eq!(got_docs, want_docs);
        }

        // Re-encode from the parsed view alone.
        let mut builder = OpMsgBuilder::new(msg.body)
            .request_id(decoded.request_id())
            .response_to(decoded.response_to())
            .flags(msg.flags)
            .checksum(msg.checksum.is_some());
        for seq in &msg.sequences {
            builder = builder.sequence(seq.identifier, seq.documents().collect());
        }
        let again = builder.build().unwrap();
        prop_assert_eq!(again.as_bytes(), frame.as_bytes());
        prop_assert_eq!(OpMsg::parse(again.as_bytes()).unwrap(), msg);
    }

    /// (a) OP_QUERY and OP_REPLY: the same identity.
    #[test]
    fn op_query_and_op_reply_build_decode_parse_is_identity(
        request_id in any::<i32>(),
        response_to in any::<i32>(),
        flags in any::<i32>(),
        name in "[a-z]{1,8}\\.\\$cmd",
        query in document(),
        replies in prop::collection::vec(document(), 0..4),
        cursor_id in any::<i64>(),
    ) {
        let frame = OpQueryBuilder::new(&name, &query).request_id(request_id).flags(flags).build().unwrap();
        let decoded = decode_all(frame.as_bytes()).pop().unwrap();
        let parsed = decoded.op_query().unwrap();
        prop_assert_eq!(parsed.flags, flags);
        prop_assert_eq!(parsed.full_collection_name, name.as_str());
        prop_assert_eq!(parsed.query.as_bytes(), query.as_bytes());
        let again = OpQueryBuilder::new(parsed.full_collection_name, parsed.query)
            .request_id(decoded.request_id())
            .flags(parsed.flags)
            .build()
            .unwrap();
        prop_assert_eq!(again.as_bytes(), frame.as_bytes());

        let docs: Vec<&RawDocument> = replies.iter().map(|d| d.as_ref()).collect();
        let frame = OpReplyBuilder::new(docs.clone())
            .request_id(request_id)
            .response_to(response_to)
            .flags(flags)
            .cursor_id(cursor_id)
            .build()
            .unwrap();
        let decoded = decode_all(frame.as_bytes()).pop().unwrap();
        let parsed = decoded.op_reply().unwrap();
        prop_assert_eq!((parsed.flags, parsed.cursor_id), (flags, cursor_id));
        prop_assert_eq!(&parsed.documents, &docs);
        let again = OpReplyBuilder::new(parsed.documents.clone())
            .request_id(decoded.request_id())
            .response_to(decoded.response_to())
            .flags(parsed.flags)
            .cursor_id(parsed.cursor_id)
            .build()
            .unwrap();
        prop_assert_eq!(again.as_bytes(), frame.as_bytes());
    }

    /// (a) Compression is lossless for every compressor.
    #[test]
    fn compress_decompress_is_identity(spec in msg_spec(), id in 0u8..4) {
        let frame = build(&spec);
        let compressor = Compressor::from_id(id).unwrap();
        let compressed = frame.compress(compressor).unwrap();
        let decoded = decode_all(compressed.as_bytes()).pop().unwrap();
        let plain = decoded.decompress(MAX_MESSAGE_SIZE).unwrap();
        prop_assert_eq!(plain.as_bytes(), frame.as_bytes());
    }

    /// (b) The codec and every parser survive arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for frame in decode_all(&bytes) {
            exercise(&frame);
        }
        let _ = OpMsg::parse(&bytes);
        let _ = OpQuery::parse(&bytes);
        let _ = OpReply::parse(&bytes);
        let _ = OpCompressed::parse(&bytes);
        if let Ok(doc) = RawDocument::from_bytes(&bytes) {
            inspect_command(doc);
            inspect_reply(doc);
        }
    }

    /// (b) Arbitrary bytes behind a valid header, for each op code.
    #[test]
    fn arbitrary_body_behind_a_valid_header_never_panics(
        op in op_code(),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let bytes = with_header(op, &body);
        let frames = decode_all(&bytes);
        prop_assert_eq!(frames.len(), 1);
        exercise(&frames[0]);
    }

    /// (b) An OP_COMPRESSED prefix (valid original op code, small size, any compressor id) with
    /// an arbitrary payload: exercises each decompressor on garbage.
    #[test]
    fn arbitrary_compressed_payload_never_panics(
        original in prop_oneof![Just(1i32), Just(2004), Just(2013)],
        size in -20i32..2000,
        id in 0u8..5,
        payload in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut body = original.to_le_bytes().to_vec();
        body.extend_from_slice(&size.to_le_bytes());
        body.push(id);
        body.extend_from_slice(&payload);
        let frames = decode_all(&with_header(2012, &body));
        exercise(&frames[0]);
    }

    /// (b) Arbitrary elements inside a well-framed document reach the inspectors.
    #[test]
    fn inspect_never_panics_on_arbitrary_elements(inner in prop::collection::vec(any::<u8>(), 0..300)) {
        let bytes = as_document(&inner);
        let doc = RawDocument::from_bytes(&bytes).unwrap();
        inspect_command(doc);
        inspect_reply(doc);
    }

    /// (b) Valid messages with a few bytes overwritten: deeper than random bytes get.
    #[test]
    fn corrupted_valid_messages_never_panic(
        spec in msg_spec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = build(&spec).as_bytes().to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        for frame in decode_all(&bytes) {
            exercise(&frame);
        }
        let _ = OpMsg::parse(&bytes);
    }

    /// (c) Any one-byte change to a checksummed message is detected.
    #[test]
    fn one_byte_change_to_a_checksummed_message_is_detected(
        spec in msg_spec(),
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let spec = MsgSpec { checksum: true, ..spec };
        let mut bytes = build(&spec).as_bytes().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= delta;
        let parsed = Frame::from_bytes(BytesMut::from(&bytes[..]), MAX_MESSAGE_SIZE)
            .and_then(|frame| frame.op_msg().map(|_| ()));
        prop_assert!(parsed.is_err(), "byte {} changed by {:#x} went unnoticed", i, delta);
    }
}
