//! mongo-pool-bench: `make bench`. mongo-pool measured against what users do today (the
//! official `mongodb` driver inside the function, authenticating with MONGODB-AWS itself) and
//! against the physical floor (a Unix-socket echo between two processes), in one run, as
//! ratios. See the README's "Benchmarks" section.
//!
//! Data flow: [`run`] starts atlas-sim and mongo-pool ([`rig`]), runs each [`scenario`] (the
//! requests of [`load`], the [`echo`] floor, lambda-sim for cold starts and thaws), summarises
//! repetitions ([`stats`]), evaluates the [`goals`] and writes the [`report`]. [`direct`] is
//! the baseline function's handler (binary `direct-function`).
#![forbid(unsafe_code)]

pub mod direct;
pub mod echo;
pub mod goals;
pub mod load;
pub mod report;
pub mod rig;
pub mod run;
pub mod scenario;
pub mod stats;
