//! `direct-function`: the benchmarks' baseline Lambda function. The notes handler of
//! `sample-function` on the official `mongodb` driver, which authenticates to Atlas itself
//! (MONGODB-AWS). The client is created once in `main`, outside the handler, as MongoDB
//! advises for Lambda.
//!
//! Environment: `NOTES_MONGODB_URI` (the connection string, required), `NOTES_DB`,
//! `NOTES_COLLECTION` and `NOTES_INIT_DELAY_MS` as for `bootstrap`, and the AWS credentials.
#![forbid(unsafe_code)]

use lambda_runtime::{LambdaEvent, service_fn};
use mongo_pool_bench::direct::{DirectNotes, URI_ENV, handler};
use sample_function::{Config, init_delay};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let env = |name: &str| std::env::var(name).ok();
    // Stands for a heavier runtime's start (NOTES_INIT_DELAY_MS; 0 by default).
    tokio::time::sleep(init_delay(env)).await;
    let config = Config::from_lookup(env);
    let uri = env(URI_ENV).ok_or_else(|| format!("{URI_ENV} is not set"))?;
    let client = mongodb::Client::with_uri_str(&uri).await?;
    let notes = DirectNotes::new(&client, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let notes = notes.clone();
        async move { handler(&notes, event).await }
    }))
    .await
}
