//! Issue 10, fault 10: the extension is killed (SIGKILL, no chance to clean up) and started
//! again, as a new Init would: the stale socket file it left is replaced, and a client created
//! before the kill reconnects by itself, its writes before and after both stored once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod rig;
}

use std::os::unix::fs::FileTypeExt as _;

use bson::{Document, doc};
use mongo_pool_client::Error;
use mongo_pool_testkit::process::Signal;
use support::rig::{bounded, client, pool, sim};

#[tokio::test]
async fn after_a_kill_and_a_new_start_the_stale_socket_is_replaced_and_the_client_reconnects() {
    bounded(async {
        let sim = sim(&["--members", "1"]).await;
        let dir = mongo_pool_testkit::pool_process::socket_dir().unwrap();
        let socket = dir.path().join("mongo-pool.sock");
        let socket_env = socket.to_str().unwrap().to_owned();
        let env = [("MONGO_POOL_SOCKET", socket_env.as_str())];

        let first = pool(&sim, &env).await;
        let client = client(&socket).await;
        let docs = client.database("app").collection::<Document>("restart");
        docs.insert_one(&doc! {"_id": 1}).await.unwrap();

        // Killed: the socket file stays behind, nothing listens on it.
        first.signal(Signal::SIGKILL).unwrap();
        let status = first.stop().await.unwrap();
        assert!(!status.success(), "SIGKILL-ed: {status}");
        let meta = std::fs::symlink_metadata(&socket).expect("the killed instance left its file");
        assert!(meta.file_type().is_socket());
        let err = docs.find_one(doc! {}, None).await.unwrap_err();
        assert!(
            err.is_network() || matches!(err, Error::SocketMissing { .. }),
            "while nothing listens, a network error: {err:?}"
        );

        // A new start replaces the stale file and says so; the same client reconnects.
        let second = pool(&sim, &env).await;
        assert!(
            second.logs().contains("stale"),
            "the replacement is logged:\n{}",
            second.logs()
        );
        let found = docs
            .find_one(doc! {"_id": 1}, None)
            .await
            .unwrap_or_else(|e| panic!("{e}\nmongo-pool:\n{}", second.logs()));
        assert_eq!(found, Some(doc! {"_id": 1}));
        docs.insert_one(&doc! {"_id": 2}).await.unwrap();
        assert_eq!(docs.count_documents(doc! {}, None).await.unwrap(), 2);
        assert!(second.stop().await.unwrap().success());
    })
    .await;
}
