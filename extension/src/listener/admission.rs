//! Who gets one of the `MONGO_POOL_MAX_CLIENTS` downstream slots. Below the cap a connection is
//! admitted at once. At the cap, the longest-idle connection (no request in flight, longest
//! since its last request ended) is closed to make room: an idle connection would otherwise
//! hold its slot for ever, and drivers reconnect on their own. When every connection is busy,
//! the newcomer waits briefly for a slot and is then refused; refusals are logged at most once
//! per [`REFUSAL_LOG_INTERVAL`], with the number left out since the last line.
//!
//! The session marks its requests with [`Activity::busy`]; the listener closes an idle one by
//! cancelling the token the session watches between requests, so a request in flight always
//! finishes and gets its reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a connection over the cap waits for a slot before it is refused.
pub const OVER_CAP_WAIT: Duration = Duration::from_secs(2);
/// At most one WARN line about refused connections per this long.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one downstream connection is doing, shared by its session and the listener.
#[derive(Debug)]
pub struct Activity {
    /// Requests in flight (0 or 1 for a driver; counted to stay right whatever the session does).
    in_flight: AtomicU32,
    /// When the last request ended (or the connection opened).
    last_active: Mutex<Instant>,
    /// Cancelled to close the connection between requests.
    close: CancellationToken,
}

/// A request in flight on one connection; the connection is idle again when it drops.
#[derive(Debug)]
pub struct Busy<'a>(&'a Activity);

impl Activity {
    fn new(close: CancellationToken) -> Activity {
        Activity {
            in_flight: AtomicU32::new(0),
            last_active: Mutex::new(Instant::now()),
            close,
        }
    }

    /// Marks a request in flight until the returned guard drops (after its reply was written).
    pub fn busy(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    /// The token the session watches between requests: cancelled at shutdown or to close this
    /// connection for a newcomer.
    pub fn closed(&self) -> &CancellationToken {
        &self.close
    }

    /// `Some(since)` when no request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            *self
                .last_active
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self
            .0
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted connection: its slot and its entry in the registry, both given back on drop.
#[derive(Debug)]
pub struct Admitted {
    /// Shared with the session.
    pub activity: Arc<Activity>,
    id: u64,
    admission: Arc<Admission>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The slots and the connections holding them.
#[derive(Debug)]
pub struct Admission {
    max_clients: usize,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    refusals: RefusalLog,
}

impl Admission {
    /// Room for `max_clients` connections (at least one).
    pub fn new(max_clients: usize) -> Arc<Admission> {
        let max_clients = max_clients.max(1);
        Arc::new(Admission {
            max_clients,
            slots: Arc::new(Semaphore::new(max_clients)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            refusals: RefusalLog::default(),
        })
    }

    /// The cap.
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// A slot for a new connection whose session will watch a child of `shutdown`: at once
    /// below the cap; at the cap, after closing the longest-idle connection; else within
    /// [`OVER_CAP_WAIT`]. `None`: refuse it.
    pub async fn admit(self: &Arc<Self>, shutdown: &CancellationToken) -> Option<Admitted> {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.close_longest_idle() {
                    tracing::debug!(
                        max_clients = self.max_clients,
                        "closed the longest-idle downstream connection to admit a new one"
                    );
                }
                match tokio::time::timeout(OVER_CAP_WAIT, Arc::clone(&self.slots).acquire_owned())
                    .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => return None,
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(shutdown.child_token()));
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&activity));
        Some(Admitted {
            activity,
            id,
            admission: Arc::clone(self),
            _slot: slot,
        })
    }

    /// Closes the connection idle the longest, if any is idle; it leaves the registry at once
    /// so the next newcomer picks another. Returns whether one was closed.
    fn close_longest_idle(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let longest = open
            .iter()
            .filter_map(|(id, activity)| activity.idle_since().map(|since| (since, *id)))
            .min();
        let Some((_, id)) = longest else {
            return false;
        };
        if let Some(activity) = open.remove(&id) {
            activity.close.cancel();
        }
        true
    }

    /// Logs a refusal, or counts it for the next line when one was logged recently.
    pub fn log_refusal(&self) {
        if let Some(suppressed) = self.refusals.record(Instant::now()) {
            tracing::warn!(
                max_clients = self.max_clients,
                suppressed,
                "refusing a downstream connection: MONGO_POOL_MAX_CLIENTS are open and busy \
                 (suppressed = refusals not logged since the previous line; at most one line \
                 per {}s)",
                REFUSAL_LOG_INTERVAL.as_secs()
            );
        }
    }
}

/// The rate limit of the refusal WARN.
#[derive(Debug, Default)]
struct RefusalLog {
    state: Mutex<RefusalState>,
}

#[derive(Debug, Default)]
struct RefusalState {
    last_line: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// A refusal at `now`: `Some(suppressed since the last line)` when a line is due.
    fn record(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            state.suppressed += 1;
            return None;
        }
        state.last_line = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_make_one_line_per_interval_with_the_count_left_out() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.record(t0), Some(0), "the first one is logged");
        for _ in 0..500 {
            assert_eq!(log.record(t0), None);
        }
        let almost = t0 + REFUSAL_LOG_INTERVAL - Duration::from_millis(1);
        assert_eq!(log.record(almost), None);
        let due = t0 + REFUSAL_LOG_INTERVAL;
        assert_eq!(log.record(due), Some(501));
        assert_eq!(log.record(due + REFUSAL_LOG_INTERVAL * 3), Some(0));
    }

    /// Makes `admitted` look as if its last request ended `ago` before now.
    fn idle_for(admitted: &Admitted, ago: Duration) {
        *admitted.activity.last_active.lock().unwrap() = Instant::now() - ago;
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_is_closed_and_a_busy_one_never() {
        let admission = Admission::new(3);
        let shutdown = CancellationToken::new();
        let busy = admission.admit(&shutdown).await.unwrap();
        let older = admission.admit(&shutdown).await.unwrap();
        let newer = admission.admit(&shutdown).await.unwrap();
        idle_for(&busy, Duration::from_secs(30));
        idle_for(&older, Duration::from_secs(20));
        idle_for(&newer, Duration::from_secs(10));
        // `busy` has been quiet longest, but a request is in flight on it.
        let request = busy.activity.busy();

        let admitting = {
            let admission = Arc::clone(&admission);
            let shutdown = shutdown.clone();
            tokio::spawn(async move { admission.admit(&shutdown).await })
        };
        older.activity.closed().cancelled().await;
        assert!(!busy.activity.closed().is_cancelled());
        assert!(!newer.activity.closed().is_cancelled());
        drop(older); // its session ends and gives the slot back
        let fourth = admitting.await.unwrap();
        assert!(fourth.is_some(), "the newcomer got the freed slot");
        drop(request);
    }

    #[tokio::test]
    async fn a_request_that_ends_makes_its_connection_the_most_recently_active() {
        let admission = Admission::new(2);
        let shutdown = CancellationToken::new();
        let first = admission.admit(&shutdown).await.unwrap();
        let second = admission.admit(&shutdown).await.unwrap();
        idle_for(&first, Duration::from_secs(20));
        idle_for(&second, Duration::from_secs(10));
        drop(first.activity.busy()); // `first` just answered a request
        assert!(admission.close_longest_idle());
        assert!(second.activity.closed().is_cancelled());
        assert!(!first.activity.closed().is_cancelled());
        // Nobody idle is left in the registry: nothing more to close.
        let _request = first.activity.busy();
        assert!(!admission.close_longest_idle());
    }

    #[test]
    fn shutdown_reaches_every_connection() {
        let admission = Admission::new(2);
        let shutdown = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let one = runtime.block_on(admission.admit(&shutdown)).unwrap();
        shutdown.cancel();
        assert!(one.activity.closed().is_cancelled());
    }
}
