//! Decode + inspect throughput: bytes in a buffer -> `MessageCodec::decode` -> `Frame::op_msg`
//! -> `Command::inspect`, for a small command (a ~200-byte `find`) and a bulk insert (~16 KiB,
//! a kind-1 `documents` sequence). Copying the input into the codec's buffer is setup, not
//! measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bson::{RawDocumentBuf, rawdoc};
use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::inspect::Command;
use mongo_pool_wire::{Frame, OpMsgBuilder};
use tokio_util::codec::Decoder;

fn lsid() -> RawDocumentBuf {
    rawdoc! {
        "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0x42; 16] },
    }
}

/// A driver's `find`: filter, lsid, $clusterTime gossip, $db.
fn small_find() -> Frame {
    let body = rawdoc! {
        "find": "orders",
        "filter": { "sku": 12345_i64 },
        "limit": 10,
        "lsid": lsid(),
        "$clusterTime": {
            "clusterTime": bson::Timestamp { time: 1_700_000_000, increment: 7 },
            "signature": {
                "hash": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; 20] },
                "keyId": 7_300_000_000_000_000_001_i64,
            },
        },
        "$db": "shop",
    };
    OpMsgBuilder::new(&body).request_id(1).build().unwrap()
}

/// An `insert` of ~16 KiB carried in a kind-1 `documents` sequence.
fn large_insert() -> Frame {
    let body = rawdoc! { "insert": "orders", "ordered": true, "lsid": lsid(), "txnNumber": 1_i64, "$db": "shop" };
    let docs: Vec<RawDocumentBuf> = (0..139)
        .map(|i| {
            rawdoc! {
                "_id": i,
                "customerId": 12345_i64 + i64::from(i),
                "status": "open",
                "total": f64::from(i) * 1.25,
                "note": "x".repeat(40),
            }
        })
        .collect();
    OpMsgBuilder::new(&body)
        .request_id(2)
        .sequence("documents", docs.iter().map(|d| d.as_ref()).collect())
        .build()
        .unwrap()
}

/// What the proxy does per request: frame, parse, inspect. Returns something derived from all
/// three so nothing is optimised away.
fn decode_and_inspect(codec: &mut MessageCodec, buf: &mut BytesMut) -> usize {
    let frame = codec.decode(buf).unwrap().expect("a whole frame");
    let msg = frame.op_msg().unwrap();
    let command = Command::inspect(msg.body).unwrap();
    command.name.len() + command.db.map_or(0, str::len) + msg.sequences.len() + frame.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_inspect");
    for (name, frame) in [("find_small", small_find()), ("insert_16k", large_insert())] {
        let bytes = frame.as_bytes().to_vec();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut codec = MessageCodec::default();
        group.bench_function(format!("{name}_{}B", bytes.len()), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| black_box(decode_and_inspect(&mut codec, buf)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
