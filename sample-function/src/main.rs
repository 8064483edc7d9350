//! `bootstrap`: the Lambda entry point of the notes sample. Reads its configuration once,
//! creates one mongo-pool client for the life of the process, and serves events.
#![forbid(unsafe_code)]

use lambda_runtime::{LambdaEvent, service_fn};
use mongo_pool_client::{Client, ClientOptions};
use sample_function::{Config, Notes, handler, init_delay};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Stands for a heavier runtime's start (NOTES_INIT_DELAY_MS; 0 by default).
    tokio::time::sleep(init_delay(|name| std::env::var(name).ok())).await;
    let config = Config::from_lookup(|name| std::env::var(name).ok());
    let client = connect(ClientOptions::from_lookup(|name| std::env::var(name).ok())).await;
    let notes = Notes::new(&client, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let notes = notes.clone();
        async move { handler(&notes, event).await }
    }))
    .await
}

/// Connects during Init (overlapping the extension's own warm-up); when that fails, the
/// reason is logged once and each invocation reports it in its response.
async fn connect(options: ClientOptions) -> Client {
    match Client::connect_with(options.clone()).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error, "mongo-pool is not reachable during init");
            Client::new(options)
        }
    }
}
