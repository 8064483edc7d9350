//! The report: every figure (median, min, max over repetitions), the settings of the run and
//! the goals, written as `report.json` and `report.md`; the Markdown table is also what the
//! harness prints at the end.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::goals::Goal;
use crate::stats::Summary;

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Dotted name, e.g. `roundtrip.p50_us.direct`.
    pub name: String,
    /// Unit (`us`, `ms`, `ops/s`, `MiB`, `s`, `count`, `ratio`).
    pub unit: String,
    /// Median, min, max and repetitions.
    #[serde(flatten)]
    pub summary: Summary,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The settings of the run (latencies, repetitions, pool sizes, binaries, ...).
    pub settings: Map<String, Value>,
    /// Every figure, in the order measured.
    pub figures: Vec<Figure>,
    /// The goals, one entry each.
    pub goals: Vec<Goal>,
}

impl Report {
    /// Records a setting.
    pub fn setting(&mut self, key: &str, value: impl Into<Value>) {
        self.settings.insert(key.to_owned(), value.into());
    }

    /// Records a figure from its repetitions (nothing when there are none).
    pub fn figure(&mut self, name: &str, unit: &str, values: &[f64]) {
        if let Some(summary) = Summary::of(values) {
            self.figures.push(Figure {
                name: name.to_owned(),
                unit: unit.to_owned(),
                summary,
            });
        }
    }

    /// The median of figure `name`, if measured.
    pub fn median(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.summary.median)
    }

    /// The JSON document of `report.json`.
    ///
    /// # Errors
    /// Never in practice (every field serialises).
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The Markdown of `report.md`: goals first (PASS/FAIL), then every figure, then settings.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# mongo-pool benchmarks\n\n## Goals\n\n");
        out.push_str("| goal | value | limit | result |\n| --- | ---: | ---: | --- |\n");
        for goal in &self.goals {
            let value = goal.value.map_or_else(|| "n/a".to_owned(), number);
            let verdict = if goal.pass { "PASS" } else { "FAIL" };
            let _ = writeln!(
                out,
                "| {} | {value} | {} | {verdict} |",
                goal.name,
                number(goal.limit)
            );
        }
        out.push_str("\n## Figures (median of repetitions, with min and max)\n\n");
        out.push_str(
            "| figure | unit | median | min | max | reps |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
        );
        for f in &self.figures {
            let s = f.summary;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                f.name,
                f.unit,
                number(s.median),
                number(s.min),
                number(s.max),
                s.reps
            );
        }
        out.push_str("\n## Settings\n\n| setting | value |\n| --- | --- |\n");
        for (key, value) in &self.settings {
            let _ = writeln!(out, "| {key} | {} |", value.to_string().replace('|', "\\|"));
        }
        out
    }

    /// Writes `report.json` and `report.md` into `dir` (created when missing).
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), self.to_json()?)
            .with_context(|| format!("writing {}/report.json", dir.display()))?;
        std::fs::write(dir.join("report.md"), self.to_markdown())
            .with_context(|| format!("writing {}/report.md", dir.display()))?;
        Ok(())
    }
}

/// A number as the table shows it: three significant decimals at most.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::goals::{Bound, Goal};

    fn sample() -> Report {
        let mut report = Report::default();
        report.setting("latency_ms", 0);
        report.figure("roundtrip.p50_us.direct", "us", &[110.0, 100.0, 130.0]);
        report.figure("never.measured", "us", &[]);
        report.goals.push(Goal::evaluate(
            "proxy tax p50 / echo floor p50",
            Some(1.2),
            Bound::AtMost,
            1.5,
        ));
        report
            .goals
            .push(Goal::evaluate("rss idle MiB", None, Bound::AtMost, 12.0));
        report
    }

    #[test]
    fn json_holds_figures_settings_and_goals_in_the_documented_shape() {
        let json: Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        assert_eq!(json["settings"]["latency_ms"], 0);
        let figures = json["figures"].as_array().unwrap();
        assert_eq!(figures.len(), 1, "a figure without repetitions is left out");
        let f = &figures[0];
        assert_eq!(f["name"], "roundtrip.p50_us.direct");
        assert_eq!(
            (f["median"].as_f64(), f["min"].as_f64(), f["max"].as_f64()),
            (Some(110.0), Some(100.0), Some(130.0))
        );
        let goals = json["goals"].as_array().unwrap();
        assert_eq!(goals.len(), 2);
        let mut keys: Vec<&String> = goals[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["limit", "name", "pass", "value"]);
        assert_eq!(goals[0]["pass"], true);
        assert_eq!(goals[1]["value"], Value::Null);
        assert_eq!(goals[1]["pass"], false);
    }

    #[test]
    fn markdown_prints_pass_or_fail_beside_each_goal() {
        let md = sample().to_markdown();
        assert!(
            md.contains("| proxy tax p50 / echo floor p50 <= 1.5 | 1.200 | 1.500 | PASS |"),
            "{md}"
        );
        assert!(
            md.contains("| rss idle MiB <= 12 | n/a | 12 | FAIL |"),
            "{md}"
        );
        assert!(
            md.contains("| roundtrip.p50_us.direct | us | 110 | 100 | 130 | 3 |"),
            "{md}"
        );
    }

    #[test]
    fn median_reads_back_a_figure() {
        let report = sample();
        assert_eq!(report.median("roundtrip.p50_us.direct"), Some(110.0));
        assert_eq!(report.median("never.measured"), None);
    }
}
