//! The scenarios of issue 9, one module each; each records its figures (and per-repetition
//! ratios) into the [`crate::report::Report`].

pub mod lambda;
pub mod resources;
pub mod roundtrip;
pub mod throughput;

/// The three ways to reach the data, as figure names use them.
pub const VARIANTS: [&str; 3] = ["direct", "driver_via_pool", "pool_client"];

/// `values[i] / base[i]` for every repetition where both exist and `base` is positive.
pub fn paired_ratios(values: &[f64], base: &[f64]) -> Vec<f64> {
    values
        .iter()
        .zip(base)
        .filter(|(_, b)| **b > 0.0)
        .map(|(v, b)| v / b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_repetitions_of_the_same_run() {
        assert_eq!(
            paired_ratios(&[2.0, 9.0, 4.0], &[1.0, 3.0, 0.0]),
            vec![2.0, 3.0]
        );
    }
}
