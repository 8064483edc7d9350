//! The core of what a function does, through mongo-pool's socket with the official Rust
//! `mongodb` driver (no credentials in its URI): inserts, queries with filter/sort/limit, a
//! cursor over several batches, updates, deletes, counts, an aggregate, and one transaction
//! committed and one aborted. Against atlas-sim as a replica set and as a sharded cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod downstream_support {
    pub mod rig;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bson::{Bson, Document, doc};
use downstream_support::rig::{client, pool, sim};
use mongodb::{Collection, Cursor};

/// The whole scenario must finish within this.
const LIMIT: Duration = Duration::from_secs(120);

async fn collect(mut cursor: Cursor<Document>) -> Vec<Document> {
    let mut out = Vec::new();
    while cursor.advance().await.expect("the cursor advances") {
        out.push(cursor.deserialize_current().expect("a document"));
    }
    out
}

fn ids(docs: &[Document]) -> Vec<Bson> {
    docs.iter().map(|d| d.get("_id").unwrap().clone()).collect()
}

/// Σ over members of `/status` members.*.commands.<name>.
fn command_count(status: &serde_json::Value, name: &str) -> u64 {
    status["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["commands"][name].as_u64().unwrap_or(0))
        .sum()
}

/// Members of `/status` that ran `name` at least once.
fn members_that_ran(status: &serde_json::Value, name: &str) -> usize {
    status["members"]
        .as_object()
        .unwrap()
        .values()
        .filter(|m| m["commands"][name].as_u64().unwrap_or(0) > 0)
        .count()
}

/// Background traffic from other driver connections, so mongo-pool spreads requests over
/// the mongos routers (it picks the least busy) and a cursor's `getMore` or a transaction's
/// next command would land elsewhere unless pinned.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
    client: mongodb::Client,
}

impl Load {
    fn start(client: mongodb::Client) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..8)
            .map(|t| {
                let (stop, coll) = (
                    Arc::clone(&stop),
                    client.database("shop").collection::<Document>("load"),
                );
                tokio::spawn(async move {
                    let mut ops = 0;
                    while !stop.load(Ordering::Acquire) {
                        coll.insert_one(doc! { "t": t }).await.expect("load insert");
                        coll.find_one(doc! { "t": t }).await.expect("load find");
                        ops += 2;
                    }
                    ops
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            client,
        }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        let mut ops = 0;
        for task in self.tasks {
            ops += task.await.expect("a load task");
        }
        self.client.shutdown().await;
        ops
    }
}

async fn core_crud_round_trips(topology: &str) {
    let sim = sim(&["--topology", topology]).await;
    let pool = pool(&sim, "", &[]).await;
    let client = client(&pool, "appName=downstream-crud").await;
    let coll: Collection<Document> = client.database("shop").collection("items");

    // Inserts.
    coll.insert_one(doc! { "_id": "first", "qty": 100 })
        .await
        .expect("insert_one");
    let docs: Vec<Document> = (0..50)
        .map(|i| doc! { "_id": i, "qty": i % 5, "sku": format!("s{i:02}") })
        .collect();
    let inserted = coll.insert_many(docs).await.expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 50);

    // Find with filter, sort and limit.
    let found = collect(
        coll.find(doc! { "qty": { "$gte": 3 } })
            .sort(doc! { "_id": -1 })
            .limit(4)
            .await
            .expect("find"),
    )
    .await;
    assert_eq!(
        ids(&found),
        vec![
            Bson::String("first".into()),
            Bson::Int32(49),
            Bson::Int32(48),
            Bson::Int32(44)
        ],
        "qty >= 3, _id descending (strings sort after numbers), first 4"
    );

    // A cursor over several batches while other connections keep mongo-pool busy: its
    // getMores reach the member that opened it (atlas-sim answers CursorNotFound elsewhere).
    let load = Load::start(downstream_support::rig::client(&pool, "maxPoolSize=8").await);
    let get_mores_before = command_count(&sim.status().await.unwrap(), "getMore");
    let all = collect(
        coll.find(doc! { "_id": { "$type": "number" } })
            .sort(doc! { "_id": 1 })
            .batch_size(7)
            .await
            .expect("find with batchSize 7"),
    )
    .await;
    assert_eq!(
        ids(&all),
        (0..50).map(Bson::Int32).collect::<Vec<_>>(),
        "every document, in order, across batches"
    );
    let get_mores = command_count(&sim.status().await.unwrap(), "getMore") - get_mores_before;
    assert!(
        get_mores >= 7,
        "50 documents in batches of 7 take at least 7 getMores, atlas-sim saw {get_mores}"
    );

    // Updates.
    let one = coll
        .update_one(doc! { "_id": "first" }, doc! { "$set": { "qty": 101 } })
        .await
        .expect("update_one");
    assert_eq!((one.matched_count, one.modified_count), (1, 1));
    let many = coll
        .update_many(doc! { "qty": 0 }, doc! { "$set": { "zero": true } })
        .await
        .expect("update_many");
    assert_eq!(many.modified_count, 10);
    let first = coll
        .find_one(doc! { "_id": "first" })
        .await
        .expect("find_one")
        .expect("the document exists");
    assert_eq!(first.get_i32("qty").unwrap(), 101);

    // Counts and deletes.
    assert_eq!(
        coll.count_documents(doc! { "zero": true }).await.unwrap(),
        10
    );
    let deleted = coll
        .delete_one(doc! { "_id": "first" })
        .await
        .expect("delete_one");
    assert_eq!(deleted.deleted_count, 1);
    let deleted = coll
        .delete_many(doc! { "qty": 4 })
        .await
        .expect("delete_many");
    assert_eq!(deleted.deleted_count, 10);
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 40);
    assert_eq!(coll.estimated_document_count().await.unwrap(), 40);

    // Aggregate.
    let groups = collect(
        coll.aggregate(vec![
            doc! { "$match": { "qty": { "$lt": 4 } } },
            doc! { "$group": { "_id": "$qty", "n": { "$sum": 1 } } },
            doc! { "$sort": { "_id": 1 } },
        ])
        .await
        .expect("aggregate"),
    )
    .await;
    let pairs: Vec<(i32, i32)> = groups
        .iter()
        .map(|g| (g.get_i32("_id").unwrap(), g.get_i32("n").unwrap()))
        .collect();
    assert_eq!(pairs, vec![(0, 10), (1, 10), (2, 10), (3, 10)]);

    // A transaction committed: its writes are invisible outside until commit, then visible.
    let tx: Collection<Document> = client.database("shop").collection("tx");
    tx.insert_one(doc! { "_id": "seed", "n": 0 }).await.unwrap();
    let mut session = client.start_session().await.expect("a session");
    session
        .start_transaction()
        .await
        .expect("start_transaction");
    tx.insert_one(doc! { "_id": "committed" })
        .session(&mut session)
        .await
        .expect("insert in the transaction");
    tx.update_one(doc! { "_id": "seed" }, doc! { "$inc": { "n": 1 } })
        .session(&mut session)
        .await
        .expect("update in the transaction");
    assert_eq!(
        tx.count_documents(doc! {})
            .session(&mut session)
            .await
            .unwrap(),
        2,
        "the transaction sees its own insert"
    );
    assert!(
        tx.find_one(doc! { "_id": "committed" })
            .await
            .unwrap()
            .is_none(),
        "not visible outside the transaction before commit"
    );
    session
        .commit_transaction()
        .await
        .expect("commit_transaction");
    assert!(
        tx.find_one(doc! { "_id": "committed" })
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        tx.find_one(doc! { "_id": "seed" })
            .await
            .unwrap()
            .unwrap()
            .get_i32("n")
            .unwrap(),
        1
    );

    // A transaction aborted: nothing of it remains.
    session
        .start_transaction()
        .await
        .expect("start_transaction");
    tx.insert_one(doc! { "_id": "aborted" })
        .session(&mut session)
        .await
        .expect("insert in the transaction");
    tx.update_one(doc! { "_id": "seed" }, doc! { "$inc": { "n": 10 } })
        .session(&mut session)
        .await
        .expect("update in the transaction");
    session
        .abort_transaction()
        .await
        .expect("abort_transaction");
    assert!(
        tx.find_one(doc! { "_id": "aborted" })
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        tx.find_one(doc! { "_id": "seed" })
            .await
            .unwrap()
            .unwrap()
            .get_i32("n")
            .unwrap(),
        1
    );
    assert_eq!(tx.count_documents(doc! {}).await.unwrap(), 2);

    let load_ops = load.stop().await;
    let status = sim.status().await.unwrap();
    assert!(load_ops > 0, "the background load ran");
    if topology == "sharded" {
        assert!(
            members_that_ran(&status, "find") >= 2,
            "the load spread over the mongos routers, so pinning mattered: {}",
            status["members"]
        );
    }
    assert_eq!(command_count(&status, "commitTransaction"), 1);
    assert_eq!(command_count(&status, "abortTransaction"), 1);
    drop(session);
    client.shutdown().await;
    let exit = pool.stop().await.unwrap();
    assert!(exit.success(), "mongo-pool exits 0 on SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_crud_cursor_and_transactions_work_through_the_socket_against_a_replica_set() {
    tokio::time::timeout(LIMIT, core_crud_round_trips("replset"))
        .await
        .expect("the scenario finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_crud_cursor_and_transactions_work_through_the_socket_against_a_sharded_cluster() {
    tokio::time::timeout(LIMIT, core_crud_round_trips("sharded"))
        .await
        .expect("the scenario finishes in time");
}
