//! find, count, distinct and aggregate through the command interface.

use bson::{Bson, doc};

use super::{cursor, failure, reply, seeded};
use crate::store::Store;

fn ids(docs: &[bson::Document]) -> Vec<Bson> {
    docs.iter()
        .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
        .collect()
}

#[test]
fn find_applies_filter_sort_skip_limit_and_projection() {
    let mut store = seeded(
        (1..=6)
            .map(|i| doc! {"_id": i, "n": i % 3, "s": format!("v{i}")})
            .collect(),
    );
    let (ns, docs) = cursor(
        &mut store,
        "db",
        doc! {
            "find": "c", "filter": {"n": {"$gt": 0}}, "sort": {"n": -1, "_id": 1},
            "skip": 1, "limit": 2, "projection": {"s": 1},
        },
    );
    assert_eq!(ns, "db.c");
    assert_eq!(
        docs,
        vec![doc! {"_id": 5, "s": "v5"}, doc! {"_id": 1, "s": "v1"}]
    );
}

#[test]
fn find_with_negative_limit_uses_its_absolute_value() {
    let mut store = seeded((1..=5).map(|i| doc! {"_id": i}).collect());
    let (_, docs) = cursor(&mut store, "db", doc! {"find": "c", "limit": -2});
    assert_eq!(ids(&docs), vec![Bson::Int32(1), Bson::Int32(2)]);
    assert_eq!(
        failure(&mut store, "db", doc! {"find": "c", "skip": -1}).0,
        51024
    );
}

#[test]
fn find_on_a_missing_collection_is_an_empty_cursor() {
    let mut store = Store::new();
    assert_eq!(
        cursor(&mut store, "db", doc! {"find": "nope", "filter": {"a": 1}}),
        ("db.nope".to_owned(), vec![])
    );
}

#[test]
fn find_argument_type_errors_are_type_mismatch() {
    let mut store = Store::new();
    let (code, _, msg) = failure(&mut store, "db", doc! {"find": "c", "filter": "x"});
    assert_eq!(
        (code, msg.as_str()),
        (
            14,
            "BSON field 'find.filter' is the wrong type 'string', expected type 'object'"
        )
    );
    assert_eq!(
        failure(
            &mut store,
            "db",
            doc! {"find": "c", "filter": {"a": {"$bad": 1}}}
        )
        .0,
        2
    );
}

#[test]
fn projection_mixing_inclusion_and_exclusion_fails() {
    let mut store = seeded(vec![doc! {"_id": 1}]);
    let (code, name, msg) = failure(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"a": 1, "b": 0}},
    );
    assert_eq!(
        (code, name.as_str(), msg.as_str()),
        (
            31254,
            "Location31254",
            "Cannot do exclusion on field b in inclusion projection"
        )
    );
    let (code, _, msg) = failure(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"a": 0, "b": 1}},
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            31253,
            "Cannot do inclusion on field b in exclusion projection"
        )
    );
}

#[test]
fn projection_handles_dotted_paths_id_and_exclusion() {
    let d = doc! {"_id": 1, "a": {"b": 1, "c": 2}, "arr": [{"x": 1, "y": 2}, 5], "z": 3};
    let mut store = seeded(vec![d]);
    let (_, docs) = cursor(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"a.b": 1, "arr.x": 1, "_id": 0}},
    );
    assert_eq!(docs, vec![doc! {"a": {"b": 1}, "arr": [{"x": 1}]}]);
    let (_, docs) = cursor(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"a.c": 0, "arr": 0}},
    );
    assert_eq!(docs, vec![doc! {"_id": 1, "a": {"b": 1}, "z": 3}]);
    let (_, docs) = cursor(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"_id": 0}},
    );
    assert_eq!(docs[0].keys().next().map(String::as_str), Some("a"));
    let (_, docs) = cursor(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"z": 1, "sum": {"$add": ["$z", 1]}}},
    );
    assert_eq!(docs, vec![doc! {"_id": 1, "z": 3, "sum": 4}]);
    let (_, docs) = cursor(
        &mut store,
        "db",
        doc! {"find": "c", "projection": {"arr": {"$slice": 1}, "z": 1}},
    );
    assert_eq!(
        docs,
        vec![doc! {"_id": 1, "arr": [{"x": 1, "y": 2}], "z": 3}]
    );
}

#[test]
fn count_applies_query_skip_and_limit() {
    let mut store = seeded(
        (1..=10)
            .map(|i| doc! {"_id": i, "even": i % 2 == 0})
            .collect(),
    );
    assert_eq!(reply(&mut store, "db", doc! {"count": "c"}), doc! {"n": 10});
    assert_eq!(
        reply(
            &mut store,
            "db",
            doc! {"count": "c", "query": {"even": true}}
        ),
        doc! {"n": 5}
    );
    assert_eq!(
        reply(&mut store, "db", doc! {"count": "c", "skip": 8, "limit": 5}),
        doc! {"n": 2}
    );
    assert_eq!(
        reply(&mut store, "db", doc! {"count": "none"}),
        doc! {"n": 0}
    );
}

#[test]
fn distinct_unwinds_arrays_and_sorts_values() {
    let mut store = seeded(vec![
        doc! {"_id": 1, "t": ["b", "a"]},
        doc! {"_id": 2, "t": "c"},
        doc! {"_id": 3, "t": 1},
        doc! {"_id": 4, "t": 1.0},
        doc! {"_id": 5},
    ]);
    let r = reply(&mut store, "db", doc! {"distinct": "c", "key": "t"});
    assert_eq!(r, doc! {"values": [1, "a", "b", "c"]});
    let r = reply(
        &mut store,
        "db",
        doc! {"distinct": "c", "key": "t", "query": {"_id": {"$lt": 3}}},
    );
    assert_eq!(r, doc! {"values": ["a", "b", "c"]});
    assert_eq!(failure(&mut store, "db", doc! {"distinct": "c"}).0, 40414);
}
