//! lambda-sim: a local AWS Lambda for tests. It serves the Runtime API (`2018-06-01`) and the
//! Extensions API (`2020-01-01`) on 127.0.0.1 and drives real processes (the function and its
//! external extensions) through Init, Invoke (with SIGSTOP/SIGCONT freezes between
//! invocations) and Shutdown (SHUTDOWN with a deadline, then SIGKILL), printing one JSON line
//! per phase on stdout. See `testkit/README.md` and `lambda-sim --help`.
//!
//! Data flow: `options` (command line, checked) -> `run` starts `api` (axum) over the shared
//! `state` -> `lifecycle`/`invoke` start processes (`sandbox`), deliver events through
//! `state`, wait on it, and print `report` lines. `runner` runs the binary for tests.

mod api;
mod ids;
mod invoke;
mod lifecycle;
mod options;
pub mod report;
pub mod runner;
mod sandbox;
mod state;

use std::sync::Arc;

use anyhow::Context;

pub use lifecycle::{INIT_LIMIT, RUNTIME_TERM_GRACE, SHUTDOWN_BUDGET};
pub use options::Options;
pub use report::{FunctionEnd, InitLine, InvokeLine, Line, PhaseError, ShutdownLine, Status};
pub use runner::{SimRun, run};
pub use state::MAX_EXTENSIONS;

use lifecycle::Environment;
use options::Config;
use report::print;

/// The account id in ARNs and registration responses (12 digits).
pub const ACCOUNT_ID: &str = "123456789012";

/// Runs the simulation `options` describe, printing its JSON lines on stdout. Returns whether
/// everything succeeded (Init, every invocation, a clean Shutdown).
///
/// # Errors
/// Invalid options (missing files, a bad event, ...) or a failure to serve the APIs.
pub async fn simulate(options: Options) -> anyhow::Result<bool> {
    let config = Arc::new(Config::from_options(options)?);
    let shared = Arc::new(state::Shared::new(sandbox::platform(&config)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let api = listener.local_addr()?.to_string();
    tracing::info!(api, "Runtime API and Extensions API listening");
    let router = api::router(Arc::clone(&shared));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let ok = lifecycle_loop(shared, config, api).await;
    server.abort();
    Ok(ok)
}

/// Init, the invocations (resetting the environment after a timeout or crash), Shutdown.
async fn lifecycle_loop(shared: Arc<state::Shared>, config: Arc<Config>, api: String) -> bool {
    let mut ok = true;
    let mut environment: Option<Environment> = None;
    let mut n = 0;
    loop {
        if environment.is_none() {
            let (env, line) =
                Environment::init(Arc::clone(&shared), Arc::clone(&config), api.clone()).await;
            let failed = line.status != Status::Ok;
            print(&Line::Init(line));
            if failed {
                // Lambda tears a failed environment down; lambda-sim stops there.
                print(&Line::Shutdown(env.shutdown("failure").await));
                return false;
            }
            environment = Some(env);
        }
        if n >= config.invocations {
            break;
        }
        n += 1;
        let Some(env) = environment.take() else {
            break;
        };
        let (line, reset) = env.invoke(n).await;
        ok &= line.status == Status::Ok;
        print(&Line::Invoke(line));
        match reset {
            Some(reset) => {
                print(&Line::Shutdown(env.shutdown(reset.reason()).await));
                if n >= config.invocations {
                    return false;
                }
            }
            None => {
                env.freeze().await;
                environment = Some(env);
            }
        }
    }
    if let Some(env) = environment {
        let line = env.shutdown(&config.shutdown_reason).await;
        ok &= line.clean();
        print(&Line::Shutdown(line));
    }
    ok
}
