//! Cursors: many `getMore` batches read to the end, and a cursor dropped early killed on the
//! server (atlas-sim counts the `killCursors` and its open cursors).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod rig;
}

use std::time::Duration;

use bson::{Document, doc};
use futures_util::StreamExt as _;
use mongo_pool_client::{AggregateOptions, FindOptions};
use mongo_pool_testkit::process::wait_for;
use support::rig::{Rig, bounded};

async fn seed(rig: &Rig, n: i32) -> mongo_pool_client::Collection<Document> {
    let docs = rig.client.database("app").collection::<Document>("numbers");
    docs.insert_many((0..n).map(|i| doc! {"_id": i, "n": i}), None)
        .await
        .unwrap();
    docs
}

/// Open cursors over all members.
async fn open_cursors(rig: &Rig) -> u64 {
    let status = rig.status().await;
    status["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["cursors"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_cursor_reads_every_document_over_many_batches() {
    bounded(async {
        let rig = Rig::start().await;
        let docs = seed(&rig, 250).await;
        let get_mores_before = rig.commands("getMore").await;
        let mut cursor = docs
            .find(
                doc! {},
                FindOptions::new().sort(doc! {"_id": 1}).batch_size(10),
            )
            .await
            .unwrap();
        assert_ne!(
            cursor.id(),
            0,
            "250 documents in batches of 10 need a cursor"
        );
        let mut seen = Vec::new();
        while let Some(doc) = cursor.next().await {
            seen.push(doc.unwrap().get_i32("n").unwrap());
        }
        assert_eq!(seen, (0..250).collect::<Vec<_>>());
        assert!(cursor.is_exhausted());
        let get_mores = rig.commands("getMore").await - get_mores_before;
        assert!(
            get_mores >= 24,
            "25 batches of 10 need at least 24 getMores, atlas-sim saw {get_mores}"
        );
        // Exhausted cursors are not killed.
        assert_eq!(rig.commands("killCursors").await, 0);

        // aggregate cursors page too.
        let agg = docs
            .aggregate(
                [
                    doc! {"$match": {"n": {"$gte": 100}}},
                    doc! {"$sort": {"n": 1}},
                ],
                AggregateOptions::new().batch_size(7),
            )
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(agg.len(), 150);
        assert_eq!(agg[0].get_i32("n").unwrap(), 100);
    })
    .await;
}

#[tokio::test]
async fn a_cursor_dropped_early_is_killed_on_the_server() {
    bounded(async {
        let rig = Rig::start().await;
        let docs = seed(&rig, 100).await;
        let mut cursor = docs
            .find(doc! {}, FindOptions::new().batch_size(5))
            .await
            .unwrap();
        let id = cursor.id();
        assert_ne!(id, 0);
        for _ in 0..7 {
            cursor.next().await.unwrap().unwrap();
        }
        assert_eq!(open_cursors(&rig).await, 1);
        assert_eq!(rig.commands("killCursors").await, 0);
        drop(cursor);
        wait_for(
            "atlas-sim to see killCursors",
            Duration::from_secs(10),
            || async { rig.commands("killCursors").await == 1 },
        )
        .await
        .unwrap();
        wait_for("the cursor to be gone", Duration::from_secs(10), || async {
            open_cursors(&rig).await == 0
        })
        .await
        .unwrap();
    })
    .await;
}
