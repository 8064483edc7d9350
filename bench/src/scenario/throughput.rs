//! Scenario 2, throughput: operations per second of `find` at 1, 8 and 64 concurrent
//! downstream clients for each variant (the same upstream pool size for the direct driver
//! and for mongo-pool), with the through-mongo-pool / direct ratio per repetition.

use std::time::Duration;

use crate::load::{Finder, throughput};
use crate::report::Report;
use crate::scenario::{VARIANTS, paired_ratios};

/// The concurrency levels.
pub const CLIENTS: [usize; 3] = [1, 8, 64];

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Repetitions.
    pub reps: usize,
    /// How long each measurement runs.
    pub length: Duration,
}

/// Runs the scenario over `finders` (in [`VARIANTS`] order).
///
/// # Errors
/// When a find fails.
pub async fn run(report: &mut Report, plan: Plan, finders: &[Finder; 3]) -> anyhow::Result<()> {
    for clients in CLIENTS {
        let mut ops: [Vec<f64>; 3] = Default::default();
        for _ in 0..plan.reps {
            for (i, finder) in finders.iter().enumerate() {
                ops[i].push(throughput(finder, clients, plan.length).await?);
            }
        }
        for (i, name) in VARIANTS.iter().enumerate() {
            report.figure(
                &format!("throughput.ops_s.{name}.c{clients}"),
                "ops/s",
                &ops[i],
            );
        }
        report.figure(
            &format!("throughput.driver_via_pool_over_direct.c{clients}"),
            "ratio",
            &paired_ratios(&ops[1], &ops[0]),
        );
        report.figure(
            &format!("throughput.pool_client_over_direct.c{clients}"),
            "ratio",
            &paired_ratios(&ops[2], &ops[0]),
        );
    }
    Ok(())
}
