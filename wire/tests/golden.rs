//! Golden byte fixtures written out by hand from the wire-protocol spec (PROTOCOL.md, "Framing").
//! Every fixture is parsed and each field checked, then rebuilt with the crate's builders and
//! compared byte for byte. None of the expected bytes come from the crate itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bson::{RawBsonRef, RawDocument, rawdoc};
use bytes::BytesMut;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::{Command, CommandKind, Reply};
use mongo_pool_wire::{
    Compressor, Frame, MAX_MESSAGE_SIZE, MsgFlags, OpCode, OpMsgBuilder, OpQueryBuilder,
    OpReplyBuilder,
};
use tokio_util::codec::Decoder;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one bit at a time: independent of the
/// table-driven/SSE4.2 implementation the crate uses.
fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn frame(bytes: &[u8]) -> Frame {
    Frame::from_bytes(BytesMut::from(bytes), MAX_MESSAGE_SIZE).unwrap()
}

/// Decodes `bytes` through the codec: exactly one frame, nothing left over.
fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = MessageCodec::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    frame
}

// ---------------------------------------------------------------------------------------------
// {ping: 1, $db: "admin"}

/// BSON `{ping: 1, $db: "admin"}`: 30 bytes.
const PING_DOC: &[u8] = &[
    0x1e, 0x00, 0x00, 0x00, // document length 30
    0x10, b'p', b'i', b'n', b'g', 0x00, // int32 "ping"
    0x01, 0x00, 0x00, 0x00, // 1
    0x02, b'$', b'd', b'b', 0x00, // string "$db"
    0x06, 0x00, 0x00, 0x00, // string length 6 (with NUL)
    b'a', b'd', b'm', b'i', b'n', 0x00, // "admin"
    0x00, // document terminator
];

/// OP_MSG `{ping: 1, $db: "admin"}`, requestID 7: 51 bytes.
fn ping_msg() -> Vec<u8> {
    let mut out = vec![
        0x33, 0x00, 0x00, 0x00, // messageLength 51
        0x07, 0x00, 0x00, 0x00, // requestID 7
        0x00, 0x00, 0x00, 0x00, // responseTo 0
        0xdd, 0x07, 0x00, 0x00, // opCode 2013 OP_MSG
        0x00, 0x00, 0x00, 0x00, // flagBits 0
        0x00, // section kind 0: body
    ];
    out.extend_from_slice(PING_DOC);
    assert_eq!(out.len(), 51);
    out
}

#[test]
fn golden_ping_doc_matches_bson_encoder() {
    // The hand-written BSON agrees with the bson crate's encoder (sanity check on the fixture).
    let doc = rawdoc! { "ping": 1, "$db": "admin" };
    assert_eq!(doc.as_bytes(), PING_DOC);
}

#[test]
fn golden_op_msg_ping_parses_every_field() {
    let bytes = ping_msg();
    let frame = decode_one(&bytes);
    let header = frame.header();
    assert_eq!(header.message_length, 51);
    assert_eq!(header.request_id, 7);
    assert_eq!(header.response_to, 0);
    assert_eq!(header.op_code, OpCode::Msg);
    assert_eq!(frame.len(), 51);
    assert_eq!(frame.body(), &bytes[16..]);

    let msg = frame.op_msg().unwrap();
    assert_eq!(msg.flags, MsgFlags::empty());
    assert_eq!(msg.body.as_bytes(), PING_DOC);
    assert!(msg.sequences.is_empty());
    assert_eq!(msg.checksum, None);

    let command = Command::inspect(msg.body).unwrap();
    assert_eq!(command.name, "ping");
    assert_eq!(command.kind, CommandKind::Other);
    assert_eq!(command.db, Some("admin"));
}

#[test]
fn golden_op_msg_ping_is_what_the_builder_writes() {
    let doc = rawdoc! { "ping": 1, "$db": "admin" };
    let built = OpMsgBuilder::new(&doc).request_id(7).build().unwrap();
    assert_eq!(built.as_bytes(), ping_msg().as_slice());
}

// ---------------------------------------------------------------------------------------------
// insert with a kind-1 `documents` sequence

/// BSON `{insert: "c", $db: "db"}`: 31 bytes.
const INSERT_DOC: &[u8] = &[
    0x1f, 0x00, 0x00, 0x00, // document length 31
    0x02, b'i', b'n', b's', b'e', b'r', b't', 0x00, // string "insert"
    0x02, 0x00, 0x00, 0x00, b'c', 0x00, // "c"
    0x02, b'$', b'd', b'b', 0x00, // string "$db"
    0x03, 0x00, 0x00, 0x00, b'd', b'b', 0x00, // "db"
    0x00, // terminator
];

/// BSON `{_id: 1}` and `{_id: 2}`: 14 bytes each.
const ID1_DOC: &[u8] = &[0x0e, 0, 0, 0, 0x10, b'_', b'i', b'd', 0, 0x01, 0, 0, 0, 0];
const ID2_DOC: &[u8] = &[0x0e, 0, 0, 0, 0x10, b'_', b'i', b'd', 0, 0x02, 0, 0, 0, 0];

/// OP_MSG insert, requestID 42, body + kind-1 `documents` with two documents: 95 bytes.
fn insert_msg() -> Vec<u8> {
    let mut out = vec![
        0x5f, 0x00, 0x00, 0x00, // messageLength 95
        0x2a, 0x00, 0x00, 0x00, // requestID 42
        0x00, 0x00, 0x00, 0x00, // responseTo 0
        0xdd, 0x07, 0x00, 0x00, // opCode 2013
        0x00, 0x00, 0x00, 0x00, // flagBits 0
        0x00, // kind 0
    ];
    out.extend_from_slice(INSERT_DOC);
    out.extend_from_slice(&[
        0x01, // kind 1: document sequence
        0x2a, 0x00, 0x00, 0x00, // size 42 = 4 (size) + 10 ("documents\0") + 14 + 14
        b'd', b'o', b'c', b'u', b'm', b'e', b'n', b't', b's', 0x00,
    ]);
    out.extend_from_slice(ID1_DOC);
    out.extend_from_slice(ID2_DOC);
    assert_eq!(out.len(), 95);
    out
}

#[test]
fn golden_insert_docs_match_bson_encoder() {
    assert_eq!(
        rawdoc! { "insert": "c", "$db": "db" }.as_bytes(),
        INSERT_DOC
    );
    assert_eq!(rawdoc! { "_id": 1 }.as_bytes(), ID1_DOC);
    assert_eq!(rawdoc! { "_id": 2 }.as_bytes(), ID2_DOC);
}

#[test]
fn golden_op_msg_insert_with_document_sequence_parses() {
    let frame = decode_one(&insert_msg());
    assert_eq!(frame.request_id(), 42);
    assert_eq!(frame.op_code(), OpCode::Msg);
    let msg = frame.op_msg().unwrap();
    assert_eq!(msg.flags, MsgFlags::empty());
    assert_eq!(msg.body.as_bytes(), INSERT_DOC);
    assert_eq!(msg.checksum, None);
    assert_eq!(msg.sequences.len(), 1);
    let seq = &msg.sequences[0];
    assert_eq!(seq.identifier, "documents");
    let docs: Vec<&RawDocument> = seq.documents().collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].as_bytes(), ID1_DOC);
    assert_eq!(docs[1].as_bytes(), ID2_DOC);
    assert_eq!(docs[1].get("_id").unwrap(), Some(RawBsonRef::Int32(2)));
    assert_eq!(seq.as_bytes(), [ID1_DOC, ID2_DOC].concat().as_slice());

    let command = Command::inspect(msg.body).unwrap();
    assert_eq!(command.name, "insert");
    assert_eq!(command.db, Some("db"));
}

#[test]
fn golden_op_msg_insert_is_what_the_builder_writes() {
    let body = rawdoc! { "insert": "c", "$db": "db" };
    let d1 = rawdoc! { "_id": 1 };
    let d2 = rawdoc! { "_id": 2 };
    let built = OpMsgBuilder::new(&body)
        .request_id(42)
        .sequence("documents", vec![&d1, &d2])
        .build()
        .unwrap();
    assert_eq!(built.as_bytes(), insert_msg().as_slice());
}

// ---------------------------------------------------------------------------------------------
// checksum

#[test]
fn crc32c_bitwise_matches_the_standard_check_value() {
    // The CRC catalogue's check value for CRC-32/ISCSI (CRC-32C).
    assert_eq!(crc32c_bitwise(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c_bitwise(b""), 0);
}

/// OP_MSG ping with checksumPresent, responseTo 7, requestID 8: 55 bytes.
fn ping_msg_with_checksum() -> Vec<u8> {
    let mut out = vec![
        0x37, 0x00, 0x00, 0x00, // messageLength 55
        0x08, 0x00, 0x00, 0x00, // requestID 8
        0x07, 0x00, 0x00, 0x00, // responseTo 7
        0xdd, 0x07, 0x00, 0x00, // opCode 2013
        0x01, 0x00, 0x00, 0x00, // flagBits: checksumPresent
        0x00, // kind 0
    ];
    out.extend_from_slice(PING_DOC);
    // CRC-32C over [0, len - 4): everything so far, header included.
    let crc = crc32c_bitwise(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), 55);
    out
}

#[test]
fn golden_op_msg_with_checksum_parses_and_verifies() {
    let bytes = ping_msg_with_checksum();
    let frame = decode_one(&bytes);
    assert_eq!(frame.request_id(), 8);
    assert_eq!(frame.response_to(), 7);
    let msg = frame.op_msg().unwrap();
    assert_eq!(msg.flags, MsgFlags::CHECKSUM_PRESENT);
    assert_eq!(msg.body.as_bytes(), PING_DOC);
    assert!(msg.sequences.is_empty());
    assert_eq!(msg.checksum, Some(crc32c_bitwise(&bytes[..51])));
    assert_eq!(frame.msg_flags().unwrap(), MsgFlags::CHECKSUM_PRESENT);
}

#[test]
fn golden_op_msg_with_checksum_is_what_the_builder_writes() {
    let doc = rawdoc! { "ping": 1, "$db": "admin" };
    let built = OpMsgBuilder::new(&doc)
        .request_id(8)
        .response_to(7)
        .checksum(true)
        .build()
        .unwrap();
    assert_eq!(built.as_bytes(), ping_msg_with_checksum().as_slice());
    // The flag may not be smuggled in through `flags`: only `checksum(true)` appends one.
    let via_flags = OpMsgBuilder::new(&doc)
        .request_id(7)
        .flags(MsgFlags::CHECKSUM_PRESENT)
        .build()
        .unwrap();
    assert_eq!(via_flags.as_bytes(), ping_msg().as_slice());
}

#[test]
fn golden_append_checksum_turns_plain_ping_into_checksummed_ping() {
    let mut frame = frame(&ping_msg());
    frame.set_request_id(8);
    frame.set_response_to(7);
    frame.append_checksum().unwrap();
    assert_eq!(frame.as_bytes(), ping_msg_with_checksum().as_slice());
}

// ---------------------------------------------------------------------------------------------
// OP_QUERY isMaster on admin.$cmd

/// BSON `{isMaster: 1}`: 19 bytes.
const IS_MASTER_DOC: &[u8] = &[
    0x13, 0x00, 0x00, 0x00, // length 19
    0x10, b'i', b's', b'M', b'a', b's', b't', b'e', b'r', 0x00, // int32 "isMaster"
    0x01, 0x00, 0x00, 0x00, // 1
    0x00,
];

/// OP_QUERY `{isMaster: 1}` on `admin.$cmd`, requestID 1, numberToReturn -1: 58 bytes.
fn is_master_query() -> Vec<u8> {
    let mut out = vec![
        0x3a, 0x00, 0x00, 0x00, // messageLength 58
        0x01, 0x00, 0x00, 0x00, // requestID 1
        0x00, 0x00, 0x00, 0x00, // responseTo 0
        0xd4, 0x07, 0x00, 0x00, // opCode 2004 OP_QUERY
        0x00, 0x00, 0x00, 0x00, // flags 0
        b'a', b'd', b'm', b'i', b'n', b'.', b'$', b'c', b'm', b'd', 0x00, // "admin.$cmd"
        0x00, 0x00, 0x00, 0x00, // numberToSkip 0
        0xff, 0xff, 0xff, 0xff, // numberToReturn -1
    ];
    out.extend_from_slice(IS_MASTER_DOC);
    assert_eq!(out.len(), 58);
    out
}

#[test]
fn golden_op_query_is_master_parses() {
    assert_eq!(rawdoc! { "isMaster": 1 }.as_bytes(), IS_MASTER_DOC);
    let frame = decode_one(&is_master_query());
    assert_eq!(frame.header().message_length, 58);
    assert_eq!(frame.request_id(), 1);
    assert_eq!(frame.response_to(), 0);
    assert_eq!(frame.op_code(), OpCode::Query);
    let query = frame.op_query().unwrap();
    assert_eq!(query.flags, 0);
    assert_eq!(query.full_collection_name, "admin.$cmd");
    assert_eq!(query.command_db(), Some("admin"));
    assert_eq!(query.number_to_skip, 0);
    assert_eq!(query.number_to_return, -1);
    assert_eq!(query.query.as_bytes(), IS_MASTER_DOC);
    assert_eq!(query.return_fields_selector, None);

    let command = Command::inspect(query.query).unwrap();
    assert_eq!(command.name, "isMaster");
    assert_eq!(command.kind, CommandKind::Hello);
    assert_eq!(command.db, None);
}

#[test]
fn golden_op_query_is_what_the_builder_writes() {
    let doc = rawdoc! { "isMaster": 1 };
    let built = OpQueryBuilder::new("admin.$cmd", &doc)
        .request_id(1)
        .build()
        .unwrap();
    assert_eq!(built.as_bytes(), is_master_query().as_slice());
}

#[test]
fn golden_op_query_with_return_fields_selector_parses() {
    let mut bytes = is_master_query();
    // returnFieldsSelector: the empty document {} (5 bytes).
    bytes.extend_from_slice(&[0x05, 0x00, 0x00, 0x00, 0x00]);
    bytes[0] = 63; // messageLength 58 + 5
    let frame = decode_one(&bytes);
    let query = frame.op_query().unwrap();
    assert_eq!(
        query.return_fields_selector.map(RawDocument::as_bytes),
        Some(&[5u8, 0, 0, 0, 0][..])
    );
}

// ---------------------------------------------------------------------------------------------
// OP_REPLY with one document

/// BSON `{ok: 1.0}`: 17 bytes.
const OK_DOC: &[u8] = &[
    0x11, 0x00, 0x00, 0x00, // length 17
    0x01, b'o', b'k', 0x00, // double "ok"
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, // 1.0
    0x00,
];

/// OP_REPLY answering requestID 1, requestID 100, responseFlags AwaitCapable (8): 53 bytes.
fn ok_reply() -> Vec<u8> {
    let mut out = vec![
        0x35, 0x00, 0x00, 0x00, // messageLength 53
        0x64, 0x00, 0x00, 0x00, // requestID 100
        0x01, 0x00, 0x00, 0x00, // responseTo 1
        0x01, 0x00, 0x00, 0x00, // opCode 1 OP_REPLY
        0x08, 0x00, 0x00, 0x00, // responseFlags: AwaitCapable
        0, 0, 0, 0, 0, 0, 0, 0, // cursorID 0
        0x00, 0x00, 0x00, 0x00, // startingFrom 0
        0x01, 0x00, 0x00, 0x00, // numberReturned 1
    ];
    out.extend_from_slice(OK_DOC);
    assert_eq!(out.len(), 53);
    out
}

#[test]
fn golden_op_reply_parses() {
    assert_eq!(rawdoc! { "ok": 1.0 }.as_bytes(), OK_DOC);
    let frame = decode_one(&ok_reply());
    assert_eq!(frame.header().message_length, 53);
    assert_eq!(frame.request_id(), 100);
    assert_eq!(frame.response_to(), 1);
    assert_eq!(frame.op_code(), OpCode::Reply);
    let reply = frame.op_reply().unwrap();
    assert_eq!(reply.flags, 8);
    assert_eq!(reply.cursor_id, 0);
    assert_eq!(reply.starting_from, 0);
    assert_eq!(reply.documents.len(), 1);
    assert_eq!(reply.documents[0].as_bytes(), OK_DOC);
    assert!(Reply::inspect(reply.documents[0]).unwrap().ok);
}

#[test]
fn golden_op_reply_is_what_the_builder_writes() {
    let doc = rawdoc! { "ok": 1.0 };
    let built = OpReplyBuilder::new(vec![&doc])
        .request_id(100)
        .response_to(1)
        .flags(8)
        .build()
        .unwrap();
    assert_eq!(built.as_bytes(), ok_reply().as_slice());
}

// ---------------------------------------------------------------------------------------------
// OP_COMPRESSED wrapping an OP_MSG

/// OP_COMPRESSED (noop) wrapping the ping OP_MSG (requestID 7): 60 bytes.
fn ping_compressed_noop() -> Vec<u8> {
    let mut out = vec![
        0x3c, 0x00, 0x00, 0x00, // messageLength 60
        0x07, 0x00, 0x00, 0x00, // requestID 7 (the wrapped message's)
        0x00, 0x00, 0x00, 0x00, // responseTo 0
        0xdc, 0x07, 0x00, 0x00, // opCode 2012 OP_COMPRESSED
        0xdd, 0x07, 0x00, 0x00, // originalOpcode 2013
        0x23, 0x00, 0x00, 0x00, // uncompressedSize 35 (51 - header)
        0x00, // compressorId 0 noop
    ];
    out.extend_from_slice(&ping_msg()[16..]); // the OP_MSG without its header
    assert_eq!(out.len(), 60);
    out
}

#[test]
fn golden_op_compressed_noop_parses_and_unwraps() {
    let bytes = ping_compressed_noop();
    let frame = decode_one(&bytes);
    assert_eq!(frame.op_code(), OpCode::Compressed);
    assert_eq!(frame.request_id(), 7);
    let compressed = frame.op_compressed().unwrap();
    assert_eq!(compressed.original_op_code, OpCode::Msg);
    assert_eq!(compressed.uncompressed_size, 35);
    assert_eq!(compressed.compressor, Compressor::Noop);
    assert_eq!(compressed.payload, &ping_msg()[16..]);

    let plain = frame.decompress(MAX_MESSAGE_SIZE).unwrap();
    assert_eq!(plain.as_bytes(), ping_msg().as_slice());
}

#[test]
fn golden_op_compressed_noop_is_what_compress_writes() {
    let compressed = frame(&ping_msg()).compress(Compressor::Noop).unwrap();
    assert_eq!(compressed.as_bytes(), ping_compressed_noop().as_slice());
}

#[test]
fn golden_op_compressed_round_trips_with_every_real_compressor() {
    for compressor in [Compressor::Snappy, Compressor::Zlib, Compressor::Zstd] {
        let compressed = frame(&ping_msg()).compress(compressor).unwrap();
        let bytes = compressed.as_bytes();
        // Header and the 9-byte OP_COMPRESSED prefix are fixed by the spec.
        assert_eq!(&bytes[4..16], &[7, 0, 0, 0, 0, 0, 0, 0, 0xdc, 0x07, 0, 0]);
        assert_eq!(
            &bytes[16..25],
            &[0xdd, 0x07, 0, 0, 0x23, 0, 0, 0, compressor.id()]
        );
        let parsed = compressed.op_compressed().unwrap();
        assert_eq!(parsed.compressor, compressor);
        assert_eq!(parsed.uncompressed_size, 35);
        let decoded = decode_one(bytes).decompress(MAX_MESSAGE_SIZE).unwrap();
        assert_eq!(decoded.as_bytes(), ping_msg().as_slice(), "{compressor:?}");
    }
}

#[test]
fn golden_snappy_payload_from_the_spec_decompresses() {
    // A hand-written raw snappy block: varint length 35, then one literal of 35 bytes
    // (tag = (35 - 1) << 2 = 0x88).
    let plain = &ping_msg()[16..];
    let mut bytes = vec![
        0x3e, 0x00, 0x00, 0x00, // messageLength 62 = 16 + 9 + 2 + 35
        0x07, 0x00, 0x00, 0x00, // requestID 7
        0x00, 0x00, 0x00, 0x00, // responseTo 0
        0xdc, 0x07, 0x00, 0x00, // OP_COMPRESSED
        0xdd, 0x07, 0x00, 0x00, // originalOpcode 2013
        0x23, 0x00, 0x00, 0x00, // uncompressedSize 35
        0x01, // snappy
        0x23, // varint 35
        0x88, // literal, length 35
    ];
    bytes.extend_from_slice(plain);
    let decoded = decode_one(&bytes).decompress(MAX_MESSAGE_SIZE).unwrap();
    assert_eq!(decoded.as_bytes(), ping_msg().as_slice());
}

#[test]
fn golden_compressor_ids_and_names_follow_the_spec() {
    for (id, name) in [(0u8, "noop"), (1, "snappy"), (2, "zlib"), (3, "zstd")] {
        let compressor = Compressor::from_id(id).unwrap();
        assert_eq!(compressor.id(), id);
        assert_eq!(compressor.name(), name);
    }
    for (op, n) in [
        (OpCode::Reply, 1),
        (OpCode::Query, 2004),
        (OpCode::Compressed, 2012),
        (OpCode::Msg, 2013),
    ] {
        assert_eq!(op.as_i32(), n);
        assert_eq!(OpCode::from_i32(n).unwrap(), op);
    }
}
