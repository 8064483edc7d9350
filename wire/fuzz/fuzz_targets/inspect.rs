//! Arbitrary bytes as a BSON document through the command and reply inspectors: the input as
//! it is (when it is a well-framed document) and the input framed as a document's elements
//! (length prefix and terminator added), so mutations reach the element parser.
#![no_main]

use bson::RawDocument;
use libfuzzer_sys::fuzz_target;
use mongo_pool_wire::inspect::{Command, Reply};

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = RawDocument::from_bytes(data) {
        inspect(doc);
    }
    let Ok(len) = i32::try_from(data.len() + 5) else {
        return;
    };
    let mut framed = len.to_le_bytes().to_vec();
    framed.extend_from_slice(data);
    framed.push(0);
    if let Ok(doc) = RawDocument::from_bytes(&framed) {
        inspect(doc);
    }
});

fn inspect(doc: &RawDocument) {
    if let Ok(command) = Command::inspect(doc) {
        let _ = command.read_preference_mode();
        let _ = command.kill_cursor_ids();
        let _ = command.in_transaction();
    }
    if let Ok(reply) = Reply::inspect(doc) {
        let _ = reply.has_label("RetryableWriteError");
        let _ = reply.labels().count();
    }
}
