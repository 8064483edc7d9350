//! mongo-pool-testkit: the local test rig. `atlas-sim` stands in for an Atlas cluster with
//! MONGODB-AWS authentication; `lambda-sim` is a local AWS Lambda; helpers here start real
//! processes for integration tests.
//! Never a dependency of the product.
#![forbid(unsafe_code)]

pub mod atlas;
pub mod aws_auth;
pub mod certs;
pub mod dns;
pub mod lambda_sim;
pub mod moto;
pub mod pool_process;
pub mod process;
pub mod store;
