//! `atlas-sim`: see `mongo_pool_testkit::atlas::Options` (or `atlas-sim --help`).
#![forbid(unsafe_code)]

use clap::Parser;
use mongo_pool_testkit::atlas::{self, Options};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ATLAS_SIM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    // Register the handlers before anything is served: a SIGTERM right after the start line
    // must stop the simulator cleanly (exit 0), not kill it with the default action.
    use tokio::signal::unix::{SignalKind, signal as unix_signal};
    let (mut term, mut int) = match (
        unix_signal(SignalKind::terminate()),
        unix_signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("atlas-sim: error: installing signal handlers: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        signal.cancel();
    });
    match atlas::run(options, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atlas-sim: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
