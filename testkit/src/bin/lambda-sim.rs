//! `lambda-sim`: a local AWS Lambda; see `mongo_pool_testkit::lambda_sim` (or
//! `lambda-sim --help`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mongo_pool_testkit::lambda_sim::{self, Options};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LAMBDA_SIM_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("lambda-sim: error: installing signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    // A signal drops the simulation, which SIGKILLs every process group it started.
    tokio::select! {
        result = lambda_sim::simulate(options) => match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("lambda-sim: error: {e:#}");
                ExitCode::from(2)
            }
        },
        _ = term.recv() => ExitCode::from(143),
        _ = int.recv() => ExitCode::from(130),
    }
}
