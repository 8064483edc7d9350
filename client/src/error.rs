//! The one error type of the crate: what failed, with the server's own words kept intact.
//!
//! A command the server refused keeps its `code`, `codeName`, `errmsg` and `errorLabels`
//! ([`CommandError`]); a write that ran but had per-document failures keeps each of them
//! ([`WriteFailure`]); a socket that is not there says so and names the likely cause (the
//! mongo-pool layer is not attached to the function).

use std::path::PathBuf;

use bson::{Bson, Document};

/// The label a retryable write error carries (added by this client on network errors).
pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";
/// The label of an error after which a whole transaction may be retried.
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
/// The label of a `commitTransaction` whose outcome is unknown.
pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";
/// The label of a retry attempt that wrote nothing.
pub const NO_WRITES_PERFORMED: &str = "NoWritesPerformed";

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a handler and the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing listens at the socket path: the extension is not running in this environment.
    #[error(
        "no mongo-pool socket at {path} ({source}): is the mongo-pool layer attached \
         to this function?"
    )]
    SocketMissing {
        /// The path that was tried.
        path: PathBuf,
        /// What `connect` said.
        #[source]
        source: std::io::Error,
    },
    /// The socket is served by a process running as another user than mongo-pool's: someone
    /// may have taken the path. Nothing was sent to it.
    #[error(
        "the socket {path} is served by uid {actual}, not by uid {expected} that mongo-pool \
         runs as: refusing to use it (another user may have taken the path; if mongo-pool runs \
         as uid {actual} on purpose, set MONGO_POOL_SOCKET_UID={actual} or \
         ClientOptions::socket_uid)"
    )]
    SocketPeer {
        /// The socket path.
        path: PathBuf,
        /// The uid mongo-pool should run as.
        expected: u32,
        /// The uid of the process serving the socket.
        actual: u32,
    },
    /// The connection to mongo-pool failed or closed mid-request (e.g. the extension restarted).
    #[error("network error talking to mongo-pool: {message}")]
    Network {
        /// What happened.
        message: String,
        /// Labels this client attached (`RetryableWriteError`, `TransientTransactionError`, ...).
        labels: Vec<String>,
    },
    /// Checking out a connection took longer than the configured limit.
    #[error("no connection to mongo-pool within {0:?}")]
    Timeout(std::time::Duration),
    /// The server refused the command (`ok: 0`).
    #[error(transparent)]
    Command(Box<CommandError>),
    /// A write ran, but some documents failed (`writeErrors`) or the write concern was not met.
    #[error(transparent)]
    Write(Box<WriteFailure>),
    /// A message could not be framed or parsed.
    #[error("wire protocol error: {0}")]
    Wire(#[from] mongo_pool_wire::WireError),
    /// A value could not be turned into BSON or back into the caller's type.
    #[error("bson error: {0}")]
    Bson(#[from] bson::error::Error),
    /// The reply does not have the shape the command promises.
    #[error("unexpected reply from the server: {0}")]
    UnexpectedReply(String),
    /// An argument cannot be sent as given (e.g. an update document without operators).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A session or transaction method was called in the wrong state.
    #[error("transaction error: {0}")]
    Transaction(String),
}

impl From<CommandError> for Error {
    fn from(error: CommandError) -> Error {
        Error::Command(Box::new(error))
    }
}

impl From<WriteFailure> for Error {
    fn from(failure: WriteFailure) -> Error {
        Error::Write(Box::new(failure))
    }
}

impl Error {
    /// The labels of the error: the server's `errorLabels`, plus those this client adds to
    /// network errors.
    pub fn labels(&self) -> &[String] {
        match self {
            Error::Network { labels, .. } => labels,
            Error::Command(e) => &e.labels,
            Error::Write(e) => &e.labels,
            _ => &[],
        }
    }

    /// Whether [`Error::labels`] holds `label`.
    pub fn contains_label(&self, label: &str) -> bool {
        self.labels().iter().any(|l| l == label)
    }

    /// The server's error code, if the server produced this error (for a write failure: the
    /// first write error's code, else the write concern error's).
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Command(e) => Some(e.code),
            Error::Write(e) => e
                .write_errors
                .first()
                .map(|w| w.code)
                .or(e.write_concern_error.as_ref().map(|w| w.code)),
            _ => None,
        }
    }

    /// Whether the connection failed (as opposed to the server answering with an error).
    pub fn is_network(&self) -> bool {
        matches!(self, Error::Network { .. })
    }

    pub(crate) fn network(message: impl Into<String>) -> Error {
        Error::Network {
            message: message.into(),
            labels: Vec::new(),
        }
    }

    /// Adds `label` unless present.
    pub(crate) fn add_label(&mut self, label: &str) {
        let labels = match self {
            Error::Network { labels, .. } => labels,
            Error::Command(e) => &mut e.labels,
            Error::Write(e) => &mut e.labels,
            _ => return,
        };
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_owned());
        }
    }

    /// Removes `label` if present.
    pub(crate) fn remove_label(&mut self, label: &str) {
        match self {
            Error::Network { labels, .. } => labels.retain(|l| l != label),
            Error::Command(e) => e.labels.retain(|l| l != label),
            Error::Write(e) => e.labels.retain(|l| l != label),
            _ => {}
        }
    }
}

/// A command the server answered with `ok: 0`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("command failed: {code_name} ({code}): {errmsg}{}", fmt_labels(labels))]
pub struct CommandError {
    /// `code`.
    pub code: i32,
    /// `codeName` (empty when the server sent none).
    pub code_name: String,
    /// `errmsg`.
    pub errmsg: String,
    /// `errorLabels`.
    pub labels: Vec<String>,
}

/// One failed document of a write (`writeErrors[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteError {
    /// Index of the failed statement within the command (within the whole `insert_many`
    /// for batched inserts).
    pub index: usize,
    /// `code`, e.g. 11000 for a duplicate key.
    pub code: i32,
    /// `codeName`, when sent.
    pub code_name: Option<String>,
    /// `errmsg`.
    pub errmsg: String,
}

/// A write that ran with failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("write failed: {}{}", describe_write(self), fmt_labels(labels))]
pub struct WriteFailure {
    /// Per-statement failures.
    pub write_errors: Vec<WriteError>,
    /// The write concern error, if any (as a command error).
    pub write_concern_error: Option<CommandError>,
    /// `errorLabels`.
    pub labels: Vec<String>,
    /// How many documents were written despite the failures (`n`), for inserts and deletes.
    pub n: u64,
}

fn fmt_labels(labels: &[String]) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!(" [labels: {}]", labels.join(", "))
    }
}

fn describe_write(failure: &WriteFailure) -> String {
    let mut parts: Vec<String> = failure
        .write_errors
        .iter()
        .map(|w| format!("#{}: {} ({})", w.index, w.errmsg, w.code))
        .collect();
    if let Some(wce) = &failure.write_concern_error {
        parts.push(format!("write concern: {} ({})", wce.errmsg, wce.code));
    }
    parts.join("; ")
}

fn labels_of(reply: &Document) -> Vec<String> {
    match reply.get("errorLabels") {
        Some(Bson::Array(labels)) => labels
            .iter()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn int(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        // Integral doubles are how some servers send counts and codes.
        #[allow(clippy::cast_possible_truncation)]
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// Reads a numeric field as i64 (int32, int64 or an integral double).
pub(crate) fn int_field(doc: &Document, key: &str) -> Option<i64> {
    int(doc.get(key))
}

fn command_error_from(doc: &Document, labels: Vec<String>) -> CommandError {
    CommandError {
        code: int_field(doc, "code")
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(0),
        code_name: doc.get_str("codeName").unwrap_or_default().to_owned(),
        errmsg: doc.get_str("errmsg").unwrap_or_default().to_owned(),
        labels,
    }
}

/// Whether `ok` is 1.
pub(crate) fn is_ok(reply: &Document) -> bool {
    match reply.get("ok") {
        Some(Bson::Double(f)) => *f == 1.0,
        Some(Bson::Int32(n)) => *n == 1,
        Some(Bson::Int64(n)) => *n == 1,
        Some(Bson::Boolean(b)) => *b,
        _ => false,
    }
}

/// Turns a reply into an error when it reports one: `ok: 0` is a [`CommandError`];
/// `writeErrors` or `writeConcernError` is a [`WriteFailure`]. `index_offset` is added to
/// each write error's index (batched inserts).
pub(crate) fn check_reply(reply: Document, index_offset: usize) -> Result<Document> {
    let labels = labels_of(&reply);
    if !is_ok(&reply) {
        return Err(command_error_from(&reply, labels).into());
    }
    let write_errors = match reply.get("writeErrors") {
        Some(Bson::Array(errors)) => errors
            .iter()
            .filter_map(Bson::as_document)
            .map(|w| WriteError {
                index: int_field(w, "index")
                    .and_then(|i| usize::try_from(i).ok())
                    .unwrap_or(0)
                    + index_offset,
                code: int_field(w, "code")
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(0),
                code_name: w.get_str("codeName").ok().map(str::to_owned),
                errmsg: w.get_str("errmsg").unwrap_or_default().to_owned(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let write_concern_error = reply
        .get_document("writeConcernError")
        .ok()
        .map(|w| command_error_from(w, Vec::new()));
    if write_errors.is_empty() && write_concern_error.is_none() {
        return Ok(reply);
    }
    Err(WriteFailure {
        write_errors,
        write_concern_error,
        labels,
        n: int_field(&reply, "n")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
    }
    .into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use bson::doc;

    #[test]
    fn command_error_keeps_code_name_message_and_labels() {
        let err = check_reply(
            doc! {"ok": 0.0, "code": 91, "codeName": "ShutdownInProgress",
            "errmsg": "going away", "errorLabels": ["RetryableWriteError"]},
            0,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some(91));
        assert!(err.contains_label(RETRYABLE_WRITE_ERROR));
        let Error::Command(c) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(c.code_name, "ShutdownInProgress");
        assert_eq!(c.errmsg, "going away");
        assert!(
            err.to_string()
                .contains("ShutdownInProgress (91): going away")
        );
    }

    #[test]
    fn write_errors_are_offset_by_batch_start() {
        let err = check_reply(
            doc! {"ok": 1.0, "n": 1, "writeErrors": [
            {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"}]},
            100,
        )
        .unwrap_err();
        let Error::Write(w) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(w.write_errors[0].index, 101);
        assert_eq!(w.n, 1);
        assert_eq!(err.code(), Some(11000));
    }

    #[test]
    fn ok_reply_passes_through() {
        let reply = check_reply(doc! {"ok": 1, "n": 3}, 0).unwrap();
        assert_eq!(int_field(&reply, "n"), Some(3));
    }

    #[test]
    fn missing_socket_error_names_the_layer() {
        let err = Error::SocketMissing {
            path: "/tmp/nope.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let text = err.to_string();
        assert!(text.contains("/tmp/nope.sock"), "{text}");
        assert!(text.contains("is the mongo-pool layer attached"), "{text}");
    }
}
