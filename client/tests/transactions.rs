//! Transactions through mongo-pool: committed, aborted, and `with_transaction` retrying the
//! whole transaction on `TransientTransactionError` and the commit on
//! `UnknownTransactionCommitResult`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod rig;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bson::{Document, doc};
use mongo_pool_client::{Collection, Error};
use serde_json::json;
use support::rig::{Rig, bounded};

fn accounts(rig: &Rig) -> Collection<Document> {
    rig.client
        .database("bank")
        .collection::<Document>("accounts")
}

#[tokio::test]
async fn a_committed_transaction_becomes_visible_at_commit() {
    bounded(async {
        let rig = Rig::start().await;
        let accounts = accounts(&rig);
        let session = rig.client.start_session();
        session.start_transaction().unwrap();
        let in_txn = accounts.with_session(&session);
        in_txn
            .insert_one(&doc! {"_id": "a", "n": 10})
            .await
            .unwrap();
        in_txn.insert_one(&doc! {"_id": "b", "n": 5}).await.unwrap();
        in_txn
            .update_one(doc! {"_id": "a"}, doc! {"$inc": {"n": -1}}, None)
            .await
            .unwrap();
        // Inside, the transaction sees its own writes; outside, nothing yet.
        assert_eq!(in_txn.count_documents(doc! {}, None).await.unwrap(), 2);
        assert_eq!(accounts.count_documents(doc! {}, None).await.unwrap(), 0);
        assert!(session.in_transaction());

        session.commit_transaction().await.unwrap();
        assert!(!session.in_transaction());
        assert_eq!(rig.commands("commitTransaction").await, 1);
        assert_eq!(
            accounts.find_one(doc! {"_id": "a"}, None).await.unwrap(),
            Some(doc! {"_id": "a", "n": 9})
        );
        assert_eq!(accounts.count_documents(doc! {}, None).await.unwrap(), 2);

        // A second transaction on the same session works too.
        session.start_transaction().unwrap();
        in_txn.delete_one(doc! {"_id": "b"}).await.unwrap();
        session.commit_transaction().await.unwrap();
        assert_eq!(accounts.count_documents(doc! {}, None).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_aborted_transaction_leaves_nothing_behind() {
    bounded(async {
        let rig = Rig::start().await;
        let accounts = accounts(&rig);
        accounts
            .insert_one(&doc! {"_id": "a", "n": 1})
            .await
            .unwrap();
        let session = rig.client.start_session();
        session.start_transaction().unwrap();
        let in_txn = accounts.with_session(&session);
        in_txn.insert_one(&doc! {"_id": "b"}).await.unwrap();
        in_txn.delete_one(doc! {"_id": "a"}).await.unwrap();
        session.abort_transaction().await.unwrap();
        assert_eq!(rig.commands("abortTransaction").await, 1);
        assert_eq!(
            accounts
                .find(doc! {}, None)
                .await
                .unwrap()
                .collect_all()
                .await
                .unwrap(),
            vec![doc! {"_id": "a", "n": 1}]
        );
        // Commit after abort is a usage error, caught before any round trip.
        let err = session.commit_transaction().await.unwrap_err();
        assert!(matches!(err, Error::Transaction(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn with_transaction_retries_on_transient_transaction_error() {
    bounded(async {
        let rig = Rig::start().await;
        let accounts = accounts(&rig);
        rig.fail_point(
            json!({"times": 1}),
            json!({"failCommands": ["insert"], "errorCode": 112,
                   "errorLabels": ["TransientTransactionError"]}),
        )
        .await;
        let attempts = Arc::new(AtomicUsize::new(0));
        let session = rig.client.start_session();
        let value = session
            .with_transaction(|s| {
                let accounts = accounts.with_session(&s);
                let attempts = Arc::clone(&attempts);
                async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    accounts.insert_one(&doc! {"_id": "t"}).await?;
                    Ok("done")
                }
            })
            .await
            .unwrap();
        assert_eq!(value, "done");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(accounts.count_documents(doc! {}, None).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn with_transaction_retries_the_commit_when_its_result_is_unknown() {
    bounded(async {
        let rig = Rig::start().await;
        let accounts = accounts(&rig);
        // The commit and its own retry both lose their connection: the outcome is unknown,
        // so with_transaction commits again (and the body runs once).
        rig.fail_point(
            json!({"times": 2}),
            json!({"failCommands": ["commitTransaction"], "closeConnection": true}),
        )
        .await;
        let attempts = Arc::new(AtomicUsize::new(0));
        let session = rig.client.start_session();
        session
            .with_transaction(|s| {
                let accounts = accounts.with_session(&s);
                let attempts = Arc::clone(&attempts);
                async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    accounts.insert_one(&doc! {"_id": "c"}).await?;
                    Ok(())
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\nmongo-pool:\n{}", rig.logs()));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(rig.commands("commitTransaction").await, 3);
        assert_eq!(accounts.count_documents(doc! {}, None).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_failing_body_aborts_and_returns_its_error() {
    bounded(async {
        let rig = Rig::start().await;
        let accounts = accounts(&rig);
        let session = rig.client.start_session();
        let err = session
            .with_transaction(|s| {
                let accounts = accounts.with_session(&s);
                async move {
                    accounts.insert_one(&doc! {"_id": "x"}).await?;
                    Err::<(), _>(Error::InvalidArgument(
                        "the handler changed its mind".into(),
                    ))
                }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(rig.commands("abortTransaction").await, 1);
        assert_eq!(accounts.count_documents(doc! {}, None).await.unwrap(), 0);
    })
    .await;
}
