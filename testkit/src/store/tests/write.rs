//! insert, update, delete and findAndModify as a driver sees them.

use bson::{Bson, doc};

use super::{failure, find_all, reply, seeded};
use crate::store::Store;

#[test]
fn insert_adds_an_object_id_first_when_missing() {
    let mut store = Store::new();
    assert_eq!(
        reply(
            &mut store,
            "db",
            doc! {"insert": "c", "documents": [{"a": 1}, {"b": 1, "_id": 5}]}
        ),
        doc! {"n": 2}
    );
    let docs = find_all(&mut store, "c");
    assert!(matches!(docs[0].get("_id"), Some(Bson::ObjectId(_))));
    assert_eq!(docs[0].keys().next().map(String::as_str), Some("_id"));
    assert_eq!(docs[1], doc! {"_id": 5, "b": 1});
}

#[test]
fn insert_duplicate_id_is_a_write_error_and_ordered_stops() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let r = reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": [{"_id": 2}, {"_id": 1}, {"_id": 3}]},
    );
    assert_eq!(
        r,
        doc! {
            "n": 2 - 1,
            "writeErrors": [{
                "index": 1, "code": 11000, "keyPattern": {"_id": 1}, "keyValue": {"_id": 1},
                "errmsg": "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1 }",
            }],
        }
    );
    assert_eq!(find_all(&mut store, "c").len(), 2);
}

#[test]
fn unordered_insert_continues_after_errors() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let r = reply(
        &mut store,
        "db",
        doc! {"insert": "c", "ordered": false, "documents": [{"_id": 1}, {"_id": 2}, {"_id": 2}]},
    );
    assert_eq!(r.get("n"), Some(&Bson::Int32(1)));
    let indexes: Vec<i32> = r
        .get_array("writeErrors")
        .unwrap()
        .iter()
        .map(|e| e.as_document().unwrap().get_i32("index").unwrap())
        .collect();
    assert_eq!(indexes, vec![0, 2]);
}

#[test]
fn insert_argument_errors_match_mongod() {
    let mut store = Store::new();
    let (code, name, msg) = failure(&mut store, "db", doc! {"insert": "c"});
    assert_eq!((code, name.as_str()), (40414, "Location40414"));
    assert_eq!(
        msg,
        "BSON field 'insert.documents' is missing but a required field"
    );
    let (code, name, msg) = failure(&mut store, "db", doc! {"insert": "c", "documents": 1});
    assert_eq!((code, name.as_str()), (14, "TypeMismatch"));
    assert_eq!(
        msg,
        "BSON field 'insert.documents' is the wrong type 'int', expected type 'array'"
    );
    assert_eq!(
        failure(&mut store, "db", doc! {"insert": "c", "documents": []}).0,
        16
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"insert": "c", "documents": [{"_id": [1]}]},
    );
    let error = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(
        error,
        doc! {"index": 0, "code": 53, "errmsg": "The '_id' value cannot be of type array"}
    );
}

#[test]
fn update_with_upsert_inserts_equality_fields() {
    let mut store = Store::new();
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [
            {"q": {"name": "x", "age": {"$gt": 1}}, "u": {"$set": {"v": 1}, "$setOnInsert": {"new": true}}, "upsert": true},
        ]},
    );
    let id = find_all(&mut store, "c")[0].get("_id").cloned().unwrap();
    assert_eq!(
        r,
        doc! {"n": 1, "upserted": [{"index": 0, "_id": id.clone()}], "nModified": 0}
    );
    assert_eq!(
        find_all(&mut store, "c"),
        vec![doc! {"_id": id, "name": "x", "new": true, "v": 1}]
    );
}

#[test]
fn update_replacement_upsert_takes_only_the_id_from_the_query() {
    let mut store = Store::new();
    reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 3, "a": 1}, "u": {"b": 2}, "upsert": true}]},
    );
    assert_eq!(find_all(&mut store, "c"), vec![doc! {"_id": 3, "b": 2}]);
}

#[test]
fn update_counts_matched_and_modified_separately() {
    let mut store = seeded(vec![
        doc! {"_id": 1, "a": 1},
        doc! {"_id": 2, "a": 2},
        doc! {"_id": 3, "a": 9},
    ]);
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {"a": {"$lt": 5}}, "u": {"$set": {"a": 2}}, "multi": true}]},
    );
    assert_eq!(r, doc! {"n": 2, "nModified": 1});
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {"a": 2}, "u": {"$inc": {"a": 1}}}]},
    );
    assert_eq!(r, doc! {"n": 1, "nModified": 1});
    assert_eq!(find_all(&mut store, "c")[0], doc! {"_id": 1, "a": 3});
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {"a": 100}, "u": {"$set": {"b": 1}}}]},
    );
    assert_eq!(r, doc! {"n": 0, "nModified": 0});
}

#[test]
fn multi_update_with_replacement_is_a_write_error() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {}, "u": {"a": 1}, "multi": true}]},
    );
    assert_eq!(
        r,
        doc! {"n": 0, "nModified": 0, "writeErrors": [
            {"index": 0, "code": 9, "errmsg": "multi update is not supported for replacement-style update"},
        ]}
    );
}

#[test]
fn update_modifying_id_is_immutable_field_write_error() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {}, "u": {"$set": {"_id": 2}}}]},
    );
    let error = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(error.get_i32("code").unwrap(), 66);
}

#[test]
fn update_into_a_unique_index_violation_is_duplicate_key() {
    let mut store = seeded(vec![doc! {"_id": 1, "e": "a"}, doc! {"_id": 2, "e": "b"}]);
    reply(
        &mut store,
        "db",
        doc! {"createIndexes": "c", "indexes": [{"key": {"e": 1}, "name": "e_1", "unique": true}]},
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 2}, "u": {"$set": {"e": "a"}}}]},
    );
    let error = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(error.get_i32("code").unwrap(), 11000);
    assert_eq!(error.get_document("keyValue").unwrap(), &doc! {"e": "a"});
    let r = reply(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"q": {"_id": 9}, "u": {"$set": {"e": "b"}}, "upsert": true}]},
    );
    assert_eq!(r.get_array("writeErrors").unwrap().len(), 1);
    assert_eq!(find_all(&mut store, "c").len(), 2);
}

#[test]
fn update_statement_missing_q_is_a_command_error() {
    let mut store = Store::new();
    let (code, _, msg) = failure(
        &mut store,
        "db",
        doc! {"update": "c", "updates": [{"u": {}}]},
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            40414,
            "BSON field 'update.updates.q' is missing but a required field"
        )
    );
}

#[test]
fn delete_honours_limit_zero_and_one() {
    let mut store = seeded(vec![
        doc! {"_id": 1, "a": 1},
        doc! {"_id": 2, "a": 1},
        doc! {"_id": 3, "a": 2},
    ]);
    assert_eq!(
        reply(
            &mut store,
            "db",
            doc! {"delete": "c", "deletes": [{"q": {"a": 1}, "limit": 1}]}
        ),
        doc! {"n": 1}
    );
    assert_eq!(find_all(&mut store, "c")[0], doc! {"_id": 2, "a": 1});
    assert_eq!(
        reply(
            &mut store,
            "db",
            doc! {"delete": "c", "deletes": [{"q": {}, "limit": 0}]}
        ),
        doc! {"n": 2}
    );
    assert_eq!(
        reply(
            &mut store,
            "db",
            doc! {"delete": "missing", "deletes": [{"q": {}, "limit": 0}]}
        ),
        doc! {"n": 0}
    );
    assert_eq!(
        failure(
            &mut store,
            "db",
            doc! {"delete": "c", "deletes": [{"q": {}, "limit": 2}]}
        )
        .0,
        9
    );
}

#[test]
fn find_and_modify_returns_the_old_or_new_document() {
    let mut store = seeded(vec![doc! {"_id": 1, "n": 1}, doc! {"_id": 2, "n": 5}]);
    let r = reply(
        &mut store,
        "db",
        doc! {"findAndModify": "c", "query": {}, "sort": {"n": -1}, "update": {"$inc": {"n": 1}}},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 1, "updatedExisting": true}, "value": {"_id": 2, "n": 5}}
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"findAndModify": "c", "query": {"_id": 1}, "update": {"$inc": {"n": 1}}, "new": true, "fields": {"_id": 0}},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 1, "updatedExisting": true}, "value": {"n": 2}}
    );
}

#[test]
fn find_and_modify_upserts_and_removes() {
    let mut store = Store::new();
    let r = reply(
        &mut store,
        "db",
        doc! {"findAndModify": "c", "query": {"_id": 7}, "update": {"$set": {"a": 1}}, "upsert": true, "new": true},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 1, "updatedExisting": false, "upserted": 7}, "value": {"_id": 7, "a": 1}}
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"findAndModify": "c", "query": {"_id": 8}, "update": {"$set": {"a": 1}}},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 0, "updatedExisting": false}, "value": null}
    );
    let r = reply(
        &mut store,
        "db",
        doc! {"findAndModify": "c", "query": {"_id": 7}, "remove": true},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 1}, "value": {"_id": 7, "a": 1}}
    );
    assert!(find_all(&mut store, "c").is_empty());
}

#[test]
fn find_and_modify_argument_errors_and_duplicate_keys() {
    let mut store = seeded(vec![doc! {"_id": 1}, doc! {"_id": 2}]);
    let (code, _, msg) = failure(&mut store, "db", doc! {"findAndModify": "c", "query": {}});
    assert_eq!(
        (code, msg.as_str()),
        (9, "Either an update or remove=true must be specified")
    );
    assert_eq!(
        failure(
            &mut store,
            "db",
            doc! {"findAndModify": "c", "remove": true, "update": {"$set": {"a": 1}}}
        )
        .0,
        9
    );
    assert_eq!(
        failure(
            &mut store,
            "db",
            doc! {"findAndModify": "c", "remove": true, "new": true}
        )
        .0,
        9
    );
    let (code, name, _) = failure(
        &mut store,
        "db",
        doc! {"findAndModify": "c", "query": {"x": 9}, "update": {"$set": {"_id": 1}}, "upsert": true},
    );
    assert_eq!((code, name.as_str()), (11000, "DuplicateKey"));
}
