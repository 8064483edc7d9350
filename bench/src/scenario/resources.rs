//! Scenario 5, resources of the mongo-pool process: the binary's size, its RSS idle, after
//! 10,000 requests and at its peak under 64 clients (VmRSS / VmHWM of /proc/PID/status), and
//! the CPU seconds (utime + stime of /proc/PID/stat) the 10,000 requests cost. A fresh
//! process per repetition.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use mongo_pool_testkit::process::AtlasSim;

use crate::load::{Finder, fixed_count, throughput};
use crate::report::Report;
use crate::rig::{mongo_pool, pool_client, uri_with};

/// Requests of the RSS and CPU measurements.
pub const REQUESTS: usize = 10_000;
const MIB: f64 = 1024.0 * 1024.0;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Repetitions (fresh processes).
    pub reps: usize,
    /// The upstream pool size (`maxPoolSize`).
    pub pool_size: usize,
    /// How long the 64-client load runs.
    pub peak_length: Duration,
    /// How long the process settles before the idle RSS.
    pub settle: Duration,
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
///
/// # Errors
/// When the process is gone or the file lacks them.
pub fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((
        kib(&text, "VmRSS:")? / 1024.0,
        kib(&text, "VmHWM:")? / 1024.0,
    ))
}

fn kib(status: &str, key: &str) -> anyhow::Result<f64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/PID/status"))?;
    let value = line[key.len()..].trim().trim_end_matches("kB").trim();
    Ok(value.parse::<f64>()?)
}

/// utime + stime of `stat` (the text of /proc/PID/stat), in clock ticks.
///
/// # Errors
/// When the text is not a stat line.
pub fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no `)` in stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("stat has too few fields");
    };
    Ok(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that fails).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// The binary's size in MiB.
///
/// # Errors
/// When it cannot be read.
pub fn binary_mib(binary: &Path) -> anyhow::Result<f64> {
    Ok(std::fs::metadata(binary)?.len() as f64 / MIB)
}

/// Runs the scenario against `sim` (no latency).
///
/// # Errors
/// When mongo-pool does not start or a request fails.
pub async fn run(report: &mut Report, plan: Plan, sim: &AtlasSim) -> anyhow::Result<()> {
    let tick = ticks_per_second();
    let uri = uri_with(&sim.start.uri, &format!("maxPoolSize={}", plan.pool_size));
    let (mut idle, mut after, mut peak, mut cpu) = (vec![], vec![], vec![], vec![]);
    for _ in 0..plan.reps {
        let pool = mongo_pool(&uri).await?;
        let pid = pool.pid().context("mongo-pool exited")?;
        tokio::time::sleep(plan.settle).await;
        idle.push(memory_mib(pid)?.0);
        let client = pool_client(&pool, 64).await?;
        let finder = Finder::pool_client(&client);
        let start = cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
        fixed_count(&finder, 1, REQUESTS).await?;
        let end = cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
        cpu.push((end.saturating_sub(start)) as f64 / tick);
        after.push(memory_mib(pid)?.0);
        throughput(&finder, 64, plan.peak_length).await?;
        peak.push(memory_mib(pid)?.1);
        drop(client);
        pool.stop().await?;
    }
    report.figure("resources.rss_idle_mib", "MiB", &idle);
    report.figure("resources.rss_after_10000_requests_mib", "MiB", &after);
    report.figure("resources.rss_peak_64_clients_mib", "MiB", &peak);
    report.figure("resources.cpu_s_per_10000_requests", "s", &cpu);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_ticks_add_utime_and_stime_after_the_command_name() {
        let stat = "4242 (mongo pool) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 5 0 0 20 0 4 0";
        assert_eq!(cpu_ticks(stat).unwrap(), 42);
        assert!(cpu_ticks("4242 (x) S 1").is_err());
    }

    #[test]
    fn memory_is_read_from_proc_status() {
        let (rss, hwm) = memory_mib(std::process::id()).unwrap();
        assert!(rss > 0.0 && hwm >= rss, "{rss} / {hwm}");
        assert_eq!(kib("VmRSS:\t    2048 kB\n", "VmRSS:").unwrap(), 2048.0);
    }
}
