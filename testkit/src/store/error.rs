//! The error a command fails with: a MongoDB server error code, its `codeName` and message,
//! exactly as mongod reports them. The server turns it into `{ok: 0, errmsg, code, codeName}`.

/// A command failure as mongod reports it (`code`, `codeName`, `errmsg`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code_name} ({code}): {errmsg}")]
pub struct CommandError {
    /// The numeric server error code, e.g. 11000.
    pub code: i32,
    /// The server's name for the code, e.g. `DuplicateKey` or `Location40414`.
    pub code_name: String,
    /// The human-readable message.
    pub errmsg: String,
}

impl CommandError {
    /// An error with an explicit code, code name and message.
    pub fn new(code: i32, code_name: impl Into<String>, errmsg: impl Into<String>) -> Self {
        Self {
            code,
            code_name: code_name.into(),
            errmsg: errmsg.into(),
        }
    }

    /// An error whose code has no name of its own: mongod calls it `Location<code>`.
    pub(crate) fn location(code: i32, errmsg: impl Into<String>) -> Self {
        Self::new(code, format!("Location{code}"), errmsg)
    }

    pub(crate) fn bad_value(errmsg: impl Into<String>) -> Self {
        Self::new(2, "BadValue", errmsg)
    }

    pub(crate) fn failed_to_parse(errmsg: impl Into<String>) -> Self {
        Self::new(9, "FailedToParse", errmsg)
    }

    pub(crate) fn type_mismatch(errmsg: impl Into<String>) -> Self {
        Self::new(14, "TypeMismatch", errmsg)
    }

    pub(crate) fn namespace_not_found(errmsg: impl Into<String>) -> Self {
        Self::new(26, "NamespaceNotFound", errmsg)
    }

    pub(crate) fn invalid_namespace(errmsg: impl Into<String>) -> Self {
        Self::new(73, "InvalidNamespace", errmsg)
    }

    pub(crate) fn command_not_found(name: &str) -> Self {
        Self::new(59, "CommandNotFound", format!("no such command: '{name}'"))
    }
}
