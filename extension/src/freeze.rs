//! Freeze awareness. Lambda suspends the whole process between invocations without warning,
//! and meanwhile NATs and Atlas may silently drop its idle connections. A cheap ticker notices
//! the gap a freeze leaves in the monotonic clock and advances an epoch; connections that sat
//! idle across an epoch change are pinged before use. The ticker cannot run while frozen, so the
//! epoch is also advanced by whoever first sees that the last tick is too old.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the ticker runs while the process is awake.
pub const TICK: Duration = Duration::from_millis(250);
/// A gap longer than this since the last tick means the process was suspended.
pub const GAP: Duration = Duration::from_millis(1500);

/// Detects freezes; see the module docs.
#[derive(Debug)]
pub struct FreezeDetector {
    origin: Instant,
    last_tick_ms: AtomicU64,
    epoch: AtomicU64,
    metrics: Arc<Metrics>,
}

impl FreezeDetector {
    /// A detector; call [`FreezeDetector::run`] to start its ticker.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(FreezeDetector {
            origin: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            metrics,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a tick now; advances the epoch if the previous one is older than [`GAP`].
    fn tick(&self) -> u64 {
        let now = self.now_ms();
        let last = self.last_tick_ms.swap(now, Ordering::AcqRel);
        if now.saturating_sub(last) > GAP.as_millis() as u64 {
            self.metrics.freeze();
            tracing::debug!(
                gap_ms = now - last,
                "freeze detected: idle connections will be pinged before use"
            );
            self.epoch.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.epoch.load(Ordering::Acquire)
        }
    }

    /// The current epoch, first checking whether a freeze just ended.
    pub fn epoch(&self) -> u64 {
        self.tick()
    }

    /// Ticks every [`TICK`] until `shutdown`. Cancel-safe.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => { self.tick(); }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_in_the_clock_advances_the_epoch() {
        let detector = FreezeDetector::new(Arc::new(Metrics::default()));
        let before = detector.epoch();
        assert_eq!(
            detector.epoch(),
            before,
            "ticks close together are not a freeze"
        );
        // What a suspension looks like from inside: nothing ticks, then the clock has jumped.
        std::thread::sleep(GAP + Duration::from_millis(100));
        assert_eq!(detector.epoch(), before + 1);
        assert_eq!(detector.epoch(), before + 1, "one freeze counts once");
    }
}
