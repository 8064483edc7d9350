//! Command-level tests of the store: what a driver would send, and what mongod would reply.

mod catalog;
mod find;
mod write;

use bson::{Bson, Document, doc};

use super::{Outcome, Store};

/// Runs a command that must succeed with a plain reply.
fn reply(store: &mut Store, db: &str, command: Document) -> Document {
    match store.execute(db, &command) {
        Ok(Outcome::Reply(d)) => d,
        other => panic!("expected a reply for {command}, got {other:?}"),
    }
}

/// Runs a command that must produce a cursor; returns (ns, documents).
fn cursor(store: &mut Store, db: &str, command: Document) -> (String, Vec<Document>) {
    match store.execute(db, &command) {
        Ok(Outcome::Cursor { ns, documents }) => (ns, documents),
        other => panic!("expected a cursor for {command}, got {other:?}"),
    }
}

/// Runs a command that must fail; returns (code, codeName, errmsg).
fn failure(store: &mut Store, db: &str, command: Document) -> (i32, String, String) {
    match store.execute(db, &command) {
        Err(e) => (e.code, e.code_name, e.errmsg),
        Ok(other) => panic!("expected an error for {command}, got {other:?}"),
    }
}

fn find_all(store: &mut Store, coll: &str) -> Vec<Document> {
    cursor(store, "db", doc! {"find": coll}).1
}

fn seeded(docs: Vec<Document>) -> Store {
    let mut store = Store::new();
    let documents: Vec<Bson> = docs.into_iter().map(Bson::Document).collect();
    reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": documents},
    );
    store
}

#[test]
fn unknown_command_is_command_not_found() {
    let mut store = Store::new();
    let (code, name, msg) = failure(&mut store, "db", doc! {"frobnicate": 1});
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (59, "CommandNotFound", "no such command: 'frobnicate'")
    );
}

#[test]
fn invalid_namespaces_are_rejected() {
    let mut store = Store::new();
    let (code, name, msg) = failure(&mut store, "db", doc! {"insert": "a$b", "documents": [{}]});
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (
            73,
            "InvalidNamespace",
            "Invalid namespace specified 'db.a$b'"
        )
    );
    assert_eq!(failure(&mut store, "db", doc! {"find": ""}).0, 73);
    assert_eq!(failure(&mut store, "", doc! {"find": "c"}).0, 73);
    assert_eq!(failure(&mut store, "a.b", doc! {"find": "c"}).0, 73);
    assert_eq!(failure(&mut store, "db", doc! {"find": 5}).0, 73);
}

#[test]
fn generic_command_fields_are_ignored() {
    let mut store = Store::new();
    let command = doc! {
        "insert": "c", "documents": [{"_id": 1}], "$db": "db", "lsid": {"id": 1},
        "txnNumber": 1i64, "$clusterTime": {}, "writeConcern": {"w": "majority"},
        "comment": "x", "maxTimeMS": 10, "apiVersion": "1",
    };
    assert_eq!(reply(&mut store, "db", command), doc! {"n": 1});
}

#[test]
fn is_write_and_commands_describe_the_command_set() {
    for name in [
        "insert",
        "update",
        "delete",
        "findAndModify",
        "create",
        "createIndexes",
        "dropIndexes",
        "drop",
        "dropDatabase",
    ] {
        assert!(Store::is_write(name), "{name}");
        assert!(Store::commands().contains(&name), "{name}");
    }
    for name in [
        "find",
        "aggregate",
        "count",
        "distinct",
        "listIndexes",
        "listCollections",
        "listDatabases",
    ] {
        assert!(!Store::is_write(name), "{name}");
        assert!(Store::commands().contains(&name), "{name}");
    }
}

#[test]
fn cloned_store_is_an_independent_snapshot() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let snapshot = store.clone();
    reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 2}]},
    );
    let mut snapshot = snapshot;
    assert_eq!(find_all(&mut snapshot, "c").len(), 1);
    assert_eq!(find_all(&mut store, "c").len(), 2);
}
