//! Scenarios 3 and 4 and the counts of scenario 5 under lambda-sim: the baseline
//! (`direct-function` alone, the driver authenticating itself) and `bootstrap` with the
//! mongo-pool extension, against one atlas-sim with a few ms of latency and tens of ms of STS
//! delay.
//!
//! - cold start: the first invocation's end-to-end time (lambda-sim's Init + that
//!   invocation: from starting the first process to the response) and its `db_ms`, with the
//!   function's own init at 0 ms and at 200 ms;
//! - thaw: a freeze longer than atlas-sim's idle disconnect, then an invocation: its latency
//!   and errors;
//! - warm counts: authentications during 100 warm invocations, and upstream connections left
//!   at atlas-sim after SHUTDOWN.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mongo_pool_testkit::lambda_sim::{InitLine, InvokeLine, Line, Status};
use mongo_pool_testkit::process::AtlasSim;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::report::Report;
use crate::rig::{DB, NOTE_ID, authentications, aws_env, binary, open_connections};
use crate::scenario::paired_ratios;

/// The two ways the function reaches Atlas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `direct-function`: the official driver inside the function.
    Direct,
    /// `bootstrap` + the mongo-pool extension.
    MongoPool,
}

impl Variant {
    /// Both, baseline first.
    pub const ALL: [Variant; 2] = [Variant::Direct, Variant::MongoPool];

    /// The name figures use.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::MongoPool => "mongo_pool",
        }
    }
}

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Repetitions of the cold-start and thaw runs.
    pub reps: usize,
    /// The freeze of the thaw runs (longer than atlas-sim's idle disconnect).
    pub thaw_freeze: Duration,
    /// Warm invocations counted for authentications.
    pub warm_invocations: u32,
}

/// What one lambda-sim run printed.
#[derive(Debug, Default)]
struct Run {
    init: Option<InitLine>,
    invokes: Vec<InvokeLine>,
    /// atlas-sim's authentications right after invocation 1.
    auths_after_first: Option<u64>,
}

/// The lambda-sim command line of `variant`, without the run's own options.
fn lambda_args(
    variant: Variant,
    sim: &AtlasSim,
    dir: &Path,
    init_delay_ms: u64,
) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = vec!["--logs".into(), dir.join("logs").display().to_string()];
    let mut env: Vec<(String, String)> = aws_env();
    env.push(("NOTES_DB".into(), DB.into()));
    env.push(("NOTES_INIT_DELAY_MS".into(), init_delay_ms.to_string()));
    match variant {
        Variant::Direct => {
            args.extend(["--function".into(), path(binary("direct-function")?)]);
            env.push(("NOTES_MONGODB_URI".into(), sim.start.uri.clone()));
        }
        Variant::MongoPool => {
            args.extend(["--function".into(), path(binary("bootstrap")?)]);
            args.extend(["--extension".into(), path(binary("mongo-pool")?)]);
            env.push(("MONGO_POOL_URI".into(), sim.start.uri.clone()));
            env.push((
                "MONGO_POOL_SOCKET".into(),
                path(dir.join("mongo-pool.sock")),
            ));
        }
    }
    for (k, v) in env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    Ok(args)
}

fn path(p: impl Into<PathBuf>) -> String {
    p.into().display().to_string()
}

/// Runs lambda-sim to the end (at most 120 s), reading its lines as they come; after
/// invocation 1 it reads atlas-sim's authentication count.
async fn simulate(sim: &AtlasSim, args: &[String]) -> anyhow::Result<Run> {
    let mut child = Command::new(binary("lambda-sim")?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting lambda-sim")?;
    let stdout = child.stdout.take().context("lambda-sim's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut run = Run::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = tokio::time::timeout(left, lines.next_line()).await else {
            bail!("lambda-sim did not finish within 120 s");
        };
        let Some(line) = line? else { break };
        match serde_json::from_str::<Line>(&line)
            .with_context(|| format!("lambda-sim printed {line}"))?
        {
            Line::Init(init) => run.init = Some(init),
            Line::Invoke(invoke) => {
                if invoke.n == 1 {
                    run.auths_after_first = Some(authentications(&sim.status().await?));
                }
                run.invokes.push(invoke);
            }
            Line::Shutdown(_) => {}
        }
    }
    child.wait().await?;
    Ok(run)
}

/// Whether an invocation succeeded as the user sees it (`ok: true` in the response).
fn succeeded(invoke: &InvokeLine) -> bool {
    invoke.status == Status::Ok
        && invoke
            .response
            .as_ref()
            .is_some_and(|r| r["ok"] == json!(true))
}

/// A fresh directory (sockets must stay short: under /tmp).
fn run_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("mongo-pool-bench-")
        .tempdir_in("/tmp")?)
}

/// Cold starts: `reps` single-invocation runs of each variant at each init delay,
/// interleaved; ratios pair the runs of one repetition.
///
/// # Errors
/// When lambda-sim cannot run or a first invocation fails.
pub async fn cold_start(report: &mut Report, plan: Plan, sim: &AtlasSim) -> anyhow::Result<()> {
    let event = json!({"action": "get", "id": NOTE_ID}).to_string();
    for delay in [0_u64, 200] {
        let mut e2e: [Vec<f64>; 2] = Default::default();
        let mut db: [Vec<f64>; 2] = Default::default();
        for _ in 0..plan.reps {
            for (i, variant) in Variant::ALL.into_iter().enumerate() {
                let dir = run_dir()?;
                let mut args = lambda_args(variant, sim, dir.path(), delay)?;
                args.extend([
                    "--invocations".into(),
                    "1".into(),
                    "--event".into(),
                    event.clone(),
                ]);
                let run = simulate(sim, &args).await?;
                let (Some(init), Some(first)) = (&run.init, run.invokes.first()) else {
                    bail!("{} cold start: no init or invocation line", variant.name());
                };
                if !succeeded(first) {
                    bail!("{} cold start failed: {first:?}", variant.name());
                }
                e2e[i].push(init.ms + first.ms);
                db[i].extend(first.response.as_ref().and_then(|r| r["db_ms"].as_f64()));
            }
        }
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            let name = variant.name();
            report.figure(
                &format!("cold.first_e2e_ms.{name}.init{delay}"),
                "ms",
                &e2e[i],
            );
            report.figure(
                &format!("cold.first_db_ms.{name}.init{delay}"),
                "ms",
                &db[i],
            );
        }
        report.figure(
            &format!("cold.first_e2e_ratio.init{delay}"),
            "ratio",
            &paired_ratios(&e2e[1], &e2e[0]),
        );
        report.figure(
            &format!("cold.first_db_ms_ratio.init{delay}"),
            "ratio",
            &paired_ratios(&db[1], &db[0]),
        );
    }
    Ok(())
}

/// Thaws: two invocations with a freeze longer than the idle disconnect between them; the
/// second one's latency (`ms` of lambda-sim) and whether it failed.
///
/// # Errors
/// When lambda-sim cannot run.
pub async fn thaw(report: &mut Report, plan: Plan, sim: &AtlasSim) -> anyhow::Result<()> {
    let event = json!({"action": "get", "id": NOTE_ID}).to_string();
    let freeze = plan.thaw_freeze.as_millis().to_string();
    let mut latency: [Vec<f64>; 2] = Default::default();
    let mut errors = [0_u32; 2];
    for _ in 0..plan.reps {
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            let dir = run_dir()?;
            let mut args = lambda_args(variant, sim, dir.path(), 0)?;
            args.extend([
                "--invocations".into(),
                "2".into(),
                "--event".into(),
                event.clone(),
            ]);
            args.extend(["--freeze-ms".into(), freeze.clone()]);
            let run = simulate(sim, &args).await?;
            match run.invokes.get(1) {
                Some(second) => {
                    latency[i].push(second.ms);
                    if !succeeded(second) {
                        errors[i] += 1;
                    }
                }
                None => errors[i] += 1,
            }
        }
    }
    for (i, variant) in Variant::ALL.into_iter().enumerate() {
        let name = variant.name();
        report.figure(&format!("thaw.latency_ms.{name}"), "ms", &latency[i]);
        report.figure(
            &format!("thaw.errors.{name}"),
            "count",
            &[f64::from(errors[i])],
        );
    }
    report.figure(
        "thaw.latency_ratio",
        "ratio",
        &paired_ratios(&latency[1], &latency[0]),
    );
    Ok(())
}

/// Authentications during `plan.warm_invocations` warm invocations, and the upstream
/// connections still open at atlas-sim once lambda-sim has shut the environment down.
///
/// # Errors
/// When lambda-sim cannot run or an invocation fails.
pub async fn warm_counts(report: &mut Report, plan: Plan, sim: &AtlasSim) -> anyhow::Result<()> {
    let event = json!({"action": "get", "id": NOTE_ID}).to_string();
    let invocations = (plan.warm_invocations + 1).to_string();
    for variant in Variant::ALL {
        let before = open_connections(&sim.status().await?);
        let dir = run_dir()?;
        let mut args = lambda_args(variant, sim, dir.path(), 0)?;
        args.extend([
            "--invocations".into(),
            invocations.clone(),
            "--event".into(),
            event.clone(),
        ]);
        args.extend(["--freeze-ms".into(), "20".into()]);
        let run = simulate(sim, &args).await?;
        if let Some(failed) = run.invokes.iter().find(|i| !succeeded(i)) {
            bail!("{} warm invocation failed: {failed:?}", variant.name());
        }
        let status = settled_status(sim, before).await?;
        let warm = authentications(&status).saturating_sub(run.auths_after_first.unwrap_or(0));
        let per_100 = f64::from(u32::try_from(warm)?) * 100.0 / f64::from(plan.warm_invocations);
        let left = open_connections(&status).saturating_sub(before);
        let name = variant.name();
        report.figure(
            &format!("warm.auths_per_100_invocations.{name}"),
            "count",
            &[per_100],
        );
        report.figure(
            &format!("shutdown.upstream_connections_left.{name}"),
            "count",
            &[left as f64],
        );
    }
    Ok(())
}

/// atlas-sim's status once its open connections are back to `before` (the closes may trail
/// the processes' exit by a moment), or after 3 s.
async fn settled_status(sim: &AtlasSim, before: u64) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = sim.status().await?;
        if open_connections(&status) <= before || Instant::now() >= deadline {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
