//! The processes every scenario stands on: atlas-sim (TLS, MONGODB-AWS verifying a role's
//! temporary credentials), mongo-pool (sidecar mode) in front of it, the binaries lambda-sim
//! runs, and the driver clients the harness itself uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bson::doc;
use mongo_pool_testkit::pool_process::MongoPool;
use mongo_pool_testkit::process::AtlasSim;
use mongodb::options::{AuthMechanism, ClientOptions, Credential};
use serde_json::{Value, json};

/// The execution role's temporary credentials (test values, never real).
pub const KEY_ID: &str = "ASIABENCHKEY00000001";
/// Its secret.
pub const SECRET: &str = "bench-secret-not-real";
/// Its session token.
pub const TOKEN: &str = "bench-session-token-not-real";
/// The caller ARN atlas-sim reports for them.
const CALLER_ARN: &str = "arn:aws:sts::123456789012:assumed-role/notes-role/notes-bench";
/// The database user (the role).
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/notes-role";

/// The database and collection of every scenario.
pub const DB: &str = "bench";
/// The collection.
pub const COLLECTION: &str = "notes";
/// The note every `find` reads.
pub const NOTE_ID: &str = "bench-note-1";

/// The AWS credentials, as environment variables of mongo-pool and the functions.
pub fn aws_env() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        ("AWS_SESSION_TOKEN".into(), TOKEN.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// Starts atlas-sim knowing the role's temporary credentials (principals file in `dir`),
/// plus `args` (`--latency-ms`, ...).
///
/// # Errors
/// When it does not start.
pub async fn atlas(dir: &Path, args: &[String]) -> anyhow::Result<AtlasSim> {
    let principals = dir.join("principals.json");
    let body = json!([{ "key_id": KEY_ID, "secret": SECRET, "session_token": TOKEN,
                        "arn": CALLER_ARN }]);
    std::fs::write(&principals, body.to_string())?;
    let mut all: Vec<String> = vec![
        "--principals-file".into(),
        principals.display().to_string(),
        "--user".into(),
        ROLE_ARN.into(),
    ];
    all.extend_from_slice(args);
    AtlasSim::start(&all).await
}

/// `uri` with `options` (`a=1&b=2`) appended.
pub fn uri_with(uri: &str, options: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{options}")
}

/// mongo-pool (sidecar) in front of `uri`.
///
/// # Errors
/// When it does not come up.
pub async fn mongo_pool(uri: &str) -> anyhow::Result<MongoPool> {
    let env = aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    MongoPool::start(uri, &env).await
}

/// The official driver straight to atlas-sim, with the role's credentials given explicitly.
///
/// # Errors
/// When the URI does not parse.
pub async fn direct_driver(uri: &str) -> anyhow::Result<mongodb::Client> {
    let mut options = ClientOptions::parse(uri).await?;
    let mut credential = Credential::builder()
        .username(KEY_ID.to_owned())
        .password(SECRET.to_owned())
        .mechanism(AuthMechanism::MongoDbAws)
        .source("$external".to_owned())
        .build();
    credential.mechanism_properties = Some(doc! { "AWS_SESSION_TOKEN": TOKEN });
    options.credential = Some(credential);
    options.server_selection_timeout = Some(Duration::from_secs(15));
    Ok(mongodb::Client::with_options(options)?)
}

/// The official driver on mongo-pool's socket, `max_pool` connections at most.
///
/// # Errors
/// When the URI does not parse.
pub async fn driver_via_pool(pool: &MongoPool, max_pool: usize) -> anyhow::Result<mongodb::Client> {
    let uri = format!("{}/?maxPoolSize={max_pool}", pool.socket_uri());
    Ok(mongodb::Client::with_uri_str(&uri).await?)
}

/// mongo-pool-client on mongo-pool's socket, `max_pool` connections at most.
///
/// # Errors
/// When the socket does not accept.
pub async fn pool_client(
    pool: &MongoPool,
    max_pool: usize,
) -> anyhow::Result<mongo_pool_client::Client> {
    let options =
        mongo_pool_client::ClientOptions::new(pool.socket_path()).max_connections(max_pool);
    Ok(mongo_pool_client::Client::connect_with(options).await?)
}

/// Writes the note every `find` reads.
///
/// # Errors
/// When the write fails.
pub async fn seed(client: &mongodb::Client) -> anyhow::Result<()> {
    let notes = client.database(DB).collection::<bson::Document>(COLLECTION);
    notes
        .replace_one(
            doc! {"_id": NOTE_ID},
            doc! {"_id": NOTE_ID, "body": {"text": "a small note"}, "updated_at": bson::DateTime::now()},
        )
        .upsert(true)
        .await
        .context("seeding the note")?;
    Ok(())
}

/// Sum of `members.*.connections.current` in atlas-sim's `/status`.
pub fn open_connections(status: &Value) -> u64 {
    status["members"]
        .as_object()
        .map(|members| {
            members
                .values()
                .map(|m| m["connections"]["current"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// `auth.successful` in atlas-sim's `/status`.
pub fn authentications(status: &Value) -> u64 {
    status["auth"]["successful"].as_u64().unwrap_or(0)
}

/// A workspace binary (see `mongo_pool_testkit::process::binary`: `MONGO_POOL_BIN_DIR`, else
/// the harness's own target directory).
///
/// # Errors
/// When it is missing and cannot be built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    mongo_pool_testkit::process::binary(name)
}
