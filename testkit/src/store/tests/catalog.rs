//! create, drop, indexes and the list commands.

use bson::{Bson, doc};

use super::{cursor, failure, find_all, reply, seeded};
use crate::store::Store;

#[test]
fn create_then_create_again_is_namespace_exists() {
    let mut store = Store::new();
    assert_eq!(
        reply(&mut store, "db", doc! {"create": "c", "capped": false}),
        doc! {}
    );
    let (code, name, msg) = failure(&mut store, "db", doc! {"create": "c"});
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (48, "NamespaceExists", "Collection db.c already exists.")
    );
}

#[test]
fn drop_reports_indexes_and_tolerates_missing_collections() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    assert_eq!(
        reply(&mut store, "db", doc! {"drop": "c"}),
        doc! {"nIndexesWas": 1, "ns": "db.c"}
    );
    assert_eq!(reply(&mut store, "db", doc! {"drop": "c"}), doc! {});
    assert!(find_all(&mut store, "c").is_empty());
}

#[test]
fn drop_database_removes_every_collection() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    assert_eq!(
        reply(&mut store, "db", doc! {"dropDatabase": 1}),
        doc! {"dropped": "db"}
    );
    assert!(find_all(&mut store, "c").is_empty());
    assert_eq!(reply(&mut store, "db", doc! {"dropDatabase": 1}), doc! {});
}

#[test]
fn create_indexes_reports_counts_and_is_idempotent() {
    let mut store = Store::new();
    let spec = doc! {"key": {"name": 1}, "name": "name_1", "unique": true};
    let r = reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [spec.clone()]},
    );
    assert_eq!(
        r,
        doc! {"createdCollectionAutomatically": true, "numIndexesBefore": 1, "numIndexesAfter": 2}
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [spec]},
    );
    assert_eq!(
        r,
        doc! {"numIndexesBefore": 2, "numIndexesAfter": 2, "note": "all indexes already exist"}
    );
}

#[test]
fn conflicting_index_definitions_fail() {
    let mut store = Store::new();
    reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
    );
    let (code, name, _) = failure(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"b": 1}, "name": "a_1"}]},
    );
    assert_eq!((code, name.as_str()), (86, "IndexKeySpecsConflict"));
    let (code, name, msg) = failure(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "other"}]},
    );
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (
            85,
            "IndexOptionsConflict",
            "Index already exists with a different name: a_1"
        )
    );
    let (code, _, _) = failure(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": true}]},
    );
    assert_eq!(code, 85);
}

#[test]
fn unique_index_over_existing_duplicates_fails_with_duplicate_key() {
    let mut store = seeded(vec![doc! {"_id": 1, "a": 1}, doc! {"_id": 2, "a": 1}]);
    let (code, name, msg) = failure(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": true}]},
    );
    assert_eq!((code, name.as_str()), (11000, "DuplicateKey"));
    assert_eq!(
        msg,
        "E11000 duplicate key error collection: db.c index: a_1 dup key: { a: 1 }"
    );
    let (_, indexes) = cursor(&mut store, "db", doc! {"listIndexes": "c"});
    assert_eq!(indexes.len(), 1);
}

#[test]
fn unique_compound_index_is_enforced_on_insert() {
    let mut store = Store::new();
    reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1, "b": -1}, "name": "a_1_b_-1", "unique": true}]},
    );
    reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": [{"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 2}]},
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": [{"a": 1, "b": 2}]},
    );
    let error = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(
        error.get_str("errmsg").unwrap(),
        "E11000 duplicate key error collection: db.c index: a_1_b_-1 dup key: { a: 1, b: 2 }"
    );
    assert_eq!(
        error.get_document("keyPattern").unwrap(),
        &doc! {"a": 1, "b": -1}
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": [{"a": 2, "b": null}]},
    );
    assert!(r.contains_key("writeErrors"), "missing b indexes as null");
}

#[test]
fn list_indexes_returns_specs_and_fails_for_missing_collections() {
    let mut store = Store::new();
    reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"e": 1}, "name": "e_1", "unique": true}]},
    );
    let (ns, indexes) = cursor(&mut store, "db", doc! {"listIndexes": "c"});
    assert_eq!(ns, "db.c");
    assert_eq!(
        indexes,
        vec![
            doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            doc! {"v": 2, "key": {"e": 1}, "name": "e_1", "unique": true},
        ]
    );
    let (code, name, msg) = failure(&mut store, "db", doc! {"listIndexes": "nope"});
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (26, "NamespaceNotFound", "ns does not exist: db.nope")
    );
}

#[test]
fn drop_indexes_by_name_key_or_star() {
    let mut store = Store::new();
    let indexes = vec![
        Bson::Document(doc! {"key": {"a": 1}, "name": "a_1"}),
        Bson::Document(doc! {"key": {"b": 1}, "name": "b_1"}),
        Bson::Document(doc! {"key": {"c": 1}, "name": "c_1"}),
    ];
    reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": indexes},
    );
    assert_eq!(
        reply(&mut store, "db", doc! {"dropIndexes": "c", "index": "a_1"}),
        doc! {"nIndexesWas": 4}
    );
    assert_eq!(
        reply(
            &mut store,
            "db",
            doc! {"dropIndexes": "c", "index": {"b": 1}}
        ),
        doc! {"nIndexesWas": 3}
    );
    assert_eq!(
        reply(&mut store, "db", doc! {"dropIndexes": "c", "index": "*"}),
        doc! {"nIndexesWas": 2}
    );
    assert_eq!(
        cursor(&mut store, "db", doc! {"listIndexes": "c"}).1.len(),
        1
    );
}

#[test]
fn drop_indexes_errors_match_mongod() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let (code, name, msg) = failure(&mut store, "db", doc! {"dropIndexes": "c", "index": "nope"});
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (27, "IndexNotFound", "index not found with name [nope]")
    );
    let (code, name, msg) = failure(&mut store, "db", doc! {"dropIndexes": "c", "index": "_id_"});
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (72, "InvalidOptions", "cannot drop _id index")
    );
    assert_eq!(
        failure(
            &mut store,
            "db",
            doc! {"dropIndexes": "missing", "index": "*"}
        )
        .0,
        26
    );
}

#[test]
fn list_collections_supports_filter_and_name_only() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    reply(&mut store, "db", doc! {"create": "other"});
    let (ns, all) = cursor(&mut store, "db", doc! {"listCollections": 1});
    assert_eq!(ns, "db.$cmd.listCollections");
    assert_eq!(all.len(), 2);
    let c = &all[0];
    assert_eq!(c.get_str("name").unwrap(), "c");
    assert_eq!(c.get_str("type").unwrap(), "collection");
    assert_eq!(c.get_document("options").unwrap(), &doc! {});
    assert!(
        !c.get_document("info")
            .unwrap()
            .get_bool("readOnly")
            .unwrap()
    );
    assert!(matches!(
        c.get_document("info").unwrap().get("uuid"),
        Some(Bson::Binary(_))
    ));
    assert_eq!(
        c.get_document("idIndex").unwrap(),
        &doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
    );
    let (_, named) = cursor(
        &mut store,
        "db",
        doc! {"listCollections": 1, "filter": {"name": "other"}, "nameOnly": true},
    );
    assert_eq!(named, vec![doc! {"name": "other", "type": "collection"}]);
}

#[test]
fn list_databases_runs_only_on_admin() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let r = reply(&mut store, "admin", doc! {"listDatabases": 1});
    let dbs = r.get_array("databases").unwrap();
    assert_eq!(dbs.len(), 1);
    let entry = dbs[0].as_document().unwrap();
    assert_eq!(entry.get_str("name").unwrap(), "db");
    assert!(entry.get_i64("sizeOnDisk").unwrap() > 0);
    assert!(!entry.get_bool("empty").unwrap());
    assert!(r.get_i64("totalSize").unwrap() > 0);
    assert!(r.contains_key("totalSizeMb"));
    let r = reply(
        &mut store,
        "admin",
        doc! {"listDatabases": 1, "nameOnly": true, "filter": {"name": "db"}},
    );
    assert_eq!(r, doc! {"databases": [{"name": "db"}]});
    let (code, name, _) = failure(&mut store, "db", doc! {"listDatabases": 1});
    assert_eq!((code, name.as_str()), (13, "Unauthorized"));
}
