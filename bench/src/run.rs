//! One benchmark run: the settings, the atlas-sim instances and mongo-pool each scenario
//! needs, the scenarios in order, the goals, and the report files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongo_pool_testkit::process::AtlasSim;

use crate::goals::{Bound, Goal};
use crate::load::Finder;
use crate::report::Report;
use crate::rig::{
    self, atlas, direct_driver, driver_via_pool, mongo_pool, pool_client, seed, uri_with,
};
use crate::scenario::{lambda, resources, roundtrip, throughput};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `report.json` and `report.md` go.
    pub out: PathBuf,
    /// Fewer repetitions and shorter runs (a smoke test of the harness, not a measurement).
    pub quick: bool,
}

/// The settings of a run, all recorded in the report.
#[derive(Debug, Clone)]
struct Settings {
    reps: usize,
    roundtrip: roundtrip::Plan,
    throughput: throughput::Plan,
    lambda: lambda::Plan,
    resources: resources::Plan,
    pool_size: usize,
    members: u16,
    latency_ms: u64,
    sts_delay_ms: u64,
    idle_disconnect_ms: u64,
}

impl Settings {
    fn new(quick: bool) -> Settings {
        let reps = if quick { 2 } else { 5 };
        let pool_size = 16;
        Settings {
            reps,
            roundtrip: roundtrip::Plan {
                reps,
                samples: if quick { 300 } else { 2000 },
                warmup: 200,
            },
            throughput: throughput::Plan {
                reps: if quick { 1 } else { 3 },
                length: Duration::from_millis(if quick { 500 } else { 2000 }),
            },
            lambda: lambda::Plan {
                reps,
                thaw_freeze: Duration::from_millis(1200),
                warm_invocations: 100,
            },
            resources: resources::Plan {
                reps: if quick { 1 } else { 3 },
                pool_size,
                peak_length: Duration::from_millis(if quick { 500 } else { 2000 }),
                settle: Duration::from_millis(1000),
            },
            pool_size,
            members: 3,
            latency_ms: 5,
            sts_delay_ms: 50,
            idle_disconnect_ms: 500,
        }
    }

    fn record(&self, report: &mut Report) {
        report.setting("repetitions", self.reps);
        report.setting("atlas_sim.members", self.members);
        report.setting(
            "atlas_sim.tls_and_auth",
            "TLS, MONGODB-AWS with temporary credentials (session token), verified locally",
        );
        report.setting("roundtrip.samples_per_rep", self.roundtrip.samples);
        report.setting("roundtrip.warmup_per_rep", self.roundtrip.warmup);
        report.setting("roundtrip_throughput.atlas_latency_ms", 0);
        report.setting("upstream_max_pool_size", self.pool_size);
        report.setting("throughput.reps", self.throughput.reps);
        report.setting(
            "throughput.seconds_per_measurement",
            self.throughput.length.as_secs_f64(),
        );
        report.setting(
            "throughput.downstream_pool",
            "64 connections (driver maxPoolSize / mongo-pool-client max_connections)",
        );
        report.setting("lambda.atlas_latency_ms", self.latency_ms);
        report.setting("lambda.atlas_sts_delay_ms", self.sts_delay_ms);
        report.setting(
            "lambda.function_init_delay_ms",
            "0 and 200 (NOTES_INIT_DELAY_MS)",
        );
        report.setting(
            "cold.e2e_definition",
            "lambda-sim init.ms + invoke(1).ms: first process start to first response",
        );
        report.setting("thaw.atlas_idle_disconnect_ms", self.idle_disconnect_ms);
        report.setting("thaw.freeze_ms", self.lambda.thaw_freeze.as_millis() as u64);
        report.setting("warm.invocations_counted", self.lambda.warm_invocations);
        report.setting("resources.reps", self.resources.reps);
        report.setting("resources.requests", resources::REQUESTS);
        report.setting(
            "resources.peak_seconds_64_clients",
            self.resources.peak_length.as_secs_f64(),
        );
    }
}

/// Runs every scenario and writes the report. A scenario that fails is recorded under the
/// `errors` setting (its goals then fail for lack of a value) and the others still run.
///
/// # Errors
/// When the report cannot be written.
pub async fn run(options: &Options) -> anyhow::Result<(Report, bool)> {
    let started = Instant::now();
    let settings = Settings::new(options.quick);
    let mut report = Report::default();
    settings.record(&mut report);
    record_binaries(&mut report);
    let dir = tempfile::Builder::new()
        .prefix("mongo-pool-bench-")
        .tempdir_in("/tmp")?;
    let mut errors = Vec::new();

    step("round trip and throughput (latency 0)");
    if let Err(e) = fast(&mut report, &settings, dir.path()).await {
        errors.push(format!("round trip / throughput / resources: {e:#}"));
    }
    step("cold start and warm counts under lambda-sim");
    if let Err(e) = cold(&mut report, &settings, dir.path()).await {
        errors.push(format!("cold start / warm counts: {e:#}"));
    }
    step("thaw under lambda-sim");
    if let Err(e) = thaw(&mut report, &settings, dir.path()).await {
        errors.push(format!("thaw: {e:#}"));
    }
    evaluate(&mut report);
    report.setting(
        "harness_seconds",
        (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    );
    let ok = errors.is_empty();
    report.setting("errors", errors);
    report.write(&options.out)?;
    Ok((report, ok))
}

fn step(what: &str) {
    eprintln!("mongo-pool-bench: {what}");
}

/// The mongo-pool binary measured, and its build.
fn record_binaries(report: &mut Report) {
    match rig::binary("mongo-pool").and_then(|p| Ok(std::fs::canonicalize(p)?)) {
        Ok(path) => {
            let profile = if path.components().any(|c| c.as_os_str() == "dist") {
                "dist (x86_64 musl)"
            } else {
                "not dist"
            };
            report.setting("mongo_pool.binary", path.display().to_string());
            report.setting("mongo_pool.profile", profile);
            match resources::binary_mib(&path) {
                Ok(mib) => report.figure("resources.binary_mib", "MiB", &[mib]),
                Err(e) => report.setting("mongo_pool.binary_error", format!("{e:#}")),
            }
        }
        Err(e) => report.setting("mongo_pool.binary_error", format!("{e:#}")),
    }
}

/// An atlas-sim with `args`, seeded with the note, and the seeding client closed.
async fn seeded_sim(
    dir: &Path,
    name: &str,
    members: u16,
    args: &[String],
) -> anyhow::Result<AtlasSim> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let mut all = vec!["--members".to_owned(), members.to_string()];
    all.extend_from_slice(args);
    let sim = atlas(&dir, &all).await?;
    let client = direct_driver(&sim.start.uri).await?;
    seed(&client).await?;
    client.shutdown().await;
    Ok(sim)
}

/// Round trip, throughput and resources against an atlas-sim without latency.
async fn fast(report: &mut Report, settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    let sim = seeded_sim(
        dir,
        "fast",
        settings.members,
        &["--latency-ms".into(), "0".into()],
    )
    .await?;
    let uri = uri_with(
        &sim.start.uri,
        &format!("maxPoolSize={}", settings.pool_size),
    );
    let pool = mongo_pool(&uri).await?;
    let direct = direct_driver(&uri).await?;
    let via_pool = driver_via_pool(&pool, 64).await?;
    let client = pool_client(&pool, 64).await?;
    let finders = [
        Finder::driver(&direct),
        Finder::driver(&via_pool),
        Finder::pool_client(&client),
    ];
    roundtrip::run(report, settings.roundtrip, &finders, dir).await?;
    step("throughput at 1, 8 and 64 clients");
    throughput::run(report, settings.throughput, &finders).await?;
    drop(finders);
    drop(client);
    via_pool.shutdown().await;
    direct.shutdown().await;
    pool.stop().await?;
    step("resources of the mongo-pool process");
    resources::run(report, settings.resources, &sim).await?;
    sim.stop().await?;
    Ok(())
}

fn lambda_sim_args(settings: &Settings) -> Vec<String> {
    vec![
        "--latency-ms".into(),
        settings.latency_ms.to_string(),
        "--sts-delay-ms".into(),
        settings.sts_delay_ms.to_string(),
    ]
}

/// Cold starts, then the warm counts, against atlas-sim with latency and STS delay.
async fn cold(report: &mut Report, settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    let sim = seeded_sim(dir, "cold", settings.members, &lambda_sim_args(settings)).await?;
    lambda::cold_start(report, settings.lambda, &sim).await?;
    step("authentications over warm invocations, connections after SHUTDOWN");
    lambda::warm_counts(report, settings.lambda, &sim).await?;
    sim.stop().await?;
    Ok(())
}

/// Thaws against atlas-sim with latency, STS delay and an idle disconnect.
async fn thaw(report: &mut Report, settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    let mut args = lambda_sim_args(settings);
    args.extend([
        "--idle-disconnect-ms".into(),
        settings.idle_disconnect_ms.to_string(),
    ]);
    let sim = seeded_sim(dir, "thaw", settings.members, &args).await?;
    lambda::thaw(report, settings.lambda, &sim).await?;
    sim.stop().await?;
    Ok(())
}

/// The goals of issue 9, from the figures of this run.
pub fn evaluate(report: &mut Report) {
    let m = |name: &str| report.median(name);
    let goals = vec![
        Goal::evaluate(
            "proxy tax p50 / echo floor p50",
            m("roundtrip.proxy_tax_over_echo_floor_p50"),
            Bound::AtMost,
            1.5,
        ),
        Goal::evaluate(
            "throughput via mongo-pool / direct, 8 clients",
            m("throughput.driver_via_pool_over_direct.c8"),
            Bound::AtLeast,
            0.8,
        ),
        Goal::evaluate(
            "throughput via mongo-pool / direct, 64 clients",
            m("throughput.driver_via_pool_over_direct.c64"),
            Bound::AtLeast,
            0.8,
        ),
        Goal::evaluate(
            "cold start first db_ms mongo-pool / direct, 200 ms init",
            m("cold.first_db_ms_ratio.init200"),
            Bound::AtMost,
            0.25,
        ),
        Goal::evaluate(
            "cold start first invocation end-to-end mongo-pool / direct, 0 ms init",
            m("cold.first_e2e_ratio.init0"),
            Bound::AtMost,
            1.1,
        ),
        Goal::evaluate(
            "thaw errors through mongo-pool",
            m("thaw.errors.mongo_pool"),
            Bound::AtMost,
            0.0,
        ),
        Goal::evaluate(
            "thaw latency mongo-pool / direct",
            m("thaw.latency_ratio"),
            Bound::AtMost,
            1.1,
        ),
        Goal::evaluate(
            "binary MiB (x86_64 musl dist)",
            m("resources.binary_mib"),
            Bound::AtMost,
            8.0,
        ),
        Goal::evaluate(
            "RSS idle MiB",
            m("resources.rss_idle_mib"),
            Bound::AtMost,
            12.0,
        ),
        Goal::evaluate(
            "RSS peak under 64 clients MiB",
            m("resources.rss_peak_64_clients_mib"),
            Bound::AtMost,
            32.0,
        ),
        Goal::evaluate(
            "authentications per warm invocation (mongo-pool)",
            m("warm.auths_per_100_invocations.mongo_pool").map(|v| v / 100.0),
            Bound::AtMost,
            0.0,
        ),
        Goal::evaluate(
            "upstream connections left after SHUTDOWN (mongo-pool)",
            m("shutdown.upstream_connections_left.mongo_pool"),
            Bound::AtMost,
            0.0,
        ),
    ];
    report.goals = goals;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_goal_of_the_issue_is_listed_and_fails_without_figures() {
        let mut report = Report::default();
        evaluate(&mut report);
        assert_eq!(report.goals.len(), 12);
        assert!(report.goals.iter().all(|g| !g.pass && g.value.is_none()));
    }

    #[test]
    fn goals_read_the_figures_of_the_run() {
        let mut report = Report::default();
        report.figure(
            "roundtrip.proxy_tax_over_echo_floor_p50",
            "ratio",
            &[1.2, 1.4, 2.0],
        );
        report.figure("thaw.errors.mongo_pool", "count", &[0.0]);
        report.figure("warm.auths_per_100_invocations.mongo_pool", "count", &[3.0]);
        evaluate(&mut report);
        let goal = |prefix: &str| {
            report
                .goals
                .iter()
                .find(|g| g.name.starts_with(prefix))
                .cloned()
        };
        let tax = goal("proxy tax").unwrap_or_else(|| unreachable!());
        assert_eq!((tax.value, tax.pass), (Some(1.4), true));
        assert!(goal("thaw errors").is_some_and(|g| g.pass));
        let auths = goal("authentications").unwrap_or_else(|| unreachable!());
        assert_eq!((auths.value, auths.pass), (Some(0.03), false));
    }
}
