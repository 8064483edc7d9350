//! Arbitrary bytes through the codec, then everything a proxy does with the frames that come
//! out: parse as each op code, edit flags and ids, decompress, inspect commands and replies.
#![no_main]

use bson::RawDocument;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::{Command, Reply};
use mongo_pool_wire::{Frame, OpMsg};
use tokio_util::codec::Decoder;

/// Small enough that decompression claims stay cheap, large enough for real messages.
const MAX_MESSAGE_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut codec = MessageCodec::new(MAX_MESSAGE_SIZE);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        exercise(&frame, true);
    }
    let _ = OpMsg::parse(data);
});

fn exercise(frame: &Frame, unwrap: bool) {
    let _ = frame.header();
    if let Ok(msg) = frame.op_msg() {
        command(msg.body);
        reply(msg.body);
        for seq in &msg.sequences {
            for doc in seq.documents() {
                command(doc);
            }
        }
    }
    if let Ok(query) = frame.op_query() {
        command(query.query);
        let _ = query.command_db();
    }
    if let Ok(op_reply) = frame.op_reply() {
        for doc in op_reply.documents {
            reply(doc);
        }
    }
    let _ = frame.op_compressed();
    let mut edited = frame.clone();
    let _ = edited.clear_exhaust_allowed();
    let _ = edited.strip_checksum();
    let _ = edited.append_checksum();
    if unwrap {
        if let Ok(plain) = frame.clone().decompress(MAX_MESSAGE_SIZE) {
            exercise(&plain, false);
        }
    }
}

fn command(doc: &RawDocument) {
    if let Ok(command) = Command::inspect(doc) {
        let _ = command.read_preference_mode();
        let _ = command.kill_cursor_ids();
    }
}

fn reply(doc: &RawDocument) {
    if let Ok(reply) = Reply::inspect(doc) {
        let _ = reply.has_label("RetryableWriteError");
    }
}
