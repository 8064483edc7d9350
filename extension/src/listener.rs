//! The Unix socket the function's driver connects to. Bound before anything else happens (in
//! Lambda, before registering, so it exists when the function starts), created with its final
//! mode in place (bound under a temporary name, chmod-ed, then renamed over the path, so no
//! client can connect while the mode is still the umask's), a stale file from a killed instance
//! is replaced, and a path held by a live process is refused. At most
//! `MONGO_POOL_MAX_CLIENTS` downstream connections are served at once; one more waits briefly,
//! then gets a clear error.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bson::{RawDocumentBuf, doc};
use futures_util::{SinkExt, StreamExt};
use mongo_pool_wire::codec::MessageCodec;
use mongo_pool_wire::{OpCode, OpMsgBuilder, OpReplyBuilder};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::{DownstreamCounters, Proxy};
use crate::session;

/// How long a connection over the cap waits for a slot before it is refused.
pub const OVER_CAP_WAIT: Duration = Duration::from_secs(2);

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
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

/// The bound socket; the file is removed when it is dropped.
#[derive(Debug)]
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Socket {
    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds the socket at `path` with file mode `mode`. Must run inside a tokio runtime.
///
/// # Errors
/// [`ListenerError::InUse`], [`ListenerError::NotASocket`], [`ListenerError::Io`].
pub fn bind(path: &Path, mode: u32) -> Result<Socket, ListenerError> {
    let io = |source| ListenerError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ListenerError::InUse(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => return Err(ListenerError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(io)?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&staging, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(io(e));
    }
    Ok(Socket {
        listener,
        path: path.to_owned(),
    })
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
    let slots = Arc::new(Semaphore::new(max_clients.max(1)));
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
        let slots = Arc::clone(&slots);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let slot = match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => match tokio::time::timeout(OVER_CAP_WAIT, slots.acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        DownstreamCounters::add(&proxy.downstream.refused);
                        refuse(stream, max_clients).await;
                        return;
                    }
                },
            };
            DownstreamCounters::add(&proxy.downstream.total);
            DownstreamCounters::add(&proxy.downstream.current);
            session::run(Arc::clone(&proxy), stream, shutdown).await;
            proxy
                .downstream
                .current
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(socket);
}

/// Answers the first request of a connection over the cap with an error, then closes it.
async fn refuse(stream: UnixStream, max_clients: usize) {
    tracing::warn!(
        max_clients,
        "refusing a downstream connection: MONGO_POOL_MAX_CLIENTS are open"
    );
    let mut framed = Framed::new(stream, MessageCodec::default());
    let Ok(Some(Ok(request))) = tokio::time::timeout(Duration::from_secs(1), framed.next()).await
    else {
        return;
    };
    let body = doc! {
        "ok": 0.0,
        "errmsg": format!("mongo-pool is serving MONGO_POOL_MAX_CLIENTS={max_clients} connections already; close idle clients (one MongoClient per process) or raise the limit"),
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
