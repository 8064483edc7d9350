//! `mongo-pool-bench`: runs every benchmark scenario (see the crate docs), writes
//! `report.json` and `report.md` (default `target/bench/`) and prints the table.
//!
//! Usage: `mongo-pool-bench [--out DIR] [--quick]`. Exit status: 0 when every scenario ran,
//! whether or not the goals pass (each goal says PASS or FAIL); 1 when the harness itself
//! failed. `mongo-pool-bench echo-server PATH` is the echo floor's server process, which the
//! harness starts by itself.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use mongo_pool_bench::echo;
use mongo_pool_bench::run::{Options, run};

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mongo-pool-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main_inner() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("echo-server") {
        let Some(path) = args.get(1) else {
            bail!("usage: mongo-pool-bench echo-server PATH");
        };
        echo::serve(path.as_ref()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = parse(&args)?;
    let (report, ok) = run(&options).await?;
    println!("{}", report.to_markdown());
    println!(
        "report: {}/report.json, {}/report.md",
        options.out.display(),
        options.out.display()
    );
    if !ok {
        eprintln!("mongo-pool-bench: some scenarios failed (see `errors` in the settings)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench")),
        quick: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => match args.next() {
                Some(dir) => options.out = PathBuf::from(dir),
                None => bail!("--out needs a directory"),
            },
            other => {
                bail!("unknown argument {other:?}; usage: mongo-pool-bench [--out DIR] [--quick]")
            }
        }
    }
    Ok(options)
}
