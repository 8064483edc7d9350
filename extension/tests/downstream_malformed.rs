//! Bad input on one downstream connection closes that connection only: a claimed 2 GiB
//! message, garbage, an unknown op code, a frame whose body is not BSON, OP_COMPRESSED with a
//! bogus size, half a frame then end-of-stream, half a frame then silence. Each is closed (the peer reads end-of-file),
//! logged as a warning, and counted; a driver connection open all along keeps working, and the
//! process stays up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}
mod common {
    pub mod bad_frames;
}

use std::time::Duration;

use bson::{Document, doc};
use common::bad_frames::{claims_two_gib, compressed_with_bogus_size, header, unknown_op_code};
use downstream_support::rig::{client, pool, pool_stats, sim};
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_wire::OpMsgBuilder;
use mongodb::Collection;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const LIMIT: Duration = Duration::from_secs(120);
/// How long mongo-pool gets to close a connection that sent bad input.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

fn http_garbage() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: mongo-pool\r\n\r\n".to_vec()
}

fn op_msg_with_garbage_body() -> Vec<u8> {
    let body = [0u8, 0x30, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01, 0x02, 0x03, 0x04];
    let mut out = header(i32::try_from(16 + 4 + body.len()).unwrap(), 2013);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn hello_frame() -> Vec<u8> {
    let body = bson::rawdoc! { "hello": 1, "$db": "admin" };
    OpMsgBuilder::new(&body)
        .request_id(9)
        .build()
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// Sends `bytes` (then ends the stream if `end`) and expects mongo-pool to close the
/// connection: the next read returns end-of-file, no reply.
async fn expect_closed(pool: &MongoPool, case: &str, bytes: &[u8], end: bool) {
    let mut stream = UnixStream::connect(pool.socket_path()).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if end {
        stream.shutdown().await.unwrap();
    }
    let mut buf = vec![0u8; 1024];
    let read = tokio::time::timeout(CLOSE_LIMIT, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{case}: the connection is still open after {CLOSE_LIMIT:?}"));
    match read {
        Ok(0) => {}
        Ok(n) => panic!(
            "{case}: expected end-of-file, got {n} bytes: {:?}",
            &buf[..n]
        ),
        Err(e) => panic!("{case}: expected end-of-file, got {e}"),
    }
}

async fn driver_keeps_working(coll: &Collection<Document>, n: i32) {
    coll.insert_one(doc! { "_id": n }).await.expect("insert");
    let found = coll.find_one(doc! { "_id": n }).await.expect("find_one");
    assert!(found.is_some());
}

async fn malformed_input_closes_only_its_connection() {
    let sim = sim(&[]).await;
    let mut pool = pool(&sim, "", &[]).await;
    let client = client(&pool, "maxPoolSize=1").await;
    let coll: Collection<Document> = client.database("app").collection("alive");
    driver_keeps_working(&coll, 0).await;

    let half = hello_frame();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("a claimed 2 GiB message", claims_two_gib(), false),
        ("HTTP garbage", http_garbage(), false),
        ("an unknown op code", unknown_op_code(), false),
        (
            "an OP_MSG whose body is not BSON",
            op_msg_with_garbage_body(),
            false,
        ),
        (
            "OP_COMPRESSED claiming 2 GiB uncompressed",
            compressed_with_bogus_size(),
            false,
        ),
        (
            "half a frame, then end-of-stream",
            half[..half.len() / 2].to_vec(),
            true,
        ),
        // Closed after PARTIAL_MESSAGE_LIMIT (5 s), well inside CLOSE_LIMIT.
        (
            "half a frame, then silence",
            half[..half.len() / 2].to_vec(),
            false,
        ),
    ];
    for (i, (case, bytes, end)) in cases.iter().enumerate() {
        expect_closed(&pool, case, bytes, *end).await;
        driver_keeps_working(&coll, i32::try_from(i).unwrap() + 1).await;
        assert!(
            pool.is_running().unwrap(),
            "mongo-pool is still running after {case}"
        );
    }

    let stats = pool_stats(&pool).await;
    let malformed = stats
        .get_document("downstreamConnections")
        .unwrap()
        .get_i64("malformed")
        .unwrap();
    assert_eq!(
        malformed,
        i64::try_from(cases.len()).unwrap(),
        "every bad connection is counted: {stats}"
    );
    let logs = pool.logs();
    let warnings = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("malformed"))
        .count();
    assert_eq!(
        warnings,
        cases.len(),
        "one warning per bad connection in mongo-pool's stderr:\n{logs}"
    );
    assert_eq!(
        coll.count_documents(doc! {}).await.unwrap(),
        u64::try_from(cases.len()).unwrap() + 1
    );
    client.shutdown().await;
    let exit = pool.stop().await.unwrap();
    assert!(exit.success(), "mongo-pool exits 0 on SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_own_downstream_connection() {
    tokio::time::timeout(LIMIT, malformed_input_closes_only_its_connection())
        .await
        .expect("the scenario finishes in time");
}
