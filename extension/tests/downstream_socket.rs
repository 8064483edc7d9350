//! The socket mongo-pool serves: created with mode 0600 (or `MONGO_POOL_SOCKET_MODE`) and
//! owned by the process user; a stale file (a listener that went away, a killed instance) is
//! replaced at start; a path held by a live instance is refused; a sidecar refuses a directory
//! other users could write to (Lambda accepts it); of two instances started at once on one
//! path exactly one serves; an exiting instance removes only its own socket file;
//! `mongo-pool health` tells a running instance from a missing one. (The client cap:
//! `downstream_admission.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use bson::doc;
use downstream_support::rig::{AWS_ENV, client, pool, sim, uri_with};
use mongo_pool::config::{Config, ENV_LAMBDA_RUNTIME_API, ENV_SOCKET, ENV_URI};
use mongo_pool::listener::ListenerError;
use mongo_pool::serve::ServeError;
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

/// Spawns mongo-pool (sidecar) on `socket` without waiting for it.
fn spawn_on(sim: &mongo_pool_testkit::process::AtlasSim, socket: &Path) -> MongoPool {
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("MONGO_POOL_SOCKET", socket.to_str().unwrap()));
    MongoPool::spawn(&uri_with(&sim.start.uri, ""), &env).unwrap()
}

/// The names of the files in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_refuses_a_socket_directory_that_group_or_others_can_write_to() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        // 1777 is /tmp's own mode: sticky does not stop another user binding a free name.
        for dir_mode in [0o1777, 0o777, 0o770] {
            let dir = socket_dir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(dir_mode))
                .unwrap();
            let socket = dir.path().join("mongo-pool.sock");
            let mut pool = spawn_on(&sim, &socket);
            let status = pool.wait_exit(Duration::from_secs(30)).await.unwrap();
            let logs = pool.logs();
            assert_eq!(
                status.code(),
                Some(2),
                "mode {dir_mode:o}: {status}\n{logs}"
            );
            let dir_name = dir.path().display().to_string();
            assert!(
                logs.contains(&format!("the socket directory {dir_name} is not private"))
                    && logs.contains(&format!("{dir_mode:04o}"))
                    && logs.contains("MONGO_POOL_SOCKET="),
                "mode {dir_mode:o}: the reason, the mode and the fix:\n{logs}"
            );
            assert!(
                std::fs::symlink_metadata(&socket).is_err(),
                "mode {dir_mode:o}: no socket was created"
            );
            let left = files_in(dir.path());
            assert!(
                left.is_empty(),
                "mode {dir_mode:o}: nothing created: {left:?}"
            );
        }
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_refuses_a_socket_directory_owned_by_another_user() {
    if own_uid() != 0 {
        eprintln!("skipped: giving a directory to nobody needs root");
        return;
    }
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let dir = socket_dir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        let socket = dir.path().join("mongo-pool.sock");
        let mut pool = spawn_on(&sim, &socket);
        let status = pool.wait_exit(Duration::from_secs(30)).await.unwrap();
        let logs = pool.logs();
        assert_eq!(status.code(), Some(2), "{status}\n{logs}");
        assert!(
            logs.contains("owned by uid 65534, not by uid 0"),
            "the owner and the uid mongo-pool runs as:\n{logs}"
        );
        assert!(std::fs::symlink_metadata(&socket).is_err());
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test]
async fn in_lambda_the_socket_may_sit_in_a_world_writable_sticky_directory_like_tmp() {
    let dir = socket_dir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = dir.path().join("mongo-pool.sock");
    let socket_str = socket.to_str().unwrap().to_owned();
    let config = |lambda: bool| {
        Config::from_lookup(|name| match name {
            ENV_URI => {
                Some("mongodb+srv://cluster0.abcde.mongodb.net/?authMechanism=MONGODB-AWS".into())
            }
            ENV_SOCKET => Some(socket_str.clone()),
            ENV_LAMBDA_RUNTIME_API if lambda => Some("127.0.0.1:9".into()),
            _ => None,
        })
        .unwrap()
    };

    let sidecar = mongo_pool::serve::bind(&config(false)).unwrap_err();
    assert!(
        matches!(
            sidecar,
            ServeError::Listener(ListenerError::SharedDirectory { .. })
        ),
        "{sidecar}"
    );
    let lambda = mongo_pool::serve::bind(&config(true)).expect("Lambda's /tmp is the function's");
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(mode(&socket), 0o600);
    drop(lambda);
    assert!(std::fs::symlink_metadata(&socket).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_instances_started_at_once_on_one_path_exactly_one_serves() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        for round in 0..3 {
            let dir = socket_dir().unwrap();
            let socket = dir.path().join("mongo-pool.sock");
            let mut both = [spawn_on(&sim, &socket), spawn_on(&sim, &socket)];
            // The loser fails at start; the winner runs until stopped.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let loser = loop {
                if let Some(i) = (0..2).find(|&i| !both[i].is_running().unwrap()) {
                    break i;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: neither instance exited: both serve {}?\n{}\n{}",
                    socket.display(),
                    both[0].logs(),
                    both[1].logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let [a, b] = both;
            let (mut loser, mut winner) = if loser == 0 { (a, b) } else { (b, a) };
            let status = loser.wait_exit(Duration::from_secs(5)).await.unwrap();
            let logs = loser.logs();
            assert_eq!(status.code(), Some(2), "round {round}: {status}\n{logs}");
            assert!(
                logs.contains(&format!(
                    "another mongo-pool is serving {}",
                    socket.display()
                )),
                "round {round}: the loser says why:\n{logs}"
            );
            winner.wait_ready(Duration::from_secs(30)).await.unwrap();
            assert!(
                winner.is_running().unwrap(),
                "round {round}: the winner serves"
            );
            // After the loser exited, the winner's socket is still there and serves.
            let up = health(&socket).await.unwrap();
            assert_eq!(up.status.code(), Some(0), "round {round}: {}", up.output);
            assert!(winner.stop().await.unwrap().success());
            assert!(
                std::fs::symlink_metadata(&socket).is_err(),
                "round {round}: the winner removed its socket at exit"
            );
            let left = files_in(dir.path());
            assert!(
                left.is_empty(),
                "round {round}: no staging or lock file left behind: {left:?}"
            );
        }
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exiting_instance_leaves_alone_a_socket_file_that_replaced_its_own() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let dir = socket_dir().unwrap();
        let socket = dir.path().join("mongo-pool.sock");
        let socket_str = socket.to_str().unwrap().to_owned();
        let pool = pool(&sim, "", &[("MONGO_POOL_SOCKET", &socket_str)]).await;

        // Someone else's socket now sits at the path.
        std::fs::remove_file(&socket).unwrap();
        let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let other_inode = std::fs::symlink_metadata(&socket).unwrap().ino();

        assert!(pool.stop().await.unwrap().success());
        let meta = std::fs::symlink_metadata(&socket).expect("the other socket is still there");
        assert_eq!(meta.ino(), other_inode, "and it is the same file");
        let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        other.accept().expect("it still reaches its own listener");
    })
    .await
    .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_served_by_another_process_is_refused_and_left_alone() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim(&[]).await;
        let dir = socket_dir().unwrap();
        let socket = dir.path().join("mongo-pool.sock");
        // Not a mongo-pool (no lock beside it), but alive: it accepts connections.
        let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let inode = std::fs::symlink_metadata(&socket).unwrap().ino();

        let mut pool = spawn_on(&sim, &socket);
        let status = pool.wait_exit(Duration::from_secs(30)).await.unwrap();
        let logs = pool.logs();
        assert_eq!(status.code(), Some(2), "{status}\n{logs}");
        let refusal = format!("{} is in use by a running process", socket.display());
        assert_eq!(
            logs.matches(&refusal).count(),
            1,
            "the start error is printed once: {logs}"
        );
        assert_eq!(
            std::fs::symlink_metadata(&socket).unwrap().ino(),
            inode,
            "the other process keeps its socket"
        );
        let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        other.accept().expect("and its connections");
        assert_eq!(
            files_in(dir.path()),
            vec!["mongo-pool.sock".to_owned()],
            "no staging or lock file left behind"
        );
    })
    .await
    .expect("the scenario finishes in time");
}
