//! Round trips: builders, the codec and the parsers agree; compression is lossless for every
//! compressor; in-place edits keep a message valid and touch only the bytes they own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bson::{RawDocument, RawDocumentBuf, rawdoc};
use bytes::BytesMut;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{
    Compressor, Frame, MAX_MESSAGE_SIZE, MsgFlags, OpCode, OpMsgBuilder, OpQueryBuilder,
    OpReplyBuilder, WireError,
};
use tokio_util::codec::{Decoder, Encoder};

const COMPRESSORS: [Compressor; 4] = [
    Compressor::Noop,
    Compressor::Snappy,
    Compressor::Zlib,
    Compressor::Zstd,
];

fn through_codec(frame: &Frame) -> Frame {
    let mut codec = MessageCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(frame, &mut buf).unwrap();
    let out = codec.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    out
}

fn docs(n: i32) -> Vec<RawDocumentBuf> {
    (0..n)
        .map(|i| rawdoc! { "_id": i, "name": format!("document number {i}"), "x": f64::from(i) })
        .collect()
}

#[test]
fn op_msg_builder_codec_parse_gives_back_the_same_fields() {
    let body = rawdoc! { "insert": "coll", "ordered": true, "$db": "test" };
    let documents = docs(3);
    let updates = docs(2);
    let flags = MsgFlags::MORE_TO_COME.with(MsgFlags::EXHAUST_ALLOWED);
    for checksum in [false, true] {
        let frame = OpMsgBuilder::new(&body)
            .request_id(-17)
            .response_to(i32::MAX)
            .flags(flags)
            .sequence("documents", documents.iter().map(|d| d.as_ref()).collect())
            .sequence("updates", updates.iter().map(|d| d.as_ref()).collect())
            .checksum(checksum)
            .build()
            .unwrap();
        let decoded = through_codec(&frame);
        assert_eq!(decoded.request_id(), -17);
        assert_eq!(decoded.response_to(), i32::MAX);
        assert_eq!(
            decoded.header().message_length,
            i32::try_from(decoded.len()).unwrap()
        );
        let msg = decoded.op_msg().unwrap();
        let expected_flags = if checksum {
            flags.with(MsgFlags::CHECKSUM_PRESENT)
        } else {
            flags
        };
        assert_eq!(msg.flags, expected_flags);
        assert_eq!(msg.checksum.is_some(), checksum);
        assert_eq!(msg.body, body.as_ref() as &RawDocument);
        assert_eq!(msg.sequences.len(), 2);
        assert_eq!(msg.sequences[0].identifier, "documents");
        assert_eq!(msg.sequences[1].identifier, "updates");
        let got: Vec<&RawDocument> = msg.sequences[0].documents().collect();
        let want: Vec<&RawDocument> = documents.iter().map(|d| d.as_ref()).collect();
        assert_eq!(got, want);
        assert_eq!(msg.sequences[1].documents().count(), 2);
    }
}

#[test]
fn op_msg_builder_accepts_an_empty_sequence_and_rejects_a_nul_identifier() {
    let body = rawdoc! { "insert": "coll", "$db": "test" };
    let frame = OpMsgBuilder::new(&body)
        .sequence("documents", vec![])
        .build()
        .unwrap();
    let msg = frame.op_msg().unwrap();
    assert_eq!(msg.sequences[0].documents().count(), 0);
    let err = OpMsgBuilder::new(&body)
        .sequence("docu\0ments", vec![])
        .build()
        .unwrap_err();
    assert!(matches!(err, WireError::InvalidCString(_)));
    let err = OpQueryBuilder::new("admin\0.$cmd", &body)
        .build()
        .unwrap_err();
    assert!(matches!(err, WireError::InvalidCString(_)));
}

#[test]
fn op_msg_builder_refuses_flag_bits_a_peer_must_reject() {
    let body = rawdoc! { "ping": 1, "$db": "admin" };
    // Bit 2 is neither checksumPresent, moreToCome nor exhaustAllowed, and below bit 16: a
    // parser must refuse it, so the builder does not make it.
    let err = OpMsgBuilder::new(&body)
        .flags(MsgFlags::from_bits(1 << 2))
        .build()
        .unwrap_err();
    assert!(matches!(err, WireError::UnknownRequiredFlags(4)), "{err:?}");
    // Optional bits (16 and up) pass, and the message parses.
    let frame = OpMsgBuilder::new(&body)
        .flags(MsgFlags::from_bits(1 << 20).with(MsgFlags::EXHAUST_ALLOWED))
        .build()
        .unwrap();
    assert!(
        frame
            .op_msg()
            .unwrap()
            .flags
            .contains(MsgFlags::EXHAUST_ALLOWED)
    );
}

#[test]
fn op_query_and_op_reply_round_trip() {
    let hello = rawdoc! { "isMaster": 1, "helloOk": true, "client": { "driver": { "name": "x" } } };
    let query = OpQueryBuilder::new("admin.$cmd", &hello)
        .request_id(3)
        .flags(4)
        .build()
        .unwrap();
    let decoded = through_codec(&query);
    assert_eq!(decoded.op_code(), OpCode::Query);
    let parsed = decoded.op_query().unwrap();
    assert_eq!(parsed.flags, 4);
    assert_eq!(parsed.full_collection_name, "admin.$cmd");
    assert_eq!(parsed.number_to_skip, 0);
    assert_eq!(parsed.number_to_return, -1);
    assert_eq!(parsed.query, hello.as_ref() as &RawDocument);
    assert_eq!(parsed.command_db(), Some("admin"));

    let a = rawdoc! { "ok": 1.0, "ismaster": true };
    let b = rawdoc! { "x": 1 };
    let reply = OpReplyBuilder::new(vec![&a, &b])
        .request_id(4)
        .response_to(3)
        .flags(2)
        .cursor_id(1 << 40)
        .build()
        .unwrap();
    let decoded = through_codec(&reply);
    assert_eq!(decoded.response_to(), 3);
    let parsed = decoded.op_reply().unwrap();
    assert_eq!(parsed.flags, 2);
    assert_eq!(parsed.cursor_id, 1 << 40);
    assert_eq!(parsed.starting_from, 0);
    assert_eq!(
        parsed.documents,
        vec![a.as_ref() as &RawDocument, b.as_ref()]
    );
}

#[test]
fn op_query_command_db_needs_the_cmd_suffix() {
    let doc = rawdoc! { "find": "c" };
    let frame = OpQueryBuilder::new("db.coll", &doc).build().unwrap();
    assert_eq!(frame.op_query().unwrap().command_db(), None);
}

fn large_insert() -> Frame {
    let body = rawdoc! { "insert": "coll", "$db": "test" };
    let documents = docs(200);
    OpMsgBuilder::new(&body)
        .request_id(11)
        .response_to(12)
        .sequence("documents", documents.iter().map(|d| d.as_ref()).collect())
        .build()
        .unwrap()
}

#[test]
fn compress_then_decompress_is_lossless_for_every_compressor_and_op_code() {
    let doc = rawdoc! { "ok": 1.0 };
    let plain_frames = [
        large_insert(),
        OpQueryBuilder::new("admin.$cmd", &doc)
            .request_id(5)
            .build()
            .unwrap(),
        OpReplyBuilder::new(vec![&doc])
            .request_id(6)
            .response_to(5)
            .build()
            .unwrap(),
    ];
    for plain in &plain_frames {
        for compressor in COMPRESSORS {
            let compressed = plain.compress(compressor).unwrap();
            assert_eq!(compressed.op_code(), OpCode::Compressed);
            assert_eq!(compressed.request_id(), plain.request_id());
            assert_eq!(compressed.response_to(), plain.response_to());
            let parsed = compressed.op_compressed().unwrap();
            assert_eq!(parsed.original_op_code, plain.op_code());
            assert_eq!(
                parsed.uncompressed_size,
                i32::try_from(plain.body().len()).unwrap()
            );
            assert_eq!(parsed.compressor, compressor);
            let back = through_codec(&compressed)
                .decompress(MAX_MESSAGE_SIZE)
                .unwrap();
            assert_eq!(back, *plain, "{compressor:?} {:?}", plain.op_code());
        }
    }
    // Real compressors actually shrink a repetitive insert.
    let plain = large_insert();
    for compressor in [Compressor::Snappy, Compressor::Zlib, Compressor::Zstd] {
        assert!(
            plain.compress(compressor).unwrap().len() < plain.len() / 2,
            "{compressor:?}"
        );
    }
}

#[test]
fn compressing_a_compressed_frame_is_refused_and_decompressing_a_plain_one_is_a_no_op() {
    let plain = large_insert();
    let compressed = plain.compress(Compressor::Zstd).unwrap();
    assert!(matches!(
        compressed.compress(Compressor::Zlib),
        Err(WireError::InvalidOriginalOpCode(2012))
    ));
    assert_eq!(plain.clone().decompress(MAX_MESSAGE_SIZE).unwrap(), plain);
}

fn ping(checksum: bool, flags: MsgFlags) -> Frame {
    let doc = rawdoc! { "ping": 1, "lsid": { "id": 1 }, "$db": "admin" };
    OpMsgBuilder::new(&doc)
        .request_id(9)
        .flags(flags)
        .checksum(checksum)
        .build()
        .unwrap()
}

/// Indices at which `a` and `b` differ (over their common length).
fn diff(a: &[u8], b: &[u8]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn strip_checksum_removes_the_checksum_and_its_flag_only() {
    let with = ping(true, MsgFlags::EXHAUST_ALLOWED);
    let without = ping(false, MsgFlags::EXHAUST_ALLOWED);
    let mut stripped = with.clone();
    stripped.strip_checksum().unwrap();
    assert_eq!(stripped, without);
    assert_eq!(stripped.len(), with.len() - 4);
    // Only the length (byte 0) and the flag word (byte 16) changed; the body is the same.
    assert_eq!(diff(with.as_bytes(), stripped.as_bytes()), vec![0, 16]);
    assert_eq!(stripped.op_msg().unwrap().checksum, None);
    // Stripping again changes nothing.
    stripped.strip_checksum().unwrap();
    assert_eq!(stripped, without);
}

#[test]
fn append_checksum_adds_a_valid_checksum_and_replaces_a_stale_one() {
    let with = ping(true, MsgFlags::MORE_TO_COME);
    let mut appended = ping(false, MsgFlags::MORE_TO_COME);
    appended.append_checksum().unwrap();
    assert_eq!(appended, with);
    let msg = appended.op_msg().unwrap();
    assert_eq!(
        msg.flags,
        MsgFlags::MORE_TO_COME.with(MsgFlags::CHECKSUM_PRESENT)
    );
    assert_eq!(
        msg.checksum,
        Some(crc32c::crc32c(&with.as_bytes()[..with.len() - 4]))
    );

    // A checksum made stale by an id edit is replaced, not doubled.
    let mut edited = with.clone();
    edited.set_request_id(1234);
    assert!(matches!(
        edited.op_msg(),
        Err(WireError::ChecksumMismatch { .. })
    ));
    edited.append_checksum().unwrap();
    assert_eq!(edited.len(), with.len());
    assert_eq!(edited.op_msg().unwrap().body, with.op_msg().unwrap().body);
    assert_eq!(edited.request_id(), 1234);
}

#[test]
fn clear_exhaust_allowed_clears_one_bit_and_keeps_the_checksum_valid() {
    for checksum in [false, true] {
        let before = ping(
            checksum,
            MsgFlags::EXHAUST_ALLOWED.with(MsgFlags::MORE_TO_COME),
        );
        let mut after = before.clone();
        after.clear_exhaust_allowed().unwrap();
        let msg = after.op_msg().unwrap();
        assert!(!msg.flags.contains(MsgFlags::EXHAUST_ALLOWED));
        assert!(msg.flags.contains(MsgFlags::MORE_TO_COME));
        assert_eq!(msg.checksum.is_some(), checksum);
        assert_eq!(after.len(), before.len());
        // Byte 18 holds bit 16; the last four bytes are the checksum, when there is one.
        let mut expected = vec![18];
        if checksum {
            let n = before.len();
            expected.extend((n - 4..n).filter(|&i| before.as_bytes()[i] != after.as_bytes()[i]));
        }
        assert_eq!(
            diff(before.as_bytes(), after.as_bytes()),
            expected,
            "checksum {checksum}"
        );
        assert_eq!(after, ping(checksum, MsgFlags::MORE_TO_COME));
        // Without the bit set, nothing changes.
        let mut again = after.clone();
        again.clear_exhaust_allowed().unwrap();
        assert_eq!(again, after);
    }
}

#[test]
fn clear_exhaust_allowed_does_not_re_sign_a_corrupt_message() {
    let mut frame = ping(true, MsgFlags::EXHAUST_ALLOWED);
    let mut bytes = BytesMut::from(frame.as_bytes());
    bytes[30] ^= 0x01; // flip a bit inside the body
    frame = Frame::from_bytes(bytes, MAX_MESSAGE_SIZE).unwrap();
    let before = frame.clone();
    assert!(matches!(
        frame.clear_exhaust_allowed(),
        Err(WireError::ChecksumMismatch { .. })
    ));
    assert_eq!(
        frame, before,
        "a refused edit must leave the frame as it was"
    );
    assert!(frame.op_msg().is_err());
}

#[test]
fn flag_edits_on_a_frame_too_short_for_its_checksum_are_refused() {
    // Header + flag word (checksumPresent | exhaustAllowed) and nothing else: 20 bytes.
    let mut bytes = vec![20u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0];
    bytes.extend_from_slice(&0x0001_0001u32.to_le_bytes());
    let mut frame = Frame::from_bytes(BytesMut::from(&bytes[..]), MAX_MESSAGE_SIZE).unwrap();
    assert!(matches!(
        frame.clear_exhaust_allowed(),
        Err(WireError::Truncated("checksum"))
    ));
    assert_eq!(frame.as_bytes(), bytes.as_slice());
    assert!(matches!(
        frame.strip_checksum(),
        Err(WireError::Truncated("checksum"))
    ));
    assert!(matches!(
        frame.append_checksum(),
        Err(WireError::Truncated("checksum"))
    ));
    assert_eq!(frame.as_bytes(), bytes.as_slice());
}

#[test]
fn set_request_id_and_response_to_rewrite_only_their_four_bytes() {
    let before = ping(false, MsgFlags::empty());
    let mut after = before.clone();
    after.set_request_id(0x0102_0304);
    after.set_response_to(-2);
    assert_eq!(after.request_id(), 0x0102_0304);
    assert_eq!(after.response_to(), -2);
    assert_eq!(after.header().request_id, 0x0102_0304);
    assert_eq!(
        &after.as_bytes()[4..12],
        &[4, 3, 2, 1, 0xfe, 0xff, 0xff, 0xff]
    );
    assert!(
        diff(before.as_bytes(), after.as_bytes())
            .iter()
            .all(|i| (4..12).contains(i))
    );
    assert_eq!(after.op_msg().unwrap(), before.op_msg().unwrap());
    // The codec sees the new ids.
    let decoded = through_codec(&after);
    assert_eq!(
        (decoded.request_id(), decoded.response_to()),
        (0x0102_0304, -2)
    );
}

#[test]
fn frame_build_and_into_bytes_agree_with_the_header() {
    let doc = rawdoc! { "ok": 1.0 };
    let reply = OpReplyBuilder::new(vec![&doc]).build().unwrap();
    let rebuilt = Frame::build(7, 8, OpCode::Reply, reply.body()).unwrap();
    assert_eq!(rebuilt.body(), reply.body());
    assert_eq!((rebuilt.request_id(), rebuilt.response_to()), (7, 8));
    let bytes = rebuilt.clone().into_bytes();
    assert_eq!(&bytes[..], rebuilt.as_bytes());
    assert!(format!("{rebuilt:?}").contains("request_id: 7"));
    // A body that would pass the size limit is refused.
    let huge = vec![0u8; MAX_MESSAGE_SIZE];
    assert!(matches!(
        Frame::build(0, 0, OpCode::Msg, &huge),
        Err(WireError::MessageLength { .. })
    ));
}

#[test]
fn append_checksum_refuses_to_grow_a_message_past_the_limit() {
    let mut bytes = BytesMut::zeroed(MAX_MESSAGE_SIZE);
    bytes[..4].copy_from_slice(&i32::try_from(MAX_MESSAGE_SIZE).unwrap().to_le_bytes());
    bytes[12..16].copy_from_slice(&2013i32.to_le_bytes());
    let mut frame = Frame::from_bytes(bytes, MAX_MESSAGE_SIZE).unwrap();
    assert!(matches!(
        frame.append_checksum(),
        Err(WireError::MessageLength { .. })
    ));
    assert_eq!(frame.len(), MAX_MESSAGE_SIZE);
    assert_eq!(frame.msg_flags().unwrap(), MsgFlags::empty());
}
