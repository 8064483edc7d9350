//! The codec cuts a byte stream into frames: a partial frame is `Ok(None)`, several frames in one
//! buffer come out one by one, and a large claimed length does not reserve memory ahead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bson::rawdoc;
use bytes::BytesMut;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{Frame, MAX_MESSAGE_SIZE, OpCode, OpMsgBuilder, OpReplyBuilder, WireError};
use tokio_util::codec::{Decoder, Encoder};

fn ping(request_id: i32) -> Frame {
    let doc = rawdoc! { "ping": 1, "$db": "admin" };
    OpMsgBuilder::new(&doc)
        .request_id(request_id)
        .checksum(true)
        .build()
        .unwrap()
}

#[test]
fn partial_frame_fed_one_byte_at_a_time_is_read_more_until_complete() {
    let frame = ping(5);
    let bytes = frame.as_bytes().to_vec();
    let mut codec = MessageCodec::default();
    let mut buf = BytesMut::new();
    for (i, byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let out = codec.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert!(
                out.is_none(),
                "frame came out after {} of {} bytes",
                i + 1,
                bytes.len()
            );
            assert_eq!(
                buf.len(),
                i + 1,
                "the codec consumed bytes of a partial frame"
            );
        } else {
            assert_eq!(out.unwrap(), frame);
        }
    }
    assert!(buf.is_empty());
    assert!(codec.decode(&mut buf).unwrap().is_none());
}

#[test]
fn two_frames_in_one_buffer_come_out_in_order() {
    let first = ping(1);
    let doc = rawdoc! { "ok": 1.0 };
    let second = OpReplyBuilder::new(vec![&doc])
        .request_id(2)
        .response_to(1)
        .build()
        .unwrap();
    let mut buf = BytesMut::new();
    let mut codec = MessageCodec::default();
    codec.encode(&first, &mut buf).unwrap();
    codec.encode(second.clone(), &mut buf).unwrap();
    // And half of a third.
    let third = ping(3);
    buf.extend_from_slice(&third.as_bytes()[..20]);

    let a = codec.decode(&mut buf).unwrap().unwrap();
    let b = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(a, first);
    assert_eq!(a.op_code(), OpCode::Msg);
    assert_eq!(b, second);
    assert_eq!(b.op_code(), OpCode::Reply);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&third.as_bytes()[20..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), third);
    assert!(buf.is_empty());
}

#[test]
fn decode_eof_with_a_partial_frame_is_an_error() {
    let mut codec = MessageCodec::default();
    let mut buf = BytesMut::from(&ping(1).as_bytes()[..30]);
    assert!(matches!(codec.decode_eof(&mut buf), Err(WireError::Io(_))));
    assert!(codec.decode_eof(&mut BytesMut::new()).unwrap().is_none());
}

#[test]
fn a_huge_but_valid_length_does_not_reserve_the_claim_ahead() {
    // 40 MB is under the 48 MB limit: the codec must wait for it, but not allocate it on a claim.
    const CLAIM: usize = 40_000_000;
    let mut header = Vec::new();
    header.extend_from_slice(&i32::try_from(CLAIM).unwrap().to_le_bytes());
    header.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    header.extend_from_slice(&2013i32.to_le_bytes());

    let mut codec = MessageCodec::default();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&header);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(
        buf.capacity() <= 256 * 1024,
        "capacity {} after the header",
        buf.capacity()
    );

    // Trickle in 2 MB, 4 KiB at a time: capacity follows the bytes at hand, not the claim.
    let chunk = vec![0u8; 4096];
    for _ in 0..512 {
        buf.extend_from_slice(&chunk);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        let bound = 2 * buf.len() + 256 * 1024;
        assert!(
            buf.capacity() <= bound,
            "capacity {} with {} bytes",
            buf.capacity(),
            buf.len()
        );
    }
    assert!(buf.capacity() < CLAIM / 4);
}

#[test]
fn a_configured_limit_applies_to_whole_frames() {
    let frame = ping(1);
    let len = frame.len();
    let mut exact = MessageCodec::new(len);
    assert_eq!(exact.max_message_size(), len);
    assert!(
        exact
            .decode(&mut BytesMut::from(frame.as_bytes()))
            .unwrap()
            .is_some()
    );
    let mut smaller = MessageCodec::new(len - 1);
    assert!(matches!(
        smaller.decode(&mut BytesMut::from(frame.as_bytes())),
        Err(WireError::MessageLength { .. })
    ));
    assert_eq!(MessageCodec::default().max_message_size(), MAX_MESSAGE_SIZE);
}

#[test]
fn a_header_only_frame_is_a_frame() {
    // 16 bytes, OP_REPLY: framing accepts it; parsing says what is missing.
    let bytes = [16u8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let frame = MessageCodec::default()
        .decode(&mut BytesMut::from(&bytes[..]))
        .unwrap()
        .unwrap();
    assert_eq!(frame.len(), 16);
    assert!(!frame.is_empty());
    assert_eq!(frame.request_id(), 9);
    assert!(matches!(frame.op_reply(), Err(WireError::Truncated(_))));
}
