//! The goals of issue 9 and their evaluation: each goal is a bound on one value derived from
//! the figures of the same run, and passes or fails.

use serde::Serialize;

/// Which side of the limit passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `value <= limit` passes.
    AtMost,
    /// `value >= limit` passes.
    AtLeast,
}

/// One goal as `report.json` lists it: `{"name", "value", "limit", "pass"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    /// What is compared, with the direction (`<=` / `>=`) in the name.
    pub name: String,
    /// The measured value; `null` in JSON (and a failure) when it could not be measured.
    pub value: Option<f64>,
    /// The limit.
    pub limit: f64,
    /// Whether `value` is on the passing side of `limit`.
    pub pass: bool,
}

impl Goal {
    /// Evaluates `value` against `limit`; a missing or non-finite value fails.
    pub fn evaluate(name: &str, value: Option<f64>, bound: Bound, limit: f64) -> Goal {
        let value = value.filter(|v| v.is_finite());
        let pass = value.is_some_and(|v| match bound {
            Bound::AtMost => v <= limit,
            Bound::AtLeast => v >= limit,
        });
        let sign = match bound {
            Bound::AtMost => "<=",
            Bound::AtLeast => ">=",
        };
        Goal {
            name: format!("{name} {sign} {limit}"),
            value,
            limit,
            pass,
        }
    }
}

/// `numerator / denominator` when both are known and the denominator is positive.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_pass_on_their_side_of_the_limit_inclusive() {
        assert!(Goal::evaluate("tax", Some(1.5), Bound::AtMost, 1.5).pass);
        assert!(!Goal::evaluate("tax", Some(1.51), Bound::AtMost, 1.5).pass);
        assert!(Goal::evaluate("ops", Some(0.8), Bound::AtLeast, 0.8).pass);
        assert!(!Goal::evaluate("ops", Some(0.79), Bound::AtLeast, 0.8).pass);
        let zero = Goal::evaluate("errors", Some(0.0), Bound::AtMost, 0.0);
        assert!(zero.pass);
        assert_eq!(zero.name, "errors <= 0");
    }

    #[test]
    fn unmeasured_or_infinite_values_fail() {
        let missing = Goal::evaluate("rss", None, Bound::AtMost, 12.0);
        assert!(!missing.pass);
        assert_eq!(missing.value, None);
        assert!(!Goal::evaluate("x", Some(f64::NAN), Bound::AtLeast, 0.0).pass);
        assert!(!Goal::evaluate("x", Some(f64::INFINITY), Bound::AtLeast, 0.0).pass);
    }

    #[test]
    fn ratios_need_a_positive_denominator() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
