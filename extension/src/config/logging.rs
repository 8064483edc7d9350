//! What `MONGO_POOL_LOG` may enable: the filter the user wrote, with the levels of other
//! crates capped so that no setting prints a credential.
//!
//! At TRACE, the AWS SDK logs every HTTP request and response it exchanges in full
//! (`aws_smithy_runtime`: "transmitting request", "received response from service", "read HTTP
//! response body"). Those bodies and headers are the credentials themselves: the ECS
//! endpoint's `Authorization` token and the JSON with the secret key and session token, the
//! IMDSv2 session token and the credentials IMDS returns, the web identity token sent to STS
//! and `AssumeRoleWithWebIdentity`'s `SessionToken`. rustls prints every handshake message at
//! TRACE; `aws_sigv4` prints the canonical request (with the session token) and the string to
//! sign. Up to DEBUG these crates log what they do (a provider tried, a connection reused, a
//! cipher suite chosen), never a body or a header value.
//!
//! So, whatever `MONGO_POOL_LOG` says:
//! - the AWS SDK (`aws_*`), HTTP (`hyper*`, `h2`) and TLS (`rustls`, `tokio_rustls`) targets are
//!   capped at [`THIRD_PARTY_CAP`] (DEBUG), even when named explicitly;
//! - `aws_sigv4` is off;
//! - a default level above DEBUG (`trace`) applies to mongo-pool's own targets only; another
//!   crate goes below DEBUG only when its target is named (`hickory_resolver=trace`).

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;

/// The most verbose level any third-party target gets without being named, and the most
/// verbose level the [`CAPPED_TARGETS`] ever get.
pub const THIRD_PARTY_CAP: LevelFilter = LevelFilter::DEBUG;

/// Target prefixes that never go below [`THIRD_PARTY_CAP`]: at TRACE they print HTTP bodies and
/// headers (credentials) or TLS handshake messages.
pub const CAPPED_TARGETS: &[&str] = &["aws_", "hyper", "h2", "rustls", "tokio_rustls"];

/// Never logged at all: aws-sigv4 traces the canonical request (session token included) and
/// the string to sign.
pub const SILENCED_TARGETS: &[&str] = &["aws_sigv4"];

/// mongo-pool's own targets (`mongo_pool`, `mongo_pool_wire`, which it prefixes): these follow
/// the default level of `MONGO_POOL_LOG` all the way to TRACE.
pub const OWN_TARGET: &str = "mongo_pool";

/// The filter mongo-pool installs for the filter `user` parsed from `MONGO_POOL_LOG`: the same
/// directives, with the caps described in the module documentation applied.
#[must_use]
pub fn capped(user: &Targets) -> Targets {
    let default = user.default_level();
    let mut out = Targets::new();
    if let Some(default) = default {
        out = out.with_default(default.min(THIRD_PARTY_CAP));
        if default > THIRD_PARTY_CAP && !user.iter().any(|(target, _)| target == OWN_TARGET) {
            out = out.with_target(OWN_TARGET, default);
        }
    }
    for (target, level) in user.iter() {
        let level = if is_silenced(target) {
            LevelFilter::OFF
        } else if CAPPED_TARGETS.iter().any(|c| target.starts_with(c)) {
            level.min(THIRD_PARTY_CAP)
        } else {
            level
        };
        out = out.with_target(target, level);
    }
    // A capped family the user did not name itself gets what a broader directive (`a=trace`) or
    // the default would give it, capped: the family's directive is the more specific one, so
    // it wins over the broader one.
    for family in CAPPED_TARGETS {
        if user.iter().any(|(target, _)| target == *family) {
            continue;
        }
        let inherited = user
            .iter()
            .filter(|(target, _)| family.starts_with(target))
            .max_by_key(|(target, _)| target.len())
            .map(|(_, level)| level)
            .or(default)
            .unwrap_or(LevelFilter::OFF);
        out = out.with_target(*family, inherited.min(THIRD_PARTY_CAP));
    }
    for target in SILENCED_TARGETS {
        if !user.iter().any(|(t, _)| t == *target) {
            out = out.with_target(*target, LevelFilter::OFF);
        }
    }
    out
}

/// What `MONGO_POOL_LOG` accepts, for error messages.
pub const SYNTAX: &str = "expected a level (off, error, warn, info, debug, trace) or \
                          comma-separated target=level directives with an optional default \
                          level, e.g. mongo_pool=debug,warn; a target is a Rust module path \
                          such as mongo_pool or aws_config";

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks `MONGO_POOL_LOG` strictly. `tracing_subscriber` reads a word that is not a level as
/// a target (`warning` enables TRACE for a target called `warning`, so nothing is logged), and
/// any text as a target name (`mongo-pool=debug` names no crate, since crate targets use `_`):
/// both are refused here, saying what was probably meant.
///
/// # Errors
/// Why the filter is not accepted (to be followed by [`SYNTAX`]).
pub fn validate(filter: &str) -> Result<(), String> {
    let mut defaults = 0;
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err("an empty directive (two commas, or a comma at an end)".to_owned());
        }
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let hint = super::closest(&level.to_ascii_lowercase(), LEVELS.iter().copied(), "")
                .or(match level.to_ascii_lowercase().as_str() {
                    "warning" => Some("warn"),
                    "verbose" | "all" => Some("trace"),
                    "fatal" | "critical" => Some("error"),
                    "none" => Some("off"),
                    _ => None,
                })
                .map(|l| format!(" (did you mean {l}?)"))
                .unwrap_or_default();
            return Err(match target {
                Some(t) => format!("{level:?} is not a level{hint} in {t}={level}"),
                None => format!("{level:?} is not a level{hint}"),
            });
        }
        match target {
            None => defaults += 1,
            Some(t) if !is_module_path(t) => {
                let meant = t.replace('-', "_");
                let hint = if meant != t && is_module_path(&meant) {
                    format!(
                        " (did you mean {meant}? crate targets use _ where the crate name has -)"
                    )
                } else {
                    String::new()
                };
                return Err(format!("{t:?} is not a target{hint}"));
            }
            Some(_) => {}
        }
    }
    if defaults > 1 {
        return Err("more than one default level".to_owned());
    }
    Ok(())
}

/// `mongo_pool`, `aws_config::imds`: identifiers joined by `::`.
fn is_module_path(target: &str) -> bool {
    target.split("::").all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The `MONGO_POOL_LOG` level for Lambda's `AWS_LAMBDA_LOG_LEVEL` (case-insensitive; `FATAL`
/// is `error`, the most severe level there is); `None` for an unknown value.
#[must_use]
pub fn from_lambda_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => return None,
    })
}

/// Whether `NO_COLOR`'s value asks for no colour: any value but the empty string
/// (<https://no-color.org>).
#[must_use]
pub fn no_color(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Whether text logs get ANSI colours: only on a terminal, and never under `NO_COLOR`.
#[must_use]
pub fn use_ansi(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

fn is_silenced(target: &str) -> bool {
    SILENCED_TARGETS.iter().any(|s| target.starts_with(s))
}

#[cfg(test)]
mod tests;
