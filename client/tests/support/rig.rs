//! The rig of the client's integration tests: atlas-sim (a replica set verifying one IAM key),
//! the `mongo-pool` binary in front of it in sidecar mode, and a [`Client`] on its socket.
//! Everything is started by the test and stopped when the handles drop.
//!
//! Each test file declares `mod support { pub mod rig; }`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use mongo_pool_client::{Client, ClientOptions};
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::AtlasSim;
use serde_json::Value;

/// The long-term key atlas-sim knows (`--principal`).
pub const KEY_ID: &str = "AKIDCLIENTTEST";
/// Its secret.
pub const SECRET: &str = "client-test-secret";

/// The most any one test may take, start-up included.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Runs `test` and fails it when it takes longer than [`TEST_LIMIT`].
pub async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_LIMIT:?}"));
}

/// atlas-sim, mongo-pool in front of it, and a client on the socket.
pub struct Rig {
    pub sim: AtlasSim,
    pub pool: MongoPool,
    pub client: Client,
}

/// Starts atlas-sim with `args` (plus the principal).
pub async fn sim(args: &[&str]) -> AtlasSim {
    let principal = format!("{KEY_ID}:{SECRET}");
    let mut all = vec!["--principal", principal.as_str()];
    all.extend_from_slice(args);
    AtlasSim::start(&all).await.expect("atlas-sim starts")
}

/// Starts mongo-pool (sidecar) in front of `sim`, with `extra_env` last.
pub async fn pool(sim: &AtlasSim, extra_env: &[(&str, &str)]) -> MongoPool {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    env.extend_from_slice(extra_env);
    MongoPool::start(&sim.start.uri, &env)
        .await
        .expect("mongo-pool starts")
}

/// A client on `socket` (connected: the handshake ran).
pub async fn client(socket: &Path) -> Client {
    Client::connect_with(ClientOptions::new(socket).checkout_timeout(Duration::from_secs(20)))
        .await
        .expect("the client connects to mongo-pool")
}

impl Rig {
    pub async fn start() -> Rig {
        let sim = sim(&[]).await;
        let pool = pool(&sim, &[]).await;
        let client = client(pool.socket_path()).await;
        Rig { sim, pool, client }
    }

    /// `/status` of atlas-sim.
    pub async fn status(&self) -> Value {
        self.sim.status().await.expect("atlas-sim /status")
    }

    /// How many `name` commands atlas-sim received, over all members.
    pub async fn commands(&self, name: &str) -> u64 {
        commands(&self.status().await, name)
    }

    /// Configures atlas-sim's `failCommand` fail point through its control API.
    pub async fn fail_point(&self, mode: Value, data: Value) {
        self.sim
            .post(
                "/failpoint",
                Some(serde_json::json!({
                    "configureFailPoint": "failCommand", "mode": mode, "data": data,
                })),
            )
            .await
            .expect("configure the fail point");
    }

    /// mongo-pool's stderr, for failure messages.
    pub fn logs(&self) -> String {
        self.pool.logs()
    }
}

/// `members.*.commands.<name>` summed over members.
pub fn commands(status: &Value, name: &str) -> u64 {
    status["members"]
        .as_object()
        .expect("members in /status")
        .values()
        .map(|m| m["commands"][name].as_u64().unwrap_or(0))
        .sum()
}
