//! The authentication backoff every member shares: after a failure, the next attempt waits for
//! an exponential backoff with jitter, and attempts during it fail at once with the last cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ConnectError;
use crate::upstream::auth::sts::{Diagnosis, FailureEpisode};

/// First backoff after an authentication failure; doubles up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct BackoffState {
    failures: u32,
    not_before: Option<Instant>,
    last: Option<ConnectError>,
}

/// Spaces authentications after failures (the backoff every member shares: the credentials
/// and STS are the same for all).
#[derive(Debug, Default)]
pub struct AuthGate {
    state: std::sync::Mutex<BackoffState>,
    pub(super) episode: FailureEpisode,
}

impl AuthGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` while backing off: the remaining time and the failure that caused it.
    pub(super) fn check(&self) -> Result<(), ConnectError> {
        let state = self.lock();
        match (state.not_before, &state.last) {
            (Some(t), Some(last)) if t > Instant::now() => Err(ConnectError::Backoff {
                remaining: t - Instant::now(),
                last: Box::new(last.clone()),
            }),
            _ => Ok(()),
        }
    }

    pub(super) fn failed(&self, error: &ConnectError) -> Duration {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        let exp = BACKOFF_BASE.saturating_mul(1 << state.failures.min(16).saturating_sub(1));
        let ceiling = exp.min(BACKOFF_MAX);
        // "Equal jitter": half fixed, half random, so retries never bunch up nor come too soon.
        let half = ceiling / 2;
        let delay = half + half.mul_f64(rand::random::<f64>());
        state.not_before = Some(Instant::now() + delay);
        state.last = Some(error.clone());
        delay
    }

    /// The diagnosis of the latest authentication failure, if STS was asked.
    pub(super) fn last_diagnosis(&self) -> Option<Arc<Diagnosis>> {
        match &self.lock().last {
            Some(ConnectError::Auth { diagnosis, .. }) => diagnosis.clone(),
            _ => None,
        }
    }

    pub(super) fn succeeded(&self) {
        let mut state = self.lock();
        *state = BackoffState::default();
        self.episode.end();
    }
}
