//! Why a configuration was rejected, and the "did you mean" for a mistyped name.

use thiserror::Error;

use super::{CaFileError, ENV_URI, UriError};

/// An invalid configuration: each variant names the variable and what would be valid.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is absent.
    #[error("{var} is not set: {hint}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What to put there.
        hint: &'static str,
    },
    /// A variable has a value mongo-pool cannot use.
    #[error("{var}={value:?} is invalid: {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// The value as given (never used for the URI, which may hold a secret).
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// A `MONGO_POOL_*` variable that mongo-pool does not know, probably a typo.
    #[error(
        "unknown variable {name}: {}mongo-pool knows {known}",
        .suggestion.map(|s| format!("did you mean {s}? ")).unwrap_or_default()
    )]
    UnknownVariable {
        /// The unknown variable's name.
        name: String,
        /// The known variable it is closest to, when one is a likely intent.
        suggestion: Option<&'static str>,
        /// The known names, comma-separated.
        known: String,
    },
    /// `MONGO_POOL_URI` is not a usable connection string.
    #[error("{ENV_URI}: {0}")]
    Uri(#[from] UriError),
    /// The connection string's `tlsCAFile` cannot be used.
    #[error("{ENV_URI}: {0}")]
    CaFile(#[from] CaFileError),
}

/// The candidate a mistyped `name` most likely meant: the nearest by edit distance, ignoring
/// case and a `prefix` they share, within a quarter of the name's length (at least one edit).
/// `MONGO_POOL_MAX_CLIENT` gets `MONGO_POOL_MAX_CLIENTS`; `MONGO_POOL_FOO` gets nothing.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    prefix: &str,
) -> Option<&'a str> {
    let key = |s: &str| s.strip_prefix(prefix).unwrap_or(s).to_ascii_lowercase();
    let name = key(name);
    let allowed = (name.len() / 4).max(1);
    candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(&name, &key(candidate)), candidate))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}
