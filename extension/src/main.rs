//! The `mongo-pool` binary: see `mongo-pool --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mongo_pool::config::Config;
use mongo_pool::metrics::Metrics;
use mongo_pool::upstream::connect::Connector;

/// mongo-pool: a warm, IAM-authenticated (MONGODB-AWS) connection pool to MongoDB Atlas for AWS
/// Lambda, served to the function over a Unix socket.
///
/// Configuration comes from the environment: MONGO_POOL_URI (the Atlas connection string,
/// required) and the other MONGO_POOL_* variables listed below; AWS credentials come from the
/// standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, web identity, the
/// ECS container endpoint, EC2 IMDSv2).
///
/// Without a command it serves: as a Lambda extension when AWS_LAMBDA_RUNTIME_API is set (or
/// MONGO_POOL_MODE=lambda), else as a sidecar daemon until SIGTERM.
#[derive(Debug, Parser)]
#[command(
    name = "mongo-pool",
    version,
    about,
    long_about,
    after_long_help = mongo_pool::config::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the socket (the default).
    Serve,
    /// Check a running mongo-pool through its socket (MONGO_POOL_SOCKET): send `ping` through
    /// it to Atlas and exit 0 if it answers ok, 1 otherwise. For container health checks.
    Health,
    /// Check the configuration and the path to Atlas step by step (config, srv, connect: DNS,
    /// TCP and TLS; hello, auth: MONGODB-AWS; topology, ping, connectionStatus), printing each
    /// step with its time. Exits 0 only if every step worked.
    Check,
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn health() -> ExitCode {
    // Empty is unset, as for every MONGO_POOL_* variable.
    let path = std::env::var(mongo_pool::config::ENV_SOCKET)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| mongo_pool::config::DEFAULT_SOCKET.to_owned());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mongo-pool health: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mongo_pool::health::ping(
        std::path::Path::new(&path),
        std::time::Duration::from_secs(10),
    )) {
        Ok(()) => {
            println!("mongo-pool at {path}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("mongo-pool at {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// In Lambda, invalid configuration must reach Lambda as an Init error (`Extension.ConfigInvalid`)
/// so the function fails visibly instead of timing out.
fn report_config_error_to_lambda(command: &Command, message: &str) {
    let sidecar = std::env::var(mongo_pool::config::ENV_MODE).is_ok_and(|m| m == "sidecar");
    let Ok(runtime_api) = std::env::var(mongo_pool::config::ENV_LAMBDA_RUNTIME_API) else {
        return;
    };
    if sidecar || !matches!(command, Command::Serve) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let reported = runtime.block_on(mongo_pool::lambda::report_init_error(
        &runtime_api,
        mongo_pool::lambda::CONFIG_INVALID,
        &format!("mongo-pool: invalid configuration: {message}"),
    ));
    if let Err(e) = reported {
        eprintln!("mongo-pool: could not report the error to Lambda: {e}");
    }
}

async fn serve(config: Config) -> ExitCode {
    use mongo_pool::config::RunMode;
    if let RunMode::Lambda { runtime_api } = config.run_mode.clone() {
        let socket = match mongo_pool::serve::bind(&config) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                let _ = mongo_pool::lambda::report_init_error(
                    &runtime_api,
                    mongo_pool::lambda::CONFIG_INVALID,
                    &e.to_string(),
                )
                .await;
                return ExitCode::from(2);
            }
        };
        return match mongo_pool::lambda::run(config, runtime_api, socket, env_lookup).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "mongo-pool failed");
                ExitCode::FAILURE
            }
        };
    }
    let socket = match mongo_pool::serve::bind(&config) {
        Ok(s) => s,
        Err(e) => {
            // Once: logging is set up, so the line has the configured format (JSON in Lambda).
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(2);
        }
    };
    let running = match mongo_pool::serve::start(&config, socket, env_lookup).await {
        Ok(r) => r,
        Err(e) => {
            // Once: logging is set up, so the line has the configured format (JSON in Lambda).
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(2);
        }
    };
    wait_for_termination().await;
    running.shutdown().await.log(None);
    ExitCode::SUCCESS
}

async fn wait_for_termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn init_logging(config: Option<&Config>) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `Config` has parsed the filter once already; without a config, `info`. Whatever it says,
    // the AWS SDK, HTTP and TLS crates never log below DEBUG (at TRACE they print the
    // credentials they fetch) and aws-sigv4 not at all: see `config::logging`.
    let user = config
        .and_then(|c| c.log_filter.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let filter = mongo_pool::config::logging::capped(&user);
    let json = config.is_some_and(|c| c.log_format == mongo_pool::config::LogFormat::Json);
    // The filter is the only one: `fmt()`'s builder would add its own INFO ceiling.
    let registry = tracing_subscriber::registry().with(filter);
    // Colours only for a person at a terminal: CloudWatch and files get plain text.
    let ansi = mongo_pool::config::logging::use_ansi(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        config.is_none_or(|c| c.no_color),
    );
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if json {
        registry.with(layer.json()).try_init()
    } else {
        registry.with(layer).try_init()
    };
    // Whoever asks for trace learns why the SDK's own trace lines are missing.
    tracing::trace!(
        capped = ?mongo_pool::config::logging::CAPPED_TARGETS,
        at_most = %mongo_pool::config::logging::THIRD_PARTY_CAP,
        "trace logging is on for mongo-pool; the AWS SDK, HTTP and TLS crates log at debug at \
         most, since at trace they print credentials"
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Health) {
        return health();
    }
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let config = match Config::from_lookup_and_names(env_lookup, names) {
        Ok(config) => config,
        Err(e) => {
            init_logging(None);
            eprintln!("mongo-pool: invalid configuration: {e}");
            report_config_error_to_lambda(&command, &e.to_string());
            return ExitCode::from(2);
        }
    };
    // `check` prints its own report on stdout, causes included; its logs go to stderr only when
    // MONGO_POOL_LOG asks for them.
    if !matches!(command, Command::Check)
        || std::env::var(mongo_pool::config::ENV_LOG).is_ok_and(|v| !v.trim().is_empty())
    {
        init_logging(Some(&config));
    }
    for variable in &config.empty_variables {
        tracing::debug!(
            variable,
            "the variable is empty: treated as unset, the default applies"
        );
    }
    // One thread: a Lambda environment runs one invocation at a time on its share of a vCPU,
    // and a request costs mongo-pool tens of microseconds. A second worker only added a
    // cross-thread wake-up to every request (`make bench`: proxy tax 1.55x -> 1.34x the echo
    // floor, throughput at 8 clients 0.78x -> 0.89x the direct driver).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mongo-pool: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Health => health(),
        Command::Serve => runtime.block_on(serve(config)),
        Command::Check => runtime.block_on(async {
            let connector = match Connector::new(&config, env_lookup, Arc::new(Metrics::default()))
            {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    println!("  config            FAILED  {e}\ncheck failed at step config");
                    return ExitCode::FAILURE;
                }
            };
            let mut stdout = std::io::stdout();
            match mongo_pool::check::run(&config, connector, &mut stdout).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("mongo-pool: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}
