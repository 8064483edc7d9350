//! The Unix socket the function's driver connects to. Bound before anything else happens (in
//! Lambda, before registering, so it exists when the function starts), created with its final
//! mode in place (bound under a random staging name, chmod-ed, then renamed into place, so no
//! client can connect while the mode is still the umask's), in a directory no other user can
//! write to (sidecars), guarded by a lock file so one instance serves a path, a stale file from
//! a killed instance replaced, and a path held by a live process refused: see
//! `listener/socket_file.rs`. At most `MONGO_POOL_MAX_CLIENTS` downstream connections are
//! served at once; at the cap the longest-idle one makes room, and when all are busy one more
//! waits briefly, then gets a clear error: see `listener/admission.rs`.

mod admission;
mod socket_file;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bson::{RawDocumentBuf, doc};
use futures_util::{SinkExt, StreamExt};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{OpCode, OpMsgBuilder, OpReplyBuilder};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admission::{Activity, Busy, OVER_CAP_WAIT, REFUSAL_LOG_INTERVAL};
pub use socket_file::{DirectoryProblem, Host, Socket, bind};

use crate::proxy::{DownstreamCounters, Proxy};
use crate::session;
use admission::Admission;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The socket's directory could let another user take the path (sidecars).
    #[error(
        "the socket directory {dir} is not private to mongo-pool: {problem}; use a directory \
         owned by mongo-pool's user and writable by it alone (e.g. `install -d -m 0700 DIR`, or a \
         volume shared only by the application and mongo-pool) and set MONGO_POOL_SOCKET=DIR/mongo-pool.sock"
    )]
    SharedDirectory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: DirectoryProblem,
    },
    /// Another mongo-pool holds the lock beside the path.
    #[error(
        "another mongo-pool is serving {socket} (it holds {lock}); stop it or set \
         MONGO_POOL_SOCKET to another path"
    )]
    Locked {
        /// The socket path.
        socket: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Another live process serves the path.
    #[error(
        "{0} is in use by a running process (another mongo-pool?); stop it or set MONGO_POOL_SOCKET to another path"
    )]
    InUse(PathBuf),
    /// The path exists and is not a socket: never removed.
    #[error("{0} exists and is not a socket; remove it or set MONGO_POOL_SOCKET to another path")]
    NotASocket(PathBuf),
    /// The file system refused.
    #[error("cannot create the socket {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Accepts downstream connections until `shutdown`, one task per connection (tracked by
/// `tracker`), at most `max_clients` at once.
pub async fn run(
    socket: Socket,
    proxy: Arc<Proxy>,
    max_clients: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let admission = Admission::new(max_clients);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a downstream connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let proxy = Arc::clone(&proxy);
        let admission = Arc::clone(&admission);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let Some(admitted) = admission.admit(&shutdown).await else {
                DownstreamCounters::add(&proxy.downstream.refused);
                admission.log_refusal();
                refuse(stream, admission.max_clients()).await;
                return;
            };
            DownstreamCounters::add(&proxy.downstream.total);
            DownstreamCounters::add(&proxy.downstream.current);
            let closed = admitted.activity.closed().clone();
            session::run(Arc::clone(&proxy), stream, closed, &admitted.activity).await;
            proxy
                .downstream
                .current
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(admitted);
        });
    }
    drop(socket);
}

/// Answers the first request of a connection over the cap with an error, then closes it.
async fn refuse(stream: UnixStream, max_clients: usize) {
    let mut framed = Framed::new(stream, MessageCodec::default());
    let Ok(Some(Ok(request))) = tokio::time::timeout(Duration::from_secs(1), framed.next()).await
    else {
        return;
    };
    let body = doc! {
        "ok": 0.0,
        "errmsg": format!("mongo-pool is serving MONGO_POOL_MAX_CLIENTS={max_clients} connections already, each with a request in flight; use one MongoClient per process or raise the limit"),
        "code": 6,
        "codeName": "HostUnreachable",
    };
    let Ok(raw) = RawDocumentBuf::try_from(&body) else {
        return;
    };
    let reply = match request.op_code() {
        OpCode::Query => OpReplyBuilder::new(vec![&raw])
            .response_to(request.request_id())
            .build(),
        _ => OpMsgBuilder::new(&raw)
            .response_to(request.request_id())
            .build(),
    };
    if let Ok(reply) = reply {
        let _ = framed.send(reply).await;
    }
}
