//! The `failCommand` fail point, configured as on a real server through `configureFailPoint`
//! (or `POST /failpoint`): fail, block or drop the connection for chosen commands.
//!
//! `closeConnectionAfterApply` is atlas-sim's own option (no server has it): the command runs,
//! then the connection closes without a reply, as when a reply is lost on the network. It is how
//! a test shows a commit that applied but whose outcome the driver never learned.

use std::time::Duration;

use bson::{Bson, Document};

use crate::store::CommandError;

/// How many more times the fail point fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The next `n` matching commands.
    Times(u64),
    /// Every matching command until switched off.
    AlwaysOn,
}

/// A configured `failCommand` fail point.
#[derive(Debug, Clone)]
pub struct FailPoint {
    mode: Mode,
    commands: Vec<String>,
    error_code: Option<i32>,
    error_labels: Vec<String>,
    close_connection: bool,
    close_after_apply: bool,
    block: Option<Duration>,
    write_concern_error: Option<Document>,
    app_name: Option<String>,
}

/// What to do with a command the fail point matched.
#[derive(Debug, Clone, Default)]
pub struct Action {
    /// Wait this long first.
    pub block: Option<Duration>,
    /// Close the connection without a reply.
    pub close_connection: bool,
    /// Run the command, then close the connection without a reply (atlas-sim's own).
    pub close_after_apply: bool,
    /// Answer with this error instead of running the command.
    pub error: Option<(i32, Vec<String>)>,
    /// Run the command, then attach this `writeConcernError`.
    pub write_concern_error: Option<Document>,
    /// `errorLabels` for a reply with a `writeConcernError` (as a server adds them there too).
    pub labels: Vec<String>,
}

fn bad(msg: impl Into<String>) -> CommandError {
    CommandError {
        code: 2,
        code_name: "BadValue".into(),
        errmsg: msg.into(),
    }
}

impl FailPoint {
    /// Parses a `configureFailPoint` command. `Ok(None)` switches the fail point off.
    ///
    /// # Errors
    /// BadValue for an unknown fail point name, mode or malformed `data`.
    pub fn configure(command: &Document) -> Result<Option<FailPoint>, CommandError> {
        match command.get_str("configureFailPoint") {
            Ok("failCommand") => {}
            Ok(other) => return Err(bad(format!("unknown fail point: {other}"))),
            Err(_) => return Err(bad("configureFailPoint must name a fail point")),
        }
        let mode = match command.get("mode") {
            Some(Bson::String(s)) if s == "off" => return Ok(None),
            Some(Bson::String(s)) if s == "alwaysOn" => Mode::AlwaysOn,
            Some(Bson::Document(d)) => match d.get("times").and_then(as_u64) {
                Some(0) => return Ok(None),
                Some(n) => Mode::Times(n),
                None => return Err(bad("mode document must be {times: n}")),
            },
            _ => return Err(bad("mode must be \"off\", \"alwaysOn\" or {times: n}")),
        };
        let data = match command.get("data") {
            Some(Bson::Document(d)) => d.clone(),
            None => Document::new(),
            _ => return Err(bad("data must be a document")),
        };
        let commands = match data.get("failCommands") {
            Some(Bson::Array(a)) => a
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            _ => return Err(bad("data.failCommands must be an array of command names")),
        };
        let error_labels = match data.get("errorLabels") {
            Some(Bson::Array(a)) => a
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let block = if data.get_bool("blockConnection").unwrap_or(false) {
            Some(Duration::from_millis(
                data.get("blockTimeMS").and_then(as_u64).unwrap_or(0),
            ))
        } else {
            None
        };
        Ok(Some(FailPoint {
            mode,
            commands,
            error_code: data
                .get("errorCode")
                .and_then(as_u64)
                .and_then(|c| i32::try_from(c).ok()),
            error_labels,
            close_connection: data.get_bool("closeConnection").unwrap_or(false),
            close_after_apply: data.get_bool("closeConnectionAfterApply").unwrap_or(false),
            block,
            write_concern_error: data.get_document("writeConcernError").ok().cloned(),
            app_name: data.get_str("appName").ok().map(str::to_owned),
        }))
    }

    /// Whether the fail point matches `command` from a connection with `app_name`; if so,
    /// counts one use and returns what to do. `exhausted` is set when it should be removed.
    pub fn fire(&mut self, command: &str, app_name: Option<&str>) -> Option<(Action, bool)> {
        if !self.commands.iter().any(|c| c == command) {
            return None;
        }
        if let Some(wanted) = &self.app_name
            && app_name != Some(wanted.as_str())
        {
            return None;
        }
        let exhausted = match &mut self.mode {
            Mode::AlwaysOn => false,
            Mode::Times(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
        };
        let action = Action {
            block: self.block,
            close_connection: self.close_connection,
            close_after_apply: self.close_after_apply,
            error: self
                .error_code
                .map(|code| (code, self.error_labels.clone())),
            write_concern_error: self.write_concern_error.clone(),
            labels: self.error_labels.clone(),
        };
        Some((action, exhausted))
    }
}

fn as_u64(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int32(v) => u64::try_from(*v).ok(),
        Bson::Int64(v) => u64::try_from(*v).ok(),
        Bson::Double(v) if *v >= 0.0 && v.fract() == 0.0 => Some(*v as u64),
        _ => None,
    }
}
