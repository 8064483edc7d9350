//! mongo-pool: an AWS Lambda extension that keeps a warm, pre-authenticated MONGODB-AWS
//! connection pool to Atlas and serves it to the function over a Unix socket.
//!
//! Modules, in the order data meets them: [`config`] (the connection string and the
//! `MONGO_POOL_*` variables), [`listener`] (the Unix socket), [`session`] (one downstream
//! connection), [`route`] (where a request goes), [`handshake`] (the local `hello`), [`pool`]
//! (per-member connection pools), [`upstream`] (connecting, TLS, `hello`, MONGODB-AWS, AWS
//! credentials, STS diagnosis), [`topology`] (members, primary, `mongodb+srv`), [`lambda`] (the
//! Extensions API lifecycle), [`serve`] (start and shutdown), [`metrics`] and [`stats`].
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod freeze;
pub mod handshake;
pub mod health;
pub mod lambda;
pub mod listener;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod route;
pub mod serve;
pub mod session;
pub mod stats;
pub mod topology;
pub mod upstream;

#[cfg(test)]
mod test_support;
