//! Every collection operation against mongo-pool (sidecar) + atlas-sim, checked through the
//! client's own results and, where it matters, through what atlas-sim stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod rig;
}

use bson::{Bson, Document, doc};
use mongo_pool_client::{
    CountOptions, Error, FindOneAndUpdateOptions, FindOptions, IndexModel, InsertManyOptions,
    ReturnDocument, UpdateOptions,
};
use serde::{Deserialize, Serialize};
use support::rig::{Rig, bounded};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    _id: i32,
    kind: String,
    qty: i32,
}

fn item(id: i32, kind: &str, qty: i32) -> Item {
    Item {
        _id: id,
        kind: kind.into(),
        qty,
    }
}

#[tokio::test]
async fn inserts_finds_and_counts_typed_documents() {
    bounded(async {
        let rig = Rig::start().await;
        let items = rig.client.database("shop").collection::<Item>("items");
        let one = items.insert_one(&item(1, "apple", 5)).await.unwrap();
        assert_eq!(one.inserted_id, Bson::Int32(1));
        let many = items
            .insert_many(
                [item(2, "pear", 3), item(3, "apple", 7), item(4, "fig", 1)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(many.inserted_ids.len(), 3);

        let found = items.find_one(doc! {"_id": 3}, None).await.unwrap();
        assert_eq!(found, Some(item(3, "apple", 7)));
        assert_eq!(items.find_one(doc! {"_id": 99}, None).await.unwrap(), None);

        let apples = items
            .find(
                doc! {"kind": "apple"},
                FindOptions::new().sort(doc! {"qty": -1}),
            )
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(apples, vec![item(3, "apple", 7), item(1, "apple", 5)]);

        let page = items
            .find(
                doc! {},
                FindOptions::new().sort(doc! {"_id": 1}).skip(1).limit(2),
            )
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(page.iter().map(|i| i._id).collect::<Vec<_>>(), vec![2, 3]);

        let projected = items
            .clone_with_type::<Document>()
            .find_one(
                doc! {"_id": 2},
                FindOptions::new().projection(doc! {"qty": 1}),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(projected, doc! {"_id": 2, "qty": 3});

        assert_eq!(items.count_documents(doc! {}, None).await.unwrap(), 4);
        assert_eq!(
            items
                .count_documents(doc! {"kind": "apple"}, None)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            items
                .count_documents(doc! {}, CountOptions::new().skip(1).limit(2))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            items
                .count_documents(doc! {"kind": "kiwi"}, None)
                .await
                .unwrap(),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn updates_replaces_and_deletes_report_what_they_did() {
    bounded(async {
        let rig = Rig::start().await;
        let items = rig.client.database("shop").collection::<Item>("items");
        items
            .insert_many(
                [item(1, "apple", 5), item(2, "apple", 3), item(3, "pear", 1)],
                None,
            )
            .await
            .unwrap();

        let one = items
            .update_one(doc! {"kind": "apple"}, doc! {"$inc": {"qty": 10}}, None)
            .await
            .unwrap();
        assert_eq!((one.matched_count, one.modified_count), (1, 1));
        assert_eq!(one.upserted_id, None);

        let many = items
            .update_many(doc! {"kind": "apple"}, doc! {"$set": {"kind": "red"}}, None)
            .await
            .unwrap();
        assert_eq!((many.matched_count, many.modified_count), (2, 2));

        let upsert = items
            .update_one(
                doc! {"_id": 9},
                doc! {"$set": {"kind": "plum", "qty": 2}},
                UpdateOptions::new().upsert(true),
            )
            .await
            .unwrap();
        assert_eq!(upsert.upserted_id, Some(Bson::Int32(9)));
        assert_eq!(upsert.matched_count, 0);

        let replaced = items
            .replace_one(doc! {"_id": 3}, &item(3, "quince", 8), None)
            .await
            .unwrap();
        assert_eq!(replaced.matched_count, 1);
        assert_eq!(
            items.find_one(doc! {"_id": 3}, None).await.unwrap(),
            Some(item(3, "quince", 8))
        );
        let replace_upsert = items
            .replace_one(
                doc! {"_id": 4},
                &item(4, "lime", 1),
                UpdateOptions::new().upsert(true),
            )
            .await
            .unwrap();
        assert_eq!(replace_upsert.upserted_id, Some(Bson::Int32(4)));

        let err = items
            .update_one(doc! {"_id": 1}, doc! {"qty": 1}, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

        assert_eq!(
            items
                .delete_one(doc! {"kind": "red"})
                .await
                .unwrap()
                .deleted_count,
            1
        );
        assert_eq!(items.delete_many(doc! {}).await.unwrap().deleted_count, 4);
        assert_eq!(items.count_documents(doc! {}, None).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn find_one_and_update_returns_before_or_after() {
    bounded(async {
        let rig = Rig::start().await;
        let items = rig.client.database("shop").collection::<Item>("items");
        items.insert_one(&item(1, "apple", 5)).await.unwrap();
        let before = items
            .find_one_and_update(doc! {"_id": 1}, doc! {"$inc": {"qty": 1}}, None)
            .await
            .unwrap();
        assert_eq!(before, Some(item(1, "apple", 5)));
        let after = items
            .find_one_and_update(
                doc! {"_id": 1},
                doc! {"$inc": {"qty": 1}},
                FindOneAndUpdateOptions::new().return_document(ReturnDocument::After),
            )
            .await
            .unwrap();
        assert_eq!(after, Some(item(1, "apple", 7)));
        let none = items
            .find_one_and_update(doc! {"_id": 2}, doc! {"$inc": {"qty": 1}}, None)
            .await
            .unwrap();
        assert_eq!(none, None);
        let upserted = items
            .find_one_and_update(
                doc! {"_id": 2},
                doc! {"$set": {"kind": "fig", "qty": 1}},
                FindOneAndUpdateOptions::new()
                    .upsert(true)
                    .return_document(ReturnDocument::After),
            )
            .await
            .unwrap();
        assert_eq!(upserted, Some(item(2, "fig", 1)));
    })
    .await;
}

#[tokio::test]
async fn aggregate_distinct_create_index_and_run_command() {
    bounded(async {
        let rig = Rig::start().await;
        let db = rig.client.database("shop");
        let items = db.collection::<Item>("items");
        items
            .insert_many(
                [item(1, "apple", 5), item(2, "apple", 3), item(3, "pear", 1)],
                None,
            )
            .await
            .unwrap();

        let totals = items
            .aggregate(
                [
                    doc! {"$group": {"_id": "$kind", "total": {"$sum": "$qty"}}},
                    doc! {"$sort": {"_id": 1}},
                ],
                None,
            )
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(
            totals,
            vec![
                doc! {"_id": "apple", "total": 8},
                doc! {"_id": "pear", "total": 1}
            ]
        );

        let mut kinds = items.distinct("kind", doc! {}).await.unwrap();
        kinds.sort_by_key(|k| k.to_string());
        assert_eq!(kinds, vec![Bson::from("apple"), Bson::from("pear")]);

        let name = items
            .create_index(IndexModel::new(doc! {"kind": 1, "qty": -1}))
            .await
            .unwrap();
        assert_eq!(name, "kind_1_qty_-1");
        let unique = items
            .create_index(IndexModel::new(doc! {"qty": 1}).unique(true))
            .await
            .unwrap();
        let indexes = db
            .run_command(doc! {"listIndexes": "items", "cursor": {}})
            .await
            .unwrap();
        let names: Vec<String> = indexes
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .map(|i| i.as_document().unwrap().get_str("name").unwrap().to_owned())
            .collect();
        assert!(
            names.contains(&name) && names.contains(&unique),
            "{names:?}"
        );

        // The unique index is enforced, and the error keeps the server's code.
        let err = items.insert_one(&item(4, "fig", 5)).await.unwrap_err();
        assert_eq!(err.code(), Some(11000), "{err:?}");
        assert!(matches!(err, Error::Write(_)), "{err:?}");

        // run_command errors keep code, codeName and errmsg.
        let err = db.run_command(doc! {"noSuchCommand": 1}).await.unwrap_err();
        let Error::Command(c) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(c.code, 59);
        assert_eq!(c.code_name, "CommandNotFound");
        assert!(!c.errmsg.is_empty());
    })
    .await;
}

#[tokio::test]
async fn unordered_insert_many_reports_every_failure_with_its_index() {
    bounded(async {
        let rig = Rig::start().await;
        let items = rig.client.database("shop").collection::<Item>("items");
        items.insert_one(&item(2, "pear", 1)).await.unwrap();
        let batch = [item(1, "a", 1), item(2, "dup", 1), item(3, "c", 1)];
        let err = items
            .insert_many(batch.clone(), InsertManyOptions::new().ordered(false))
            .await
            .unwrap_err();
        let Error::Write(failure) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(failure.write_errors.len(), 1);
        assert_eq!(failure.write_errors[0].index, 1);
        assert_eq!(failure.write_errors[0].code, 11000);
        assert_eq!(items.count_documents(doc! {}, None).await.unwrap(), 3);

        // Ordered (the default) stops at the failure.
        let err = items
            .insert_many(
                [item(10, "a", 1), item(2, "dup", 1), item(11, "c", 1)],
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(11000));
        assert_eq!(items.count_documents(doc! {}, None).await.unwrap(), 4);
    })
    .await;
}

#[tokio::test]
async fn concurrent_operations_share_a_small_pool() {
    bounded(async {
        let rig = Rig::start().await;
        let client = mongo_pool_client::Client::connect_with(
            mongo_pool_client::ClientOptions::new(rig.pool.socket_path()).max_connections(3),
        )
        .await
        .unwrap();
        let items = client.database("shop").collection::<Item>("items");
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let items = items.clone();
                tokio::spawn(async move {
                    items.insert_one(&item(i, "x", i)).await.unwrap();
                    items.find_one(doc! {"_id": i}, None).await.unwrap()
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let got = task.await.unwrap().unwrap();
            assert_eq!(got._id, i32::try_from(i).unwrap());
        }
        assert_eq!(items.count_documents(doc! {}, None).await.unwrap(), 24);
    })
    .await;
}
