//! Fixture processes for lambda-sim's tests (Python 3 scripts in `tests/fixtures/lambda/`)
//! and what they recorded: each appends JSON lines to `$FIXTURE_OUT/<name>.jsonl`.
#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};

use mongo_pool_testkit::lambda_sim::{self, SimRun};
use serde_json::Value;

/// The path of a fixture script.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lambda")
        .join(name)
        .display()
        .to_string()
}

/// A directory the fixtures record into, given to them as `FIXTURE_OUT`.
pub struct Records {
    dir: tempfile::TempDir,
}

impl Records {
    pub fn new() -> Records {
        Records {
            dir: tempfile::Builder::new()
                .prefix("lambda-sim-test")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// `--env FIXTURE_OUT=<dir>`
    pub fn env_arg(&self) -> String {
        format!("FIXTURE_OUT={}", self.dir.path().display())
    }

    /// Every entry `name` recorded (none if it recorded nothing).
    pub fn entries(&self, name: &str) -> Vec<Value> {
        let path = self.dir.path().join(format!("{name}.jsonl"));
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The entries of `kind` that `name` recorded.
    pub fn of_kind(&self, name: &str, kind: &str) -> Vec<Value> {
        self.entries(name)
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

/// Runs lambda-sim with `args` plus `--env FIXTURE_OUT=...`.
pub async fn sim(records: &Records, args: &[&str]) -> SimRun {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.push("--env".into());
    all.push(records.env_arg());
    lambda_sim::run(all).await.unwrap()
}

/// Every stdout line is a JSON object with a `phase` (the runner already parsed them all).
pub fn assert_only_json_lines(run: &SimRun) {
    assert!(!run.stdout.is_empty(), "no stdout; stderr:\n{}", run.stderr);
    for line in run.stdout.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert!(value["phase"].is_string(), "{line}");
    }
    assert_eq!(run.stdout.lines().count(), run.lines.len());
}
