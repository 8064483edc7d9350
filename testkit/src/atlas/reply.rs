//! Command replies as servers shape them: `ok: 1.0` with the result, or `ok: 0.0` with
//! `errmsg`, `code`, `codeName` and `errorLabels`; both carry the cluster-time gossip.

use bson::{Bson, Document};

use crate::store::CommandError;

/// What a command produced.
#[derive(Debug, Clone)]
pub enum CommandReply {
    /// A successful result (without `ok`).
    Ok(Document),
    /// An error: `errmsg`, `code`, `codeName`, and `errorLabels` when there are any.
    Error(Document),
    /// Close the connection without answering (a fail point's `closeConnection`).
    Close,
}

impl CommandReply {
    /// A successful result.
    pub fn ok(body: Document) -> Self {
        CommandReply::Ok(body)
    }

    /// The reply document with `ok` and the gossip fields, or `None` for [`CommandReply::Close`].
    pub fn into_document(self, gossip: Document) -> Option<Document> {
        let mut out = match self {
            CommandReply::Ok(mut body) => {
                body.insert("ok", 1.0);
                body
            }
            CommandReply::Error(fields) => {
                let mut body = Document::new();
                body.insert("ok", 0.0);
                body.extend(fields);
                body
            }
            CommandReply::Close => return None,
        };
        out.extend(gossip);
        Some(out)
    }
}

/// An error reply.
pub fn error(code: i32, code_name: &str, errmsg: &str, labels: &[&str]) -> CommandReply {
    let mut doc = Document::new();
    doc.insert("errmsg", errmsg);
    doc.insert("code", code);
    doc.insert("codeName", code_name);
    if !labels.is_empty() {
        doc.insert(
            "errorLabels",
            labels
                .iter()
                .map(|l| Bson::String((*l).to_owned()))
                .collect::<Vec<_>>(),
        );
    }
    CommandReply::Error(doc)
}

impl From<CommandError> for CommandReply {
    fn from(e: CommandError) -> Self {
        error(e.code, &e.code_name, &e.errmsg, &[])
    }
}

/// The codeName of error codes the simulator produces itself.
pub fn code_name(code: i32) -> &'static str {
    match code {
        2 => "BadValue",
        6 => "HostUnreachable",
        11 => "UserNotFound",
        13 => "Unauthorized",
        18 => "AuthenticationFailed",
        43 => "CursorNotFound",
        50 => "MaxTimeMSExpired",
        59 => "CommandNotFound",
        89 => "NetworkTimeout",
        91 => "ShutdownInProgress",
        112 => "WriteConflict",
        189 => "PrimarySteppedDown",
        251 => "NoSuchTransaction",
        262 => "ExceededTimeLimit",
        10107 => "NotWritablePrimary",
        11000 => "DuplicateKey",
        11600 => "InterruptedAtShutdown",
        11602 => "InterruptedDueToReplStateChange",
        13435 => "NotPrimaryNoSecondaryOk",
        13436 => "NotPrimaryOrSecondary",
        _ => "UnknownError",
    }
}
