//! The socket mongo-pool serves: created with mode 0600 (or `MONGO_POOL_SOCKET_MODE`) and
//! owned by the process user; a stale file (a listener that went away, a killed instance) is
//! replaced at start; a path held by a live instance is refused; connections beyond
//! `MONGO_POOL_MAX_CLIENTS` get a clear error after a brief wait; `mongo-pool health` tells a
//! running instance from a missing one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::time::{Duration, Instant};

use bson::doc;
use downstream_support::rig::{AWS_ENV, Raw, client, pool, pool_stats, sim, uri_with};
use mongo_pool::listener::OVER_CAP_WAIT;
use mongo_pool_testkit::pool_process::{MongoPool, health, socket_dir};
use mongo_pool_testkit::process::Signal;

const LIMIT: Duration = Duration::from_secs(120);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

async fn ping(pool: &MongoPool) {
    let client = client(pool, "").await;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping through the socket");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_created_0600_by_default_and_with_mongo_pool_socket_mode_when_set() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let default = pool(&sim, "", &[]).await;
        let meta = std::fs::metadata(default.socket_path()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.uid(), own_uid(), "owned by the process user");
        assert_eq!(mode(default.socket_path()), 0o600);

        let group = pool(&sim, "", &[("MONGO_POOL_SOCKET_MODE", "0660")]).await;
        assert_eq!(mode(group.socket_path()), 0o660);
        ping(&group).await;
        assert!(default.stop().await.unwrap().success());
        assert!(group.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_connect_to_a_0600_socket() {
    if own_uid() != 0 {
        eprintln!("skipped: dropping privileges to nobody needs root");
        return;
    }
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        for (socket_mode, nobody_may_connect) in [("0600", false), ("0666", true)] {
            // The directory is opened to everyone, so only the socket's own mode decides.
            let dir = socket_dir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let path = dir.path().join("mongo-pool.sock");
            let path_str = path.to_str().unwrap();
            let pool = pool(
                &sim,
                "",
                &[
                    ("MONGO_POOL_SOCKET", path_str),
                    ("MONGO_POOL_SOCKET_MODE", socket_mode),
                ],
            )
            .await;
            let binary = mongo_pool_testkit::process::binary("mongo-pool").unwrap();
            let out = tokio::process::Command::new(binary)
                .arg("health")
                .env_clear()
                .env("MONGO_POOL_SOCKET", &path)
                .uid(65534)
                .gid(65534)
                .kill_on_drop(true)
                .output()
                .await
                .expect("mongo-pool health runs as nobody");
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if nobody_may_connect {
                assert!(
                    out.status.success(),
                    "mode {socket_mode}: nobody connects: {output}"
                );
            } else {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "mode {socket_mode}: nobody is refused: {output}"
                );
                assert!(
                    output.contains("ermission denied"),
                    "mode {socket_mode}: the refusal is the file mode's: {output}"
                );
            }
            assert!(pool.stop().await.unwrap().success());
        }
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_replaced_at_start() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let dir = socket_dir().unwrap();
        let path = dir.path().join("mongo-pool.sock");
        let path_str = path.to_str().unwrap().to_owned();

        // A listener that went away leaves its file behind.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let first = pool(&sim, "", &[("MONGO_POOL_SOCKET", &path_str)]).await;
        ping(&first).await;
        assert_eq!(mode(&path), 0o600);
        assert!(
            first.logs().contains("stale"),
            "the replacement is logged:\n{}",
            first.logs()
        );

        // A killed instance (no chance to clean up) leaves its file behind too.
        first.signal(Signal::SIGKILL).unwrap();
        let status = first.stop().await.unwrap();
        assert!(!status.success(), "SIGKILL-ed: {status}");
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "the killed instance left its socket file"
        );
        let second = pool(&sim, "", &[("MONGO_POOL_SOCKET", &path_str)]).await;
        ping(&second).await;
        assert!(second.stop().await.unwrap().success());
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "a clean stop removes the socket file"
        );
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_held_by_a_live_mongo_pool_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let live = pool(&sim, "", &[]).await;
        let path = live.socket_path().to_str().unwrap().to_owned();

        let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
        env.push(("MONGO_POOL_SOCKET", &path));
        let mut second = MongoPool::spawn(&uri_with(&sim.start.uri, ""), &env).unwrap();
        let status = second.wait_exit(Duration::from_secs(30)).await.unwrap();
        assert!(!status.success(), "the second instance fails: {status}");
        let logs = second.logs();
        assert!(
            logs.contains(&path),
            "the second instance names the path it could not take:\n{logs}"
        );

        // The live instance keeps its socket and keeps serving.
        assert_eq!(mode(live.socket_path()), 0o600);
        ping(&live).await;
        assert!(live.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_mongo_pool_max_clients_gets_an_error_after_a_brief_wait() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[("MONGO_POOL_MAX_CLIENTS", "2")]).await;
        let hello = doc! { "hello": 1, "$db": "admin" };

        // Two connections served: each has had a reply, so each holds a slot.
        let mut first = Raw::connect(&pool).await;
        let mut second = Raw::connect(&pool).await;
        for raw in [&mut first, &mut second] {
            let reply = raw.command(&hello).await.unwrap();
            assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        }

        // A third waits briefly, then its first request gets a clear error.
        let started = Instant::now();
        let mut third = Raw::connect(&pool).await;
        let reply = third.command(&hello).await.unwrap();
        let waited = started.elapsed();
        assert_eq!(reply.get_f64("ok").unwrap(), 0.0, "{reply}");
        let errmsg = reply.get_str("errmsg").unwrap();
        assert!(errmsg.contains("MONGO_POOL_MAX_CLIENTS"), "{errmsg}");
        assert!(
            waited >= OVER_CAP_WAIT.saturating_sub(Duration::from_millis(100)),
            "refused after {waited:?}, before the brief wait ({OVER_CAP_WAIT:?})"
        );
        let after = third.command(&hello).await;
        assert!(
            after.is_err(),
            "the refused connection is closed: {after:?}"
        );

        // The slots still work, and a freed slot serves a new connection.
        let reply = second
            .command(&doc! { "ping": 1, "$db": "admin" })
            .await
            .unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        drop(first);
        let mut fourth = Raw::connect(&pool).await;
        let reply = fourth.command(&hello).await.unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0, "{reply}");
        drop(fourth);
        drop(second);

        let stats = pool_stats(&pool).await;
        let refused = stats
            .get_document("downstreamConnections")
            .unwrap()
            .get_i64("refused")
            .unwrap();
        assert_eq!(refused, 1, "{stats}");
        assert!(
            pool.logs().contains("MONGO_POOL_MAX_CLIENTS"),
            "the refusal is logged:\n{}",
            pool.logs()
        );
        assert!(pool.stop().await.unwrap().success());
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_pool_health_exits_0_against_a_running_instance_and_1_against_a_missing_socket() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, "", &[]).await;
        let up = health(pool.socket_path()).await.unwrap();
        assert_eq!(up.status.code(), Some(0), "{}", up.output);

        let dir = socket_dir().unwrap();
        let missing = health(&dir.path().join("missing.sock")).await.unwrap();
        assert_eq!(missing.status.code(), Some(1), "{}", missing.output);
        assert!(
            missing.output.contains("cannot connect"),
            "{}",
            missing.output
        );

        // Stopped: the same path is now missing too.
        let path = pool.socket_path().to_owned();
        assert!(pool.stop().await.unwrap().success());
        let stopped = health(&path).await.unwrap();
        assert_eq!(stopped.status.code(), Some(1), "{}", stopped.output);
    })
    .await
    .expect("the scenario finishes in time");
}
