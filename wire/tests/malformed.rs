//! Every malformed message the spec rules out is rejected, with the error that names the fault.
//! Messages are assembled by hand (a test-local header writer), not by the crate's builders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use bson::rawdoc;
use bytes::BytesMut;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{Frame, Header, MAX_MESSAGE_SIZE, OpMsg, OpQuery, OpReply, WireError};
use tokio_util::codec::Decoder;

const OP_REPLY: i32 = 1;
const OP_QUERY: i32 = 2004;
const OP_COMPRESSED: i32 = 2012;
const OP_MSG: i32 = 2013;

/// A whole message: a header with the right length, then `body`.
fn message(op_code: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&i32::try_from(16 + body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&op_code.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn ping() -> Vec<u8> {
    rawdoc! { "ping": 1, "$db": "admin" }.into_bytes()
}

/// An OP_MSG body: flag word then sections, each given as raw bytes.
fn msg_body(flags: u32, sections: &[&[u8]]) -> Vec<u8> {
    let mut out = flags.to_le_bytes().to_vec();
    for section in sections {
        out.extend_from_slice(section);
    }
    out
}

fn kind0(doc: &[u8]) -> Vec<u8> {
    [&[0u8][..], doc].concat()
}

fn kind1(identifier: &str, docs: &[&[u8]]) -> Vec<u8> {
    let payload: Vec<u8> = docs.concat();
    let size = 4 + identifier.len() + 1 + payload.len();
    let mut out = vec![1u8];
    out.extend_from_slice(&i32::try_from(size).unwrap().to_le_bytes());
    out.extend_from_slice(identifier.as_bytes());
    out.push(0);
    out.extend_from_slice(&payload);
    out
}

fn frame(bytes: &[u8]) -> Result<Frame, WireError> {
    Frame::from_bytes(BytesMut::from(bytes), MAX_MESSAGE_SIZE)
}

fn parse_msg(bytes: &[u8]) -> Result<(), WireError> {
    frame(bytes)?.op_msg().map(|_| ())
}

fn decode(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
    MessageCodec::default().decode(&mut BytesMut::from(bytes))
}

// ----------------------------------------------------------------------------------- header

#[test]
fn length_shorter_than_a_header_is_rejected() {
    for length in [0i32, 4, 15] {
        let mut bytes = message(OP_MSG, &[]);
        bytes[..4].copy_from_slice(&length.to_le_bytes());
        assert!(
            matches!(frame(&bytes), Err(WireError::MessageLength { .. })),
            "{length}"
        );
        assert!(
            matches!(decode(&bytes[..4]), Err(WireError::MessageLength { .. })),
            "{length}"
        );
    }
}

#[test]
fn negative_length_is_rejected() {
    for length in [-1i32, i32::MIN] {
        let bytes = length.to_le_bytes();
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(err, WireError::MessageLength { length: l, .. } if l == i64::from(length))
        );
        assert!(matches!(
            Header::parse(&bytes, MAX_MESSAGE_SIZE),
            Err(WireError::MessageLength { .. })
        ));
    }
}

#[test]
fn oversized_length_is_rejected_after_four_bytes() {
    // Just above the configured limit.
    let mut codec = MessageCodec::new(1024);
    let err = codec
        .decode(&mut BytesMut::from(&1025i32.to_le_bytes()[..]))
        .unwrap_err();
    assert!(matches!(
        err,
        WireError::MessageLength {
            length: 1025,
            max: 1024
        }
    ));
    // Just above the default limit, and a claimed 2 GiB (the largest positive int32, and
    // 0x8000_0000 which reads as negative).
    for claim in [MAX_MESSAGE_SIZE as u32 + 1, 0x7fff_ffff, 0x8000_0000] {
        let err = decode(&claim.to_le_bytes()).unwrap_err();
        assert!(matches!(err, WireError::MessageLength { .. }), "{claim:#x}");
    }
    // The exact limit is fine: the codec waits for the rest.
    assert!(
        MessageCodec::new(1024)
            .decode(&mut BytesMut::from(&1024i32.to_le_bytes()[..]))
            .unwrap()
            .is_none()
    );
}

#[test]
fn header_parse_needs_four_bytes_for_the_length_and_sixteen_for_the_rest() {
    assert!(matches!(
        Header::parse(&[1, 0], MAX_MESSAGE_SIZE),
        Err(WireError::Truncated(_))
    ));
    assert!(matches!(
        Header::parse(&[20, 0, 0, 0, 1], MAX_MESSAGE_SIZE),
        Err(WireError::Truncated(_))
    ));
}

#[test]
fn length_not_equal_to_byte_count_is_rejected() {
    let mut longer = message(OP_MSG, &msg_body(0, &[&kind0(&ping())]));
    longer.push(0);
    assert!(matches!(
        frame(&longer),
        Err(WireError::MessageLength { .. })
    ));
    let shorter = &message(OP_MSG, &msg_body(0, &[&kind0(&ping())]))[..30];
    assert!(matches!(
        frame(shorter),
        Err(WireError::MessageLength { .. })
    ));
}

#[test]
fn unknown_op_codes_are_rejected_as_soon_as_the_header_is_complete() {
    // 2002 legacy OP_INSERT, 2005 OP_GET_MORE, 2010 OP_COMMAND, 0, 9999, -1.
    for op in [2002, 2005, 2010, 0, 9999, -1] {
        let bytes = message(op, &msg_body(0, &[&kind0(&ping())]));
        assert!(
            matches!(frame(&bytes), Err(WireError::UnknownOpCode(o)) if o == op),
            "{op}"
        );
        // The codec sees only the header, not the body: it still refuses.
        assert!(
            matches!(decode(&bytes[..16]), Err(WireError::UnknownOpCode(o)) if o == op),
            "{op}"
        );
        // With 15 bytes it cannot know yet.
        assert!(decode(&bytes[..15]).unwrap().is_none());
    }
}

// ----------------------------------------------------------------------------------- OP_MSG

#[test]
fn unknown_required_flag_bits_are_rejected() {
    for bit in 2..16 {
        let bytes = message(OP_MSG, &msg_body(1 << bit, &[&kind0(&ping())]));
        let err = parse_msg(&bytes).unwrap_err();
        assert!(
            matches!(err, WireError::UnknownRequiredFlags(b) if b == 1 << bit),
            "bit {bit}"
        );
    }
}

#[test]
fn optional_flag_bits_16_to_31_are_accepted() {
    for bit in 16..32 {
        let bytes = message(OP_MSG, &msg_body(1 << bit, &[&kind0(&ping())]));
        let frame = frame(&bytes).unwrap();
        assert_eq!(frame.op_msg().unwrap().flags.bits(), 1 << bit, "bit {bit}");
    }
    let bytes = message(OP_MSG, &msg_body(0xffff_0002, &[&kind0(&ping())]));
    assert!(parse_msg(&bytes).is_ok());
}

#[test]
fn unknown_section_kind_is_rejected() {
    for kind in [2u8, 3, 0x80, 0xff] {
        let section = [&[kind][..], &ping()].concat();
        let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &section]));
        assert!(matches!(parse_msg(&bytes), Err(WireError::UnknownSectionKind(k)) if k == kind));
    }
}

#[test]
fn document_sequence_size_overrunning_the_message_is_rejected() {
    let doc = rawdoc! { "_id": 1 }.into_bytes();
    let mut seq = kind1("documents", &[&doc]);
    let size = i32::from_le_bytes(seq[1..5].try_into().unwrap());
    seq[1..5].copy_from_slice(&(size + 1).to_le_bytes());
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &seq]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::Overrun(_))));
    // A size of i32::MAX.
    seq[1..5].copy_from_slice(&i32::MAX.to_le_bytes());
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &seq]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::Overrun(_))));
}

#[test]
fn document_sequence_size_below_five_is_rejected() {
    for size in [-1i32, 0, 3, 4] {
        let mut seq = kind1("documents", &[]);
        seq[1..5].copy_from_slice(&size.to_le_bytes());
        let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &seq]));
        assert!(
            matches!(parse_msg(&bytes), Err(WireError::Overrun(_))),
            "size {size}"
        );
    }
}

#[test]
fn document_sequence_size_cut_inside_a_document_is_rejected() {
    let doc = rawdoc! { "_id": 1 }.into_bytes();
    let mut seq = kind1("documents", &[&doc]);
    let size = i32::from_le_bytes(seq[1..5].try_into().unwrap());
    seq[1..5].copy_from_slice(&(size - 3).to_le_bytes());
    // The 3 bytes now outside the section read as a section of kind 0x00... followed by garbage;
    // whatever the reading, the message must be refused.
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &seq]));
    assert!(parse_msg(&bytes).is_err());
}

#[test]
fn document_sequence_identifier_without_nul_is_rejected() {
    // size 8: 4 (size) + "docs" with no NUL inside the section.
    let seq = [&[1u8][..], &8i32.to_le_bytes(), b"docs"].concat();
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &seq]));
    assert!(matches!(
        parse_msg(&bytes),
        Err(WireError::InvalidCString(_))
    ));
}

#[test]
fn truncated_bson_is_rejected() {
    // The body declares 40 bytes; only 30 follow.
    let mut doc = ping();
    doc[0] = 40;
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&doc)]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::Truncated(_))));
    // Body length prefix itself cut.
    let bytes = message(OP_MSG, &msg_body(0, &[&[0u8, 30, 0][..]]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::Truncated(_))));
    // A sequence document that runs past its section.
    let mut inner = rawdoc! { "_id": 1 }.into_bytes();
    inner[0] = 200;
    let bytes = message(
        OP_MSG,
        &msg_body(0, &[&kind0(&ping()), &kind1("documents", &[&inner])]),
    );
    assert!(parse_msg(&bytes).is_err());
    // Declared length below the BSON minimum of 5, and negative.
    for len in [0i32, 4, -5] {
        let mut doc = ping();
        doc[..4].copy_from_slice(&len.to_le_bytes());
        let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&doc)]));
        assert!(
            matches!(parse_msg(&bytes), Err(WireError::Overrun(_))),
            "{len}"
        );
    }
}

#[test]
fn bson_with_wrong_terminator_is_rejected() {
    let mut doc = ping();
    *doc.last_mut().unwrap() = 1;
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&doc)]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::Bson { .. })));
    let mut inner = rawdoc! { "_id": 1 }.into_bytes();
    *inner.last_mut().unwrap() = 7;
    let bytes = message(
        OP_MSG,
        &msg_body(0, &[&kind0(&ping()), &kind1("documents", &[&inner])]),
    );
    assert!(matches!(parse_msg(&bytes), Err(WireError::Bson { .. })));
}

#[test]
fn checksum_mismatch_is_rejected() {
    let mut bytes = message(OP_MSG, &msg_body(1, &[&kind0(&ping())]));
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&(crc ^ 1).to_le_bytes());
    let len = i32::try_from(bytes.len()).unwrap();
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    let err = parse_msg(&bytes).unwrap_err();
    assert!(matches!(err, WireError::ChecksumMismatch { .. }), "{err:?}");
    // The right checksum over these bytes is accepted: the fault was the checksum alone.
    let end = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    assert!(parse_msg(&bytes).is_ok());
}

#[test]
fn checksum_flag_with_too_few_bytes_is_rejected() {
    // Flag word only, and flag word + 3 bytes: no room for a 4-byte checksum.
    for tail in [&[][..], &[0u8, 0, 0][..]] {
        let bytes = message(OP_MSG, &msg_body(1, &[tail]));
        assert!(
            matches!(parse_msg(&bytes), Err(WireError::Truncated("checksum"))),
            "{tail:?}"
        );
    }
    // Exactly 4 bytes: a checksum with no sections; when it matches, the body is missing.
    let mut bytes = message(OP_MSG, &msg_body(1, &[]));
    bytes[0] += 4;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    assert!(matches!(parse_msg(&bytes), Err(WireError::MissingBody)));
}

#[test]
fn flag_word_missing_is_rejected() {
    let bytes = message(OP_MSG, &[0, 0]);
    assert!(matches!(parse_msg(&bytes), Err(WireError::Truncated(_))));
    assert!(matches!(
        frame(&message(OP_MSG, &[])).unwrap().msg_flags(),
        Err(WireError::Truncated(_))
    ));
}

#[test]
fn more_than_one_body_section_is_rejected() {
    let bytes = message(OP_MSG, &msg_body(0, &[&kind0(&ping()), &kind0(&ping())]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::DuplicateBody)));
    let doc = rawdoc! { "_id": 1 }.into_bytes();
    let bytes = message(
        OP_MSG,
        &msg_body(
            0,
            &[
                &kind0(&ping()),
                &kind1("documents", &[&doc]),
                &kind0(&ping()),
            ],
        ),
    );
    assert!(matches!(parse_msg(&bytes), Err(WireError::DuplicateBody)));
}

#[test]
fn no_body_section_is_rejected() {
    let bytes = message(OP_MSG, &msg_body(0, &[]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::MissingBody)));
    let doc = rawdoc! { "_id": 1 }.into_bytes();
    let bytes = message(OP_MSG, &msg_body(0, &[&kind1("documents", &[&doc])]));
    assert!(matches!(parse_msg(&bytes), Err(WireError::MissingBody)));
}

#[test]
fn op_msg_parse_on_a_short_slice_is_an_error() {
    for len in 0..20 {
        assert!(OpMsg::parse(&vec![0u8; len]).is_err());
    }
}

#[test]
fn parsing_a_frame_as_another_op_code_is_rejected() {
    let f = frame(&message(OP_MSG, &msg_body(0, &[&kind0(&ping())]))).unwrap();
    assert!(matches!(
        f.op_query(),
        Err(WireError::WrongOpCode { found: 2013, .. })
    ));
    assert!(matches!(f.op_reply(), Err(WireError::WrongOpCode { .. })));
    assert!(matches!(
        f.op_compressed(),
        Err(WireError::WrongOpCode { .. })
    ));
    let q = frame(&message(OP_QUERY, &[])).unwrap();
    assert!(matches!(
        q.op_msg(),
        Err(WireError::WrongOpCode { found: 2004, .. })
    ));
    assert!(matches!(q.msg_flags(), Err(WireError::WrongOpCode { .. })));
    let mut q = q;
    assert!(matches!(
        q.clear_exhaust_allowed(),
        Err(WireError::WrongOpCode { .. })
    ));
    assert!(matches!(
        q.strip_checksum(),
        Err(WireError::WrongOpCode { .. })
    ));
    assert!(matches!(
        q.append_checksum(),
        Err(WireError::WrongOpCode { .. })
    ));
}

// ----------------------------------------------------------------------------- OP_QUERY/REPLY

fn query_body(doc: &[u8], trailer: &[u8]) -> Vec<u8> {
    [
        &0i32.to_le_bytes()[..],
        b"admin.$cmd\0",
        &0i32.to_le_bytes(),
        &(-1i32).to_le_bytes(),
        doc,
        trailer,
    ]
    .concat()
}

#[test]
fn op_query_with_trailing_bytes_is_rejected() {
    let doc = rawdoc! { "isMaster": 1 }.into_bytes();
    let empty = rawdoc! {}.into_bytes();
    // A full returnFieldsSelector, then one extra byte.
    let body = query_body(&doc, &[&empty[..], &[0u8]].concat());
    assert!(matches!(
        OpQuery::parse(&body),
        Err(WireError::Overrun("OP_QUERY"))
    ));
    // A full returnFieldsSelector, then a second document.
    let body = query_body(&doc, &[&empty[..], &empty[..]].concat());
    assert!(matches!(
        OpQuery::parse(&body),
        Err(WireError::Overrun("OP_QUERY"))
    ));
    // Three stray bytes: too short to be a selector.
    let body = query_body(&doc, &[1, 2, 3]);
    assert!(OpQuery::parse(&body).is_err());
    // And through a frame.
    let f = frame(&message(
        OP_QUERY,
        &query_body(&doc, &[&empty[..], &[0u8]].concat()),
    ))
    .unwrap();
    assert!(f.op_query().is_err());
}

#[test]
fn op_query_truncated_fields_are_rejected() {
    let doc = rawdoc! { "isMaster": 1 }.into_bytes();
    let body = query_body(&doc, &[]);
    for cut in 0..body.len() {
        assert!(OpQuery::parse(&body[..cut]).is_err(), "cut at {cut}");
    }
    // Collection name without its NUL.
    assert!(matches!(
        OpQuery::parse(&[0, 0, 0, 0, b'a', b'b']),
        Err(WireError::InvalidCString(_))
    ));
    // Collection name not UTF-8.
    assert!(matches!(
        OpQuery::parse(&[0, 0, 0, 0, 0xff, 0]),
        Err(WireError::InvalidCString(_))
    ));
}

fn reply_body(number_returned: i32, docs: &[&[u8]]) -> Vec<u8> {
    let mut out = [
        &0i32.to_le_bytes()[..],
        &0i64.to_le_bytes(),
        &0i32.to_le_bytes(),
    ]
    .concat();
    out.extend_from_slice(&number_returned.to_le_bytes());
    for doc in docs {
        out.extend_from_slice(doc);
    }
    out
}

#[test]
fn op_reply_with_number_returned_larger_than_the_documents_is_rejected() {
    let doc = rawdoc! { "ok": 1.0 }.into_bytes();
    for n in [2, 3, 1000, i32::MAX] {
        let body = reply_body(n, &[&doc]);
        assert!(OpReply::parse(&body).is_err(), "{n}");
        assert!(
            frame(&message(OP_REPLY, &body))
                .unwrap()
                .op_reply()
                .is_err()
        );
    }
    // Negative count.
    assert!(matches!(
        OpReply::parse(&reply_body(-1, &[&doc])),
        Err(WireError::Overrun(_))
    ));
    // Fewer claimed than present: bytes left over.
    assert!(matches!(
        OpReply::parse(&reply_body(0, &[&doc])),
        Err(WireError::Overrun(_))
    ));
    // The right count is fine.
    assert_eq!(
        OpReply::parse(&reply_body(1, &[&doc]))
            .unwrap()
            .documents
            .len(),
        1
    );
    // Truncated fixed fields.
    let body = reply_body(1, &[&doc]);
    for cut in 0..20 {
        assert!(
            matches!(OpReply::parse(&body[..cut]), Err(WireError::Truncated(_))),
            "{cut}"
        );
    }
}

// --------------------------------------------------------------------------------- OP_COMPRESSED

fn compressed_body(original: i32, size: i32, compressor: u8, payload: &[u8]) -> Vec<u8> {
    [
        &original.to_le_bytes()[..],
        &size.to_le_bytes(),
        &[compressor],
        payload,
    ]
    .concat()
}

/// The OP_MSG ping without its header: what an OP_COMPRESSED carries.
fn ping_msg_body() -> Vec<u8> {
    msg_body(0, &[&kind0(&ping())])
}

fn decompress(body: &[u8]) -> Result<Frame, WireError> {
    frame(&message(OP_COMPRESSED, body))?.decompress(MAX_MESSAGE_SIZE)
}

fn size_of(payload: &[u8]) -> i32 {
    i32::try_from(payload.len()).unwrap()
}

#[test]
fn op_compressed_with_unknown_compressor_is_rejected() {
    let plain = ping_msg_body();
    for id in [4u8, 5, 0x80, 0xff] {
        let body = compressed_body(OP_MSG, size_of(&plain), id, &plain);
        assert!(matches!(decompress(&body), Err(WireError::UnknownCompressor(i)) if i == id));
    }
}

#[test]
fn op_compressed_wrapping_op_compressed_or_unknown_op_is_rejected() {
    let plain = ping_msg_body();
    for op in [OP_COMPRESSED, 2002, 9999, 0] {
        let body = compressed_body(op, size_of(&plain), 0, &plain);
        assert!(
            matches!(decompress(&body), Err(WireError::InvalidOriginalOpCode(o)) if o == op),
            "{op}"
        );
    }
}

#[test]
fn op_compressed_with_a_bad_uncompressed_size_is_rejected() {
    let plain = ping_msg_body();
    // Negative, or so small the header alone would not fit.
    for size in [-1i32, -16, -17, i32::MIN] {
        let body = compressed_body(OP_MSG, size, 0, &plain);
        assert!(
            matches!(decompress(&body), Err(WireError::MessageLength { .. })),
            "{size}"
        );
    }
    // Above the limit (and the int32 edge, where adding the header would overflow).
    let over = i32::try_from(MAX_MESSAGE_SIZE).unwrap();
    for size in [over, i32::MAX - 15, i32::MAX] {
        let body = compressed_body(OP_MSG, size, 0, &plain);
        assert!(
            matches!(decompress(&body), Err(WireError::MessageLength { .. })),
            "{size}"
        );
    }
    // Against a smaller configured limit.
    let body = compressed_body(OP_MSG, size_of(&plain), 0, &plain);
    let f = frame(&message(OP_COMPRESSED, &body)).unwrap();
    assert!(matches!(
        f.decompress(20),
        Err(WireError::MessageLength { .. })
    ));
    // Not the size of the payload, for every compressor.
    for id in 0u8..4 {
        let compressor = mongo_pool_wire::Compressor::from_id(id).unwrap();
        let packed = frame(&message(OP_MSG, &plain))
            .unwrap()
            .compress(compressor)
            .unwrap();
        let payload = &packed.body()[9..];
        for size in [size_of(&plain) - 1, size_of(&plain) + 1, 0] {
            let body = compressed_body(OP_MSG, size, id, payload);
            assert!(
                matches!(decompress(&body), Err(WireError::Decompress(_))),
                "{compressor:?} {size}"
            );
        }
    }
}

#[test]
fn op_compressed_truncated_prefix_is_rejected() {
    let body = compressed_body(OP_MSG, 35, 0, &[]);
    for cut in 0..9 {
        let f = frame(&message(OP_COMPRESSED, &body[..cut])).unwrap();
        assert!(
            matches!(f.op_compressed(), Err(WireError::Truncated(_))),
            "{cut}"
        );
    }
}

#[test]
fn corrupt_snappy_payload_is_rejected() {
    let plain = ping_msg_body();
    let size = size_of(&plain);
    // Garbage; an empty payload; a literal that claims more bytes than follow.
    for payload in [&[0xffu8; 8][..], &[][..], &[35, 0x88, 1, 2, 3][..]] {
        assert!(matches!(
            decompress(&compressed_body(OP_MSG, size, 1, payload)),
            Err(WireError::Decompress(_))
        ));
    }
    // A copy that reaches back before the start of the output.
    let bad_copy = [35u8, 0x01 | (7 << 2), 0xff];
    assert!(matches!(
        decompress(&compressed_body(OP_MSG, size, 1, &bad_copy)),
        Err(WireError::Decompress(_))
    ));
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn corrupt_zlib_payload_is_rejected() {
    let plain = ping_msg_body();
    let size = size_of(&plain);
    let good = zlib(&plain);
    assert!(decompress(&compressed_body(OP_MSG, size, 2, &good)).is_ok());
    // Garbage, and an empty payload.
    for payload in [&[0xffu8; 16][..], &[][..]] {
        assert!(matches!(
            decompress(&compressed_body(OP_MSG, size, 2, payload)),
            Err(WireError::Decompress(_))
        ));
    }
    // The Adler-32 trailer altered.
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    assert!(matches!(
        decompress(&compressed_body(OP_MSG, size, 2, &bad)),
        Err(WireError::Decompress(_))
    ));
    // The stream cut short: by 1..=4 bytes (inside the Adler-32 trailer: every byte of the
    // data is there, the integrity check is not) and by half.
    for cut in [1, 2, 3, 4, good.len() / 2] {
        let payload = &good[..good.len() - cut];
        assert!(
            matches!(
                decompress(&compressed_body(OP_MSG, size, 2, payload)),
                Err(WireError::Decompress(_))
            ),
            "cut {cut}"
        );
    }
    // Bytes after the end of the stream.
    let trailing = [&good[..], &[0u8, 1, 2]].concat();
    assert!(matches!(
        decompress(&compressed_body(OP_MSG, size, 2, &trailing)),
        Err(WireError::Decompress(_))
    ));
}

#[test]
fn corrupt_zstd_payload_is_rejected() {
    let plain = ping_msg_body();
    let size = size_of(&plain);
    let good = zstd::stream::encode_all(&plain[..], 3).unwrap();
    assert!(decompress(&compressed_body(OP_MSG, size, 3, &good)).is_ok());
    for payload in [
        &[0xffu8; 16][..],
        &[][..],
        &good[..good.len() / 2],
        &good[..good.len() - 1],
    ] {
        assert!(
            matches!(
                decompress(&compressed_body(OP_MSG, size, 3, payload)),
                Err(WireError::Decompress(_))
            ),
            "{payload:?}"
        );
    }
    let trailing = [&good[..], &[0u8, 1, 2]].concat();
    assert!(matches!(
        decompress(&compressed_body(OP_MSG, size, 3, &trailing)),
        Err(WireError::Decompress(_))
    ));
}

#[test]
fn a_decompression_bomb_is_cut_at_the_claimed_size() {
    // 10 MB of zeros compress to a few KB; claim 1 KB.
    let zeros = vec![0u8; 10_000_000];
    for (id, payload) in [
        (2u8, zlib(&zeros)),
        (3, zstd::stream::encode_all(&zeros[..], 3).unwrap()),
    ] {
        let err = decompress(&compressed_body(OP_MSG, 1024, id, &payload)).unwrap_err();
        assert!(matches!(err, WireError::Decompress(_)), "{id}");
    }
}

/// A zstd frame header names the window its decoder must allocate. One that asks for 128 MiB to
/// decode a 1 KB message is refused instead of allocated; the same content with a window that
/// fits its size decodes.
#[test]
fn a_zstd_frame_that_asks_for_a_window_far_beyond_its_size_is_refused() {
    let plain = ping_msg_body();
    let size = size_of(&plain);
    let encode = |window_log: u32| {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.window_log(window_log).unwrap();
        encoder.write_all(&plain).unwrap();
        encoder.finish().unwrap()
    };
    assert!(decompress(&compressed_body(OP_MSG, size, 3, &encode(20))).is_ok());
    let err = decompress(&compressed_body(OP_MSG, size, 3, &encode(27))).unwrap_err();
    assert!(
        matches!(&err, WireError::Decompress(m) if m.starts_with("zstd:")),
        "{err:?}"
    );
}
