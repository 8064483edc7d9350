//! The downstream handshake and the commands mongo-pool answers itself, over a raw socket:
//! `isMaster`/`ismaster` over OP_QUERY (OP_REPLY back) and `hello` over OP_MSG, posing as a
//! mongos with the upstream's own limits and wire versions; the load-balanced shape only when
//! asked for; authentication commands refused locally with an actionable message (also as a
//! driver with credentials in its URI sees it); `mongoPoolStats` on any database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::time::Duration;

use bson::{Bson, Document, doc};
use downstream_support::rig::{Raw, auth_successful, pool, sim, total_created, uri_with};
use mongo_pool::handshake::AUTH_REJECTION;
use mongo_pool_testkit::process::AtlasSim;

const LIMIT: Duration = Duration::from_secs(120);
/// Not atlas-sim's default (25), so a copied value can be told from an invented one.
const UPSTREAM_MAX_WIRE_VERSION: i32 = 21;
/// Fields copied from the upstream's hello.
const COPIED: [&str; 6] = [
    "maxBsonObjectSize",
    "maxMessageSizeBytes",
    "maxWriteBatchSize",
    "logicalSessionTimeoutMinutes",
    "minWireVersion",
    "maxWireVersion",
];
/// Fields a mongos-posing reply never has.
const NEVER: [&str; 7] = [
    "setName",
    "hosts",
    "compression",
    "topologyVersion",
    "$clusterTime",
    "saslSupportedMechs",
    "speculativeAuthenticate",
];

/// atlas-sim's own hello, straight from a member (no credentials: hello needs none).
async fn upstream_hello(sim: &AtlasSim) -> Document {
    let uri = sim
        .start
        .uri
        .replace("&authMechanism=MONGODB-AWS", "")
        .replace("&authSource=%24external", "");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .expect("atlas-sim answers hello");
    client.shutdown().await;
    hello
}

fn as_i64(doc: &Document, key: &str) -> i64 {
    match doc.get(key) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Double(v)) => *v as i64,
        other => panic!("{key} is {other:?} in {doc}"),
    }
}

fn ok(doc: &Document) -> f64 {
    match doc.get("ok") {
        Some(Bson::Double(v)) => *v,
        Some(Bson::Int32(v)) => f64::from(*v),
        other => panic!("ok is {other:?} in {doc}"),
    }
}

/// The checks every local handshake reply passes.
fn assert_mongos_reply(form: &str, reply: &Document, upstream: &Document, writable_key: &str) {
    assert_eq!(ok(reply), 1.0, "{form}: {reply}");
    assert_eq!(
        reply.get_bool(writable_key).ok(),
        Some(true),
        "{form}: {writable_key}: true in {reply}"
    );
    assert_eq!(
        reply.get_str("msg").ok(),
        Some("isdbgrid"),
        "{form}: {reply}"
    );
    for key in COPIED {
        assert_eq!(
            as_i64(reply, key),
            as_i64(upstream, key),
            "{form}: {key} is the upstream's; reply {reply}, upstream {upstream}"
        );
    }
    assert_eq!(
        as_i64(reply, "maxWireVersion"),
        i64::from(UPSTREAM_MAX_WIRE_VERSION)
    );
    assert!(reply.get_datetime("localTime").is_ok(), "{form}: {reply}");
    assert!(as_i64(reply, "connectionId") > 0, "{form}: {reply}");
    for key in NEVER {
        assert!(!reply.contains_key(key), "{form}: no {key} in {reply}");
    }
    assert!(
        !reply.contains_key("serviceId"),
        "{form}: no serviceId without loadBalanced: {reply}"
    );
}

async fn handshakes() {
    let max_wire = UPSTREAM_MAX_WIRE_VERSION.to_string();
    let sim = sim(&["--max-wire-version", &max_wire]).await;
    // Asked before mongo-pool starts, so the connections this opens can be told apart.
    let upstream = upstream_hello(&sim).await;
    let direct_connections = total_created(&sim.status().await.unwrap());
    let direct_auths = sim.status().await.unwrap()["auth"]["received"]
        .as_u64()
        .unwrap();
    assert_eq!(direct_auths, 0, "hello needs no authentication");
    let pool = pool(&sim, "", &[]).await;
    assert_eq!(
        as_i64(&upstream, "maxWireVersion"),
        i64::from(UPSTREAM_MAX_WIRE_VERSION)
    );
    assert_eq!(as_i64(&upstream, "maxBsonObjectSize"), 16_777_216);

    // OP_QUERY on admin.$cmd, every spelling drivers use, answered with an OP_REPLY.
    let client_metadata = doc! {
        "driver": { "name": "nodejs", "version": "6.0.0" },
        "os": { "type": "Linux" },
        "platform": "Node.js v22",
    };
    let legacy_forms = [
        ("isMaster: 1", doc! { "isMaster": 1 }, false),
        (
            "ismaster: true + helloOk + client",
            doc! { "ismaster": true, "helloOk": true, "client": client_metadata.clone(), "compression": ["zlib"] },
            true,
        ),
        ("ismaster: 1.0", doc! { "ismaster": 1.0 }, false),
    ];
    for (form, query, hello_ok) in legacy_forms {
        let mut raw = Raw::connect(&pool).await;
        let reply = raw.legacy_command(&query).await.unwrap();
        assert_mongos_reply(form, &reply, &upstream, "ismaster");
        assert_eq!(
            reply.get_bool("helloOk").ok(),
            hello_ok.then_some(true),
            "{form}: helloOk only when asked for: {reply}"
        );
        // The same connection then speaks OP_MSG.
        let ping = raw
            .command(&doc! { "ping": 1, "$db": "admin" })
            .await
            .unwrap();
        assert_eq!(ok(&ping), 1.0, "{form}: ping after the handshake: {ping}");
    }

    // OP_QUERY that is not a handshake is refused the way servers refuse it.
    let mut raw = Raw::connect(&pool).await;
    let reply = raw.legacy_command(&doc! { "find": "c" }).await.unwrap();
    assert_eq!(ok(&reply), 0.0, "{reply}");
    assert_eq!(as_i64(&reply, "code"), 352, "{reply}");

    // OP_MSG hello.
    let mut raw = Raw::connect(&pool).await;
    let reply = raw
        .command(&doc! { "hello": 1, "helloOk": true, "client": client_metadata, "$db": "admin" })
        .await
        .unwrap();
    assert_mongos_reply("OP_MSG hello", &reply, &upstream, "isWritablePrimary");
    assert_eq!(reply.get_bool("helloOk").ok(), Some(true));
    assert!(!reply.contains_key("ismaster"), "{reply}");

    // loadBalanced: true gets the load-balanced shape, one serviceId per process.
    let mut service_ids = Vec::new();
    for _ in 0..2 {
        let mut raw = Raw::connect(&pool).await;
        let reply = raw
            .command(&doc! { "hello": 1, "loadBalanced": true, "$db": "admin" })
            .await
            .unwrap();
        assert_eq!(ok(&reply), 1.0, "{reply}");
        let id = reply
            .get_object_id("serviceId")
            .unwrap_or_else(|_| panic!("an ObjectId serviceId in {reply}"));
        service_ids.push(id);
        for key in COPIED {
            assert_eq!(as_i64(&reply, key), as_i64(&upstream, key), "{key}");
        }
    }
    assert_eq!(service_ids[0], service_ids[1], "one serviceId per process");

    // Authentication commands are answered locally and never reach Atlas.
    let mut raw = Raw::connect(&pool).await;
    for command in [
        doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: b"n,,n=user,r=abc".to_vec() }, "$db": "admin" },
        doc! { "saslContinue": 1, "conversationId": 1, "payload": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![] }, "$db": "admin" },
        doc! { "authenticate": 1, "mechanism": "MONGODB-X509", "$db": "$external" },
    ] {
        let reply = raw.command(&command).await.unwrap();
        assert_eq!(ok(&reply), 0.0, "{command}: {reply}");
        assert_eq!(as_i64(&reply, "code"), 18, "{reply}");
        assert_eq!(reply.get_str("errmsg").unwrap(), AUTH_REJECTION);
        assert!(AUTH_REJECTION.contains("remove credentials"));
    }
    // `logout` is answered locally: the downstream connection has no user to log out, and a
    // forwarded logout would log a pooled connection out for every client.
    for _ in 0..3 {
        let reply = raw
            .command(&doc! { "logout": 1, "$db": "admin" })
            .await
            .unwrap();
        assert_eq!(ok(&reply), 1.0, "{reply}");
        let reply = raw
            .command(&doc! { "find": "after_logout", "$db": "app" })
            .await
            .unwrap();
        assert_eq!(
            ok(&reply),
            1.0,
            "the pooled connection is still authenticated: {reply}"
        );
    }
    let reply = raw
        .command(&doc! { "ping": 1, "$db": "admin" })
        .await
        .unwrap();
    assert_eq!(ok(&reply), 1.0, "the connection stays usable: {reply}");
    let status = sim.status().await.unwrap();
    let logouts: u64 = status["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["commands"]["logout"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(logouts, 0, "a logout reached Atlas: {status}");
    assert_eq!(
        status["auth"]["received"].as_u64().unwrap(),
        total_created(&status) - direct_connections,
        "atlas-sim saw only mongo-pool's own authentications, one per connection: {status}"
    );

    // A driver with credentials in its URI is told what to do.
    let uri = pool
        .socket_uri()
        .replace("mongodb://", "mongodb://user:pass@");
    let with_credentials = mongodb::Client::with_uri_str(uri_with(
        &format!("{uri}/"),
        "serverSelectionTimeoutMS=20000",
    ))
    .await
    .unwrap();
    let err = with_credentials
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("a driver with credentials fails to authenticate");
    assert!(
        format!("{err:?}").contains("remove credentials"),
        "the driver's error carries mongo-pool's advice: {err:?}"
    );
    with_credentials.shutdown().await;

    // mongoPoolStats, on any database.
    let mut raw = Raw::connect(&pool).await;
    let stats = raw
        .command(&doc! { "mongoPoolStats": 1, "$db": "anything" })
        .await
        .unwrap();
    assert_eq!(ok(&stats), 1.0, "{stats}");
    let pools = stats.get_array("pools").unwrap();
    assert_eq!(pools.len(), 3, "one pool per member: {stats}");
    for member in pools {
        let member = member.as_document().unwrap();
        for key in ["address", "state"] {
            assert!(member.get_str(key).is_ok(), "{key} in {member}");
        }
        for key in ["total", "idle", "inUse", "generation"] {
            assert!(member.get_i64(key).is_ok(), "{key} in {member}");
        }
    }
    for key in [
        "checkouts",
        "checkoutWaits",
        "requests",
        "forwarded",
        "uptimeMillis",
    ] {
        assert!(stats.get_i64(key).is_ok(), "{key} in {stats}");
    }
    assert!(stats.get_f64("checkoutWaitMillis").is_ok(), "{stats}");
    assert!(stats.get_i64("uptimeMillis").unwrap() > 0);
    let status = sim.status().await.unwrap();
    let auth = stats.get_document("authentications").unwrap();
    assert_eq!(
        u64::try_from(auth.get_i64("ok").unwrap()).unwrap(),
        auth_successful(&status),
        "{stats} vs {status}"
    );
    assert_eq!(auth.get_i64("failed").unwrap(), 0);
    let upstream_connections = stats.get_document("upstreamConnections").unwrap();
    assert_eq!(
        u64::try_from(upstream_connections.get_i64("created").unwrap()).unwrap(),
        total_created(&status) - direct_connections,
        "{stats} vs {status}"
    );
    let downstream = stats.get_document("downstreamConnections").unwrap();
    assert!(downstream.get_i64("current").unwrap() >= 1, "{stats}");
    assert!(downstream.get_i64("total").unwrap() >= 8, "{stats}");
    assert_eq!(downstream.get_i64("malformed").unwrap(), 0, "{stats}");
    assert!(pool.stop().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_answered_locally_as_a_mongos_with_the_upstream_limits_and_auth_is_refused()
{
    tokio::time::timeout(LIMIT, handshakes())
        .await
        .expect("the scenario finishes in time");
}
