//! The socket file on disk: who may own the directory it sits in, the lock that keeps a second
//! instance off the path, how the socket is placed (bound under a random staging name, given
//! its final mode, then renamed into place without replacing anything), and its removal at exit
//! (only while the path still names the very socket this process created).
//!
//! Why each step:
//! - A directory other users can write to lets any of them bind the path first (a squatter the
//!   function's driver would then talk to) or pre-create the staging name to block the start.
//!   So the directory must be owned by mongo-pool's user and not writable by group or others.
//!   In Lambda the check is not applied: the execution environment belongs to one function,
//!   and every process in it (runtime, extensions) runs as that function's user, so there is
//!   no other user to squat `/tmp` (which is world-writable and sticky, 1777, on Linux hosts)
//!   and the default `/tmp/mongo-pool.sock` keeps working.
//! - Two instances started at once on one path both used to see it free. An exclusive `flock`
//!   on `PATH.lock` decides which one serves; the other fails at once.
//! - The staging name is random, so nobody can predict it and pre-create it.
//! - `renameat2(RENAME_NOREPLACE)` never replaces a socket that appeared meanwhile.
//! - At exit the socket is removed only if the path still has the device and inode this
//!   process bound: a file someone put there since is left alone.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FlockOperation, Mode, OFlags, RenameFlags};
use tokio::net::UnixListener;

use super::ListenerError;

/// Where mongo-pool runs, which decides what the socket's directory must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A Lambda execution environment: one function, one user, the directory is not checked.
    Lambda,
    /// A sidecar on a host or in a container that may have other users: the directory must be
    /// private to mongo-pool's user.
    Sidecar,
}

/// What is wrong with the socket's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryProblem {
    /// Another user owns it.
    NotOwned {
        /// Its owner.
        owner: u32,
        /// mongo-pool's (effective) uid.
        uid: u32,
    },
    /// Group or others may create files in it.
    Writable {
        /// Its permission bits (with the sticky bit).
        mode: u32,
    },
}

impl std::fmt::Display for DirectoryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectoryProblem::NotOwned { owner, uid } => write!(
                f,
                "it is owned by uid {owner}, not by uid {uid} that mongo-pool runs as"
            ),
            DirectoryProblem::Writable { mode } => write!(
                f,
                "it is writable by {} (mode {mode:04o}), so another user could take the socket path",
                if mode & 0o002 != 0 {
                    "others"
                } else {
                    "its group"
                }
            ),
        }
    }
}

/// Judges a directory owned by `owner` with mode `mode` for a process running as `uid`.
///
/// # Errors
/// [`DirectoryProblem`] when a sidecar's directory is not private to `uid`.
pub(crate) fn judge_directory(
    owner: u32,
    mode: u32,
    uid: u32,
    host: Host,
) -> Result<(), DirectoryProblem> {
    if host == Host::Lambda {
        return Ok(());
    }
    if owner != uid {
        return Err(DirectoryProblem::NotOwned { owner, uid });
    }
    if mode & 0o022 != 0 {
        return Err(DirectoryProblem::Writable {
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// The socket's directory (the parent of an absolute path; `/` for `/name`).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn check_directory(path: &Path, host: Host) -> Result<(), ListenerError> {
    let dir = directory(path);
    let meta = std::fs::metadata(dir).map_err(|source| ListenerError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let uid = rustix::process::geteuid().as_raw();
    judge_directory(meta.uid(), meta.mode(), uid, host).map_err(|problem| {
        ListenerError::SharedDirectory {
            dir: dir.to_owned(),
            problem,
        }
    })
}

/// Device and inode: what a path names, independent of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// What `path` names now, without following a symlink.
    fn at(path: &Path) -> Option<Identity> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| Identity::of(&m))
    }
}

/// Removes `path` only if it still names `identity`.
fn remove_if_same(path: &Path, identity: Identity) {
    if Identity::at(path) == Some(identity) {
        let _ = std::fs::remove_file(path);
    }
}

/// `PATH.lock`, held (`flock`, exclusive) for the life of the socket; removed, while still
/// held, when the socket goes.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
    identity: Identity,
    // Closed after `Drop::drop` ran: the lock is released once the file is unlinked.
    _file: std::fs::File,
}

/// How often [`Lock::take`] retries a lock file that was unlinked under it.
const LOCK_ATTEMPTS: usize = 5;

impl Lock {
    fn take(socket: &Path) -> Result<Lock, ListenerError> {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source: rustix::io::Errno| ListenerError::Io {
            path: path.clone(),
            source: source.into(),
        };
        for _ in 0..LOCK_ATTEMPTS {
            let fd = rustix::fs::open(
                &path,
                OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(io)?;
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(ListenerError::Locked {
                        socket: socket.to_owned(),
                        lock: path,
                    });
                }
                Err(e) => return Err(io(e)),
            }
            let file = std::fs::File::from(fd);
            let identity = Identity::of(&file.metadata().map_err(|source| ListenerError::Io {
                path: path.clone(),
                source,
            })?);
            // The previous holder unlinks the file before it lets go: a lock on an unlinked
            // file locks nothing anyone else can open, so take the new file instead.
            if Identity::at(&path) == Some(identity) {
                return Ok(Lock {
                    path,
                    identity,
                    _file: file,
                });
            }
        }
        Err(ListenerError::Locked {
            socket: socket.to_owned(),
            lock: path,
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        remove_if_same(&self.path, self.identity);
    }
}

/// The bound socket; the file is removed when it is dropped, if it is still this one.
#[derive(Debug)]
pub struct Socket {
    pub(super) listener: UnixListener,
    path: PathBuf,
    identity: Identity,
    // Declared last: released after the socket file is gone.
    _lock: Lock,
}

impl Drop for Socket {
    fn drop(&mut self) {
        remove_if_same(&self.path, self.identity);
    }
}

impl Socket {
    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A staging name beside `path` that nobody can guess: `.NAME.<random>.tmp`.
pub(crate) fn staging_name(path: &Path) -> PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{file_name}.{:012x}.tmp",
        rand::random::<u64>() >> 16
    ))
}

/// Binds the socket at `path` with file mode `mode`. Must run inside a tokio runtime.
///
/// # Errors
/// [`ListenerError::SharedDirectory`], [`ListenerError::Locked`], [`ListenerError::InUse`],
/// [`ListenerError::NotASocket`], [`ListenerError::Io`].
pub fn bind(path: &Path, mode: u32, host: Host) -> Result<Socket, ListenerError> {
    let io = |source| ListenerError::Io {
        path: path.to_owned(),
        source,
    };
    check_directory(path, host)?;
    let lock = Lock::take(path)?;
    // Under the lock no other mongo-pool can be placing a socket here: a socket file that
    // accepts nothing is a leftover of a killed instance.
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
    let staging = staging_name(path);
    let listener = UnixListener::bind(&staging).map_err(io)?;
    let placed = std::fs::symlink_metadata(&staging)
        .and_then(|meta| {
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))?;
            Ok(Identity::of(&meta))
        })
        .and_then(|identity| place(&staging, path).map(|()| identity));
    match placed {
        Ok(identity) => Ok(Socket {
            listener,
            path: path.to_owned(),
            identity,
            _lock: lock,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(ListenerError::InUse(path.to_owned()));
            }
            Err(io(e))
        }
    }
}

/// Moves `staging` to `path` unless `path` exists (then `AlreadyExists`).
fn place(staging: &Path, path: &Path) -> std::io::Result<()> {
    match rustix::fs::renameat_with(CWD, staging, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // A file system without RENAME_NOREPLACE: a hard link fails the same way on an
        // existing name, then the staging name goes.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            std::fs::hard_link(staging, path)?;
            std::fs::remove_file(staging)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_directory_must_be_owned_by_mongo_pool_and_private() {
        assert_eq!(judge_directory(1000, 0o40700, 1000, Host::Sidecar), Ok(()));
        assert_eq!(judge_directory(1000, 0o40755, 1000, Host::Sidecar), Ok(()));
        assert_eq!(
            judge_directory(0, 0o40700, 1000, Host::Sidecar),
            Err(DirectoryProblem::NotOwned {
                owner: 0,
                uid: 1000
            })
        );
        assert_eq!(
            judge_directory(1000, 0o40770, 1000, Host::Sidecar),
            Err(DirectoryProblem::Writable { mode: 0o770 })
        );
        // /tmp: world-writable and sticky is still shared with every other user.
        assert_eq!(
            judge_directory(0, 0o41777, 0, Host::Sidecar),
            Err(DirectoryProblem::Writable { mode: 0o1777 })
        );
    }

    #[test]
    fn in_lambda_the_directory_is_the_functions_alone() {
        assert_eq!(judge_directory(0, 0o41777, 993, Host::Lambda), Ok(()));
        assert_eq!(judge_directory(993, 0o40700, 993, Host::Lambda), Ok(()));
    }

    #[test]
    fn the_problem_says_who_may_write() {
        let others = DirectoryProblem::Writable { mode: 0o1777 }.to_string();
        assert!(
            others.contains("others") && others.contains("1777"),
            "{others}"
        );
        let group = DirectoryProblem::Writable { mode: 0o770 }.to_string();
        assert!(group.contains("group") && group.contains("0770"), "{group}");
        let owner = DirectoryProblem::NotOwned { owner: 0, uid: 7 }.to_string();
        assert!(
            owner.contains("uid 0") && owner.contains("uid 7"),
            "{owner}"
        );
    }

    #[test]
    fn staging_names_are_unpredictable_and_beside_the_socket() {
        let path = Path::new("/run/app/mongo-pool.sock");
        let a = staging_name(path);
        let b = staging_name(path);
        assert_ne!(a, b);
        assert_eq!(a.parent(), path.parent());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".mongo-pool.sock.") && name.ends_with(".tmp"),
            "{name}"
        );
    }
}
