//! Zero-copy inspection of commands and replies: one pass over a [`RawDocument`] picks out the
//! fields a proxy routes on (command name, `$db`, session and transaction ids, read preference,
//! cursor ids) and, for replies, the fields it reacts to (`ok`, `code`, labels, cursor id).
//! Nothing is copied; every field borrows from the message.

use bson::{RawArray, RawBsonRef, RawDocument};

use crate::WireError;

/// What a command is, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `hello`, `isMaster` or `ismaster`: answered by whoever poses as the server.
    Hello,
    /// `saslStart`, `saslContinue` or `authenticate`.
    Auth,
    /// `logout`: a proxy that authenticates upstream must never let it reach a shared
    /// connection.
    Logout,
    /// `getMore`: must reach the server that owns the cursor.
    GetMore,
    /// `killCursors`: must reach the server that owns the cursors.
    KillCursors,
    /// `commitTransaction`.
    CommitTransaction,
    /// `abortTransaction`.
    AbortTransaction,
    /// `endSessions`.
    EndSessions,
    /// Anything else.
    Other,
}

impl CommandKind {
    /// The kind of a command name. Command names are case-sensitive, except that servers
    /// accept both `isMaster` and `ismaster`.
    pub fn of(name: &str) -> CommandKind {
        match name {
            "hello" | "isMaster" | "ismaster" => CommandKind::Hello,
            "saslStart" | "saslContinue" | "authenticate" => CommandKind::Auth,
            "logout" => CommandKind::Logout,
            "getMore" => CommandKind::GetMore,
            "killCursors" => CommandKind::KillCursors,
            "commitTransaction" => CommandKind::CommitTransaction,
            "abortTransaction" => CommandKind::AbortTransaction,
            "endSessions" => CommandKind::EndSessions,
            _ => CommandKind::Other,
        }
    }
}

/// A read preference mode (`$readPreference.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPreferenceMode {
    /// Only the primary (the default).
    Primary,
    /// The primary, else a secondary.
    PrimaryPreferred,
    /// Only a secondary.
    Secondary,
    /// A secondary, else the primary.
    SecondaryPreferred,
    /// Any member.
    Nearest,
}

impl ReadPreferenceMode {
    /// Parses a mode name as drivers send it.
    pub fn parse(mode: &str) -> Option<Self> {
        Some(match mode {
            "primary" => Self::Primary,
            "primaryPreferred" => Self::PrimaryPreferred,
            "secondary" => Self::Secondary,
            "secondaryPreferred" => Self::SecondaryPreferred,
            "nearest" => Self::Nearest,
            _ => return None,
        })
    }
}

/// The routing-relevant fields of a command body.
#[derive(Debug, Clone, PartialEq)]
pub struct Command<'a> {
    /// The command name: the first key.
    pub name: &'a str,
    /// What the name says about routing.
    pub kind: CommandKind,
    /// `$db` (required in OP_MSG; absent in OP_QUERY commands).
    pub db: Option<&'a str>,
    /// `lsid`: the logical session.
    pub lsid: Option<&'a RawDocument>,
    /// `txnNumber`: a retryable write or a transaction.
    pub txn_number: Option<i64>,
    /// `autocommit` (always `false` inside a transaction).
    pub autocommit: Option<bool>,
    /// `startTransaction: true` on a transaction's first command.
    pub start_transaction: bool,
    /// `$readPreference`.
    pub read_preference: Option<&'a RawDocument>,
    /// For `getMore`: the cursor id (the command's value).
    pub get_more_cursor_id: Option<i64>,
    /// `collection` of a `getMore`, or the value of `killCursors`.
    pub cursor_collection: Option<&'a str>,
    /// `cursors` of a `killCursors`.
    pub kill_cursor_ids: Option<&'a RawArray>,
    /// `helloOk` on a handshake.
    pub hello_ok: bool,
    /// `loadBalanced` on a handshake.
    pub load_balanced: bool,
    /// `topologyVersion` on an awaitable hello.
    pub topology_version: Option<&'a RawDocument>,
    /// `maxAwaitTimeMS` on an awaitable hello or tailable `getMore`.
    pub max_await_time_ms: Option<i64>,
    /// `maxTimeMS`.
    pub max_time_ms: Option<i64>,
}

impl<'a> Command<'a> {
    /// Reads a command body in one pass.
    ///
    /// # Errors
    /// [`WireError::MissingBody`] for an empty document, [`WireError::Bson`] for malformed BSON,
    /// [`WireError::FieldType`] when a routing field has the wrong type.
    pub fn inspect(body: &'a RawDocument) -> Result<Command<'a>, WireError> {
        let mut iter = body.iter();
        let (first, first_value) = match iter.next() {
            Some(element) => element.map_err(WireError::bson("command"))?,
            None => return Err(WireError::MissingBody),
        };
        let name = first.as_str();
        let kind = CommandKind::of(name);
        let mut command = Command {
            name,
            kind,
            db: None,
            lsid: None,
            txn_number: None,
            autocommit: None,
            start_transaction: false,
            read_preference: None,
            get_more_cursor_id: None,
            cursor_collection: None,
            kill_cursor_ids: None,
            hello_ok: false,
            load_balanced: false,
            topology_version: None,
            max_await_time_ms: None,
            max_time_ms: None,
        };
        match kind {
            CommandKind::GetMore => {
                command.get_more_cursor_id = Some(integer(first_value, "getMore")?);
            }
            CommandKind::KillCursors => {
                command.cursor_collection = Some(string(first_value, "killCursors")?);
            }
            _ => {}
        }
        for element in iter {
            let (key, value) = element.map_err(WireError::bson("command"))?;
            match key.as_str() {
                "$db" => command.db = Some(string(value, "$db")?),
                "lsid" => command.lsid = Some(document(value, "lsid")?),
                "txnNumber" => command.txn_number = Some(integer(value, "txnNumber")?),
                "autocommit" => command.autocommit = Some(boolean(value, "autocommit")?),
                "startTransaction" => {
                    command.start_transaction = boolean(value, "startTransaction")?;
                }
                "$readPreference" => {
                    command.read_preference = Some(document(value, "$readPreference")?);
                }
                "collection" if kind == CommandKind::GetMore => {
                    command.cursor_collection = Some(string(value, "collection")?);
                }
                "cursors" if kind == CommandKind::KillCursors => {
                    command.kill_cursor_ids = Some(array(value, "cursors")?);
                }
                "helloOk" => command.hello_ok = truthy(value),
                "loadBalanced" => command.load_balanced = truthy(value),
                "topologyVersion" => {
                    command.topology_version = Some(document(value, "topologyVersion")?);
                }
                "maxAwaitTimeMS" => {
                    command.max_await_time_ms = Some(integer(value, "maxAwaitTimeMS")?);
                }
                "maxTimeMS" => command.max_time_ms = Some(integer(value, "maxTimeMS")?),
                _ => {}
            }
        }
        Ok(command)
    }

    /// The `$readPreference` mode; `None` when absent (which means primary).
    ///
    /// # Errors
    /// [`WireError::FieldType`] when `mode` is missing, not a string, or not a known mode.
    pub fn read_preference_mode(&self) -> Result<Option<ReadPreferenceMode>, WireError> {
        let Some(pref) = self.read_preference else {
            return Ok(None);
        };
        let mode = match pref
            .get("mode")
            .map_err(WireError::bson("$readPreference"))?
        {
            Some(RawBsonRef::String(mode)) => mode,
            _ => return Err(field_type("$readPreference.mode", "a string")),
        };
        ReadPreferenceMode::parse(mode)
            .map(Some)
            .ok_or_else(|| field_type("$readPreference.mode", "a read preference mode"))
    }

    /// The cursor ids of a `killCursors`, in order.
    ///
    /// # Errors
    /// [`WireError::FieldType`] when an id is not an integer; [`WireError::Bson`].
    pub fn kill_cursor_ids(&self) -> Result<Vec<i64>, WireError> {
        let Some(ids) = self.kill_cursor_ids else {
            return Ok(Vec::new());
        };
        ids.into_iter()
            .map(|id| integer(id.map_err(WireError::bson("cursors"))?, "cursors"))
            .collect()
    }

    /// True when the command is part of a multi-statement transaction.
    pub fn in_transaction(&self) -> bool {
        self.autocommit == Some(false) && self.txn_number.is_some()
    }
}

/// The fields of a reply a proxy reacts to.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<'a> {
    /// `ok` is 1 (servers send a double; ints and booleans are accepted).
    pub ok: bool,
    /// `code` of an `ok: 0` reply.
    pub code: Option<i32>,
    /// `codeName`.
    pub code_name: Option<&'a str>,
    /// `errmsg`.
    pub errmsg: Option<&'a str>,
    /// `errorLabels`.
    pub error_labels: Option<&'a RawArray>,
    /// `cursor.id`, for cursor-producing commands and `getMore`.
    pub cursor_id: Option<i64>,
    /// `writeConcernError.code`.
    pub write_concern_error_code: Option<i32>,
    /// `topologyVersion`.
    pub topology_version: Option<&'a RawDocument>,
}

impl<'a> Reply<'a> {
    /// Reads a reply body in one pass.
    ///
    /// # Errors
    /// [`WireError::Bson`] for malformed BSON, [`WireError::FieldType`] when a field has the
    /// wrong type.
    pub fn inspect(body: &'a RawDocument) -> Result<Reply<'a>, WireError> {
        let mut reply = Reply {
            ok: false,
            code: None,
            code_name: None,
            errmsg: None,
            error_labels: None,
            cursor_id: None,
            write_concern_error_code: None,
            topology_version: None,
        };
        for element in body.iter() {
            let (key, value) = element.map_err(WireError::bson("reply"))?;
            match key.as_str() {
                "ok" => reply.ok = truthy(value) && number(value) != Some(0.0),
                "code" => reply.code = Some(int32(value, "code")?),
                "codeName" => reply.code_name = Some(string(value, "codeName")?),
                "errmsg" => reply.errmsg = Some(string(value, "errmsg")?),
                "errorLabels" => reply.error_labels = Some(array(value, "errorLabels")?),
                "cursor" => {
                    let cursor = document(value, "cursor")?;
                    if let Some(id) = cursor.get("id").map_err(WireError::bson("cursor"))? {
                        reply.cursor_id = Some(integer(id, "cursor.id")?);
                    }
                }
                "writeConcernError" => {
                    let wce = document(value, "writeConcernError")?;
                    if let Some(code) = wce
                        .get("code")
                        .map_err(WireError::bson("writeConcernError"))?
                    {
                        reply.write_concern_error_code =
                            Some(int32(code, "writeConcernError.code")?);
                    }
                }
                "topologyVersion" => {
                    reply.topology_version = Some(document(value, "topologyVersion")?);
                }
                _ => {}
            }
        }
        Ok(reply)
    }

    /// Whether `errorLabels` holds `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels().any(|l| l == label)
    }

    /// The error labels that are strings.
    pub fn labels(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.error_labels
            .into_iter()
            .flat_map(|labels| labels.into_iter())
            .filter_map(|label| match label {
                Ok(RawBsonRef::String(s)) => Some(s),
                _ => None,
            })
    }
}

fn field_type(field: &'static str, expected: &'static str) -> WireError {
    WireError::FieldType { field, expected }
}

fn string<'a>(value: RawBsonRef<'a>, field: &'static str) -> Result<&'a str, WireError> {
    match value {
        RawBsonRef::String(s) => Ok(s),
        _ => Err(field_type(field, "a string")),
    }
}

fn document<'a>(value: RawBsonRef<'a>, field: &'static str) -> Result<&'a RawDocument, WireError> {
    match value {
        RawBsonRef::Document(d) => Ok(d),
        _ => Err(field_type(field, "a document")),
    }
}

fn array<'a>(value: RawBsonRef<'a>, field: &'static str) -> Result<&'a RawArray, WireError> {
    match value {
        RawBsonRef::Array(a) => Ok(a),
        _ => Err(field_type(field, "an array")),
    }
}

fn boolean(value: RawBsonRef<'_>, field: &'static str) -> Result<bool, WireError> {
    match value {
        RawBsonRef::Boolean(b) => Ok(b),
        _ => Err(field_type(field, "a boolean")),
    }
}

/// An integral number of any BSON numeric type (a double must have no fraction).
fn integer(value: RawBsonRef<'_>, field: &'static str) -> Result<i64, WireError> {
    match value {
        RawBsonRef::Int64(v) => Ok(v),
        RawBsonRef::Int32(v) => Ok(i64::from(v)),
        RawBsonRef::Double(v) if v.fract() == 0.0 && v.abs() < 9.0e18 => Ok(v as i64),
        _ => Err(field_type(field, "an integer")),
    }
}

fn int32(value: RawBsonRef<'_>, field: &'static str) -> Result<i32, WireError> {
    integer(value, field).and_then(|v| i32::try_from(v).map_err(|_| field_type(field, "an int32")))
}

fn number(value: RawBsonRef<'_>) -> Option<f64> {
    match value {
        RawBsonRef::Double(v) => Some(v),
        RawBsonRef::Int32(v) => Some(f64::from(v)),
        RawBsonRef::Int64(v) => Some(v as f64),
        _ => None,
    }
}

/// Truthiness as servers judge flags like `ismaster: 1` or `helloOk: true`.
pub fn truthy(value: RawBsonRef<'_>) -> bool {
    match value {
        RawBsonRef::Boolean(b) => b,
        RawBsonRef::Null | RawBsonRef::Undefined => false,
        other => number(other).is_none_or(|n| n != 0.0),
    }
}

#[cfg(test)]
mod tests;
