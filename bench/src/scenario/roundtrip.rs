//! Scenario 1, round trip: p50/p99 of `find` by `_id` for each variant and for the echo
//! floor (a Unix-socket round trip of the same byte sizes between two processes), the
//! variants taking turns in blocks of [`BLOCK`] round trips within each repetition. The proxy tax is driver-via-pool minus
//! direct at p50, and its ratio to the echo floor's p50 is taken per repetition.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use bson::{Binary, Document, doc, spec::BinarySubtype};
use tokio::process::Command;

use crate::echo::EchoClient;
use crate::load::{Finder, latencies};
use crate::report::Report;
use crate::rig::{COLLECTION, DB, NOTE_ID};
use crate::scenario::{VARIANTS, paired_ratios};
use crate::stats::percentile;

/// Round trips of one variant in a row before the next takes its turn.
pub const BLOCK: usize = 100;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Repetitions.
    pub reps: usize,
    /// Round trips per variant and repetition (after the warm-up).
    pub samples: usize,
    /// Unmeasured round trips first.
    pub warmup: usize,
}

/// The byte sizes of the benchmark's `find` (OP_MSG as a driver sends it, with `lsid` and
/// `$db`) and of its reply (the note in `cursor.firstBatch`).
///
/// # Errors
/// Never in practice (the documents serialise).
pub fn find_sizes() -> anyhow::Result<(usize, usize)> {
    // Header (16) + flag bits (4) + section kind (1) + the body document.
    const OP_MSG_OVERHEAD: usize = 21;
    let lsid = Binary {
        subtype: BinarySubtype::Uuid,
        bytes: vec![0; 16],
    };
    let request = doc! {"find": COLLECTION, "filter": {"_id": NOTE_ID}, "limit": 1,
    "singleBatch": true, "lsid": {"id": lsid}, "$db": DB};
    let note = doc! {"_id": NOTE_ID, "body": {"text": "a small note"},
    "updated_at": bson::DateTime::now()};
    let reply = doc! {"cursor": {"firstBatch": [note], "id": 0_i64,
    "ns": format!("{DB}.{COLLECTION}")}, "ok": 1.0};
    Ok((
        OP_MSG_OVERHEAD + bytes(&request)?,
        OP_MSG_OVERHEAD + bytes(&reply)?,
    ))
}

fn bytes(document: &Document) -> anyhow::Result<usize> {
    Ok(bson::serialize_to_vec(document)?.len())
}

/// Runs the scenario: `finders` in [`VARIANTS`] order, the echo server started from this
/// executable on a socket in `dir`.
///
/// # Errors
/// When a find fails or the echo server does not come up.
pub async fn run(
    report: &mut Report,
    plan: Plan,
    finders: &[Finder; 3],
    dir: &Path,
) -> anyhow::Result<()> {
    let (request_len, reply_len) = find_sizes()?;
    report.setting("roundtrip.echo_request_bytes", request_len);
    report.setting("roundtrip.echo_reply_bytes", reply_len);
    let socket = dir.join("echo.sock");
    let _server = Command::new(std::env::current_exe()?)
        .arg("echo-server")
        .arg(&socket)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the echo server")?;
    let mut echo =
        EchoClient::connect(&socket, request_len, reply_len, Duration::from_secs(10)).await?;

    let mut p50: [Vec<f64>; 4] = Default::default();
    let mut p99: [Vec<f64>; 4] = Default::default();
    for _ in 0..plan.reps {
        for finder in finders {
            latencies(finder, plan.warmup).await?;
        }
        for _ in 0..plan.warmup {
            echo.round_trip().await?;
        }
        // Blocks of BLOCK round trips, each variant in turn: every block runs warm (as a
        // hot loop does) and the variants alternate often enough that slow drift on a shared
        // machine does not land on one of them.
        let mut samples: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(plan.samples));
        for _ in 0..plan.samples.div_ceil(BLOCK) {
            for (i, finder) in finders.iter().enumerate() {
                samples[i].extend(latencies(finder, BLOCK).await?);
            }
            for _ in 0..BLOCK {
                samples[3].push(echo.round_trip().await?.as_secs_f64() * 1e6);
            }
        }
        for (i, samples) in samples.iter().enumerate() {
            p50[i].extend(percentile(samples, 50.0));
            p99[i].extend(percentile(samples, 99.0));
        }
    }
    for (i, name) in VARIANTS.iter().chain(["echo_floor"].iter()).enumerate() {
        report.figure(&format!("roundtrip.p50_us.{name}"), "us", &p50[i]);
        report.figure(&format!("roundtrip.p99_us.{name}"), "us", &p99[i]);
    }
    let tax: Vec<f64> = p50[1].iter().zip(&p50[0]).map(|(b, a)| b - a).collect();
    report.figure("roundtrip.proxy_tax_p50_us", "us", &tax);
    report.figure(
        "roundtrip.proxy_tax_over_echo_floor_p50",
        "ratio",
        &paired_ratios(&tax, &p50[3]),
    );
    let client_tax: Vec<f64> = p50[2].iter().zip(&p50[0]).map(|(c, a)| c - a).collect();
    report.figure("roundtrip.pool_client_tax_p50_us", "us", &client_tax);
    Ok(())
}
