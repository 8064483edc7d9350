//! Who serves the socket (`SO_PEERCRED`): by default the client talks only to a process running
//! as its own uid; a socket served by anyone else (a squatter that took the path) gets
//! `Error::SocketPeer` and not a single byte; `ClientOptions::socket_uid` or
//! `MONGO_POOL_SOCKET_UID` names mongo-pool's uid when it runs as another user on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod rig;
}

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bson::doc;
use mongo_pool_client::{Client, ClientOptions, Error, SOCKET_UID_ENV};
use mongo_pool_testkit::pool_process::socket_dir;
use mongo_pool_testkit::process::{binary, wait_for};
use support::rig::{KEY_ID, SECRET, bounded, pool, sim};
use tokio::io::AsyncReadExt as _;

fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[tokio::test]
async fn a_socket_served_by_another_uid_is_refused_before_a_byte_is_sent() {
    bounded(async {
        let dir = socket_dir().unwrap();
        let path = dir.path().join("squatter.sock");
        let squatter = tokio::net::UnixListener::bind(&path).unwrap();
        // This process is the squatter; the client expects mongo-pool to run as another uid.
        let expected = own_uid().wrapping_add(1);
        let options = ClientOptions::new(&path)
            .socket_uid(expected)
            .checkout_timeout(Duration::from_secs(10));
        let connecting = tokio::spawn(Client::connect_with(options));
        let (mut accepted, _) = squatter.accept().await.unwrap();
        let err = connecting.await.unwrap().unwrap_err();
        match &err {
            Error::SocketPeer {
                path: p,
                expected: e,
                actual,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*e, expected);
                assert_eq!(*actual, own_uid());
            }
            other => panic!("expected SocketPeer, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(&format!("served by uid {}", own_uid()))
                && message.contains("MONGO_POOL_SOCKET_UID"),
            "{message}"
        );
        let mut received = Vec::new();
        accepted.read_to_end(&mut received).await.unwrap();
        assert!(
            received.is_empty(),
            "the squatter got {} bytes",
            received.len()
        );
    })
    .await;
}

#[tokio::test]
async fn mongo_pool_socket_uid_that_is_not_a_number_fails_every_connection_with_its_value() {
    bounded(async {
        let dir = socket_dir().unwrap();
        let path = dir.path().join("mongo-pool.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let path_str = path.to_str().unwrap().to_owned();
        let options = ClientOptions::from_lookup(|name| match name {
            "MONGO_POOL_SOCKET" => Some(path_str.clone()),
            n if n == SOCKET_UID_ENV => Some("mongo-pool".to_owned()),
            _ => None,
        });
        let err = Client::connect_with(options).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("MONGO_POOL_SOCKET_UID=\"mongo-pool\""),
            "{err}"
        );

        let options =
            ClientOptions::from_lookup(|name| (name == SOCKET_UID_ENV).then(|| "993".into()));
        assert_eq!(options.socket_uid, Some(993));
        assert_eq!(ClientOptions::from_lookup(|_| None).socket_uid, None);
    })
    .await;
}

#[tokio::test]
async fn by_default_a_mongo_pool_running_as_the_same_user_is_accepted() {
    bounded(async {
        let sim = sim(&[]).await;
        let pool = pool(&sim, &[]).await;
        let client = Client::connect_with(ClientOptions::new(pool.socket_path()))
            .await
            .expect("same uid: accepted");
        let pong = client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .unwrap();
        assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
    })
    .await;
}

/// Starts `mongo-pool` as uid/gid `uid` on a socket in `dir` (which `uid` must own), logs in
/// `log`.
fn spawn_as(uid: u32, uri: &str, dir: &Path, log: &Path) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(binary("mongo-pool").unwrap());
    command
        .env_clear()
        .env("MONGO_POOL_URI", uri)
        .env("MONGO_POOL_SOCKET", dir.join("mongo-pool.sock"))
        .env("MONGO_POOL_MODE", "sidecar")
        .env("MONGO_POOL_LOG_FORMAT", "text")
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    command.spawn().expect("mongo-pool starts as another user")
}

#[tokio::test]
async fn a_mongo_pool_running_as_another_user_is_refused_unless_its_uid_is_named() {
    if own_uid() != 0 {
        eprintln!("skipped: running mongo-pool as nobody needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    bounded(async {
        let sim = sim(&[]).await;
        let dir = socket_dir().unwrap();
        // A directory private to nobody, who runs mongo-pool there.
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets).unwrap();
        std::os::unix::fs::chown(&sockets, Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("mongo-pool.log");
        let mut child = spawn_as(NOBODY, &sim.start.uri, &sockets, &log);
        let socket = sockets.join("mongo-pool.sock");
        let ready = wait_for("mongo-pool's socket", Duration::from_secs(30), || async {
            tokio::net::UnixStream::connect(&socket).await.is_ok()
        })
        .await;
        if let Err(e) = ready {
            panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }

        let err = Client::connect_with(ClientOptions::new(&socket))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::SocketPeer {
                    expected: 0,
                    actual: NOBODY,
                    ..
                }
            ),
            "by default the client wants its own uid: {err:?}"
        );

        let client = Client::connect_with(ClientOptions::new(&socket).socket_uid(NOBODY))
            .await
            .expect("named: accepted");
        let pong = client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .unwrap();
        assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
        child.start_kill().unwrap();
        let _ = child.wait().await;
    })
    .await;
}
