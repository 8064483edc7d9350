//! Tests for update parsing and application.

use bson::{Bson, Document, doc};

use super::{Update, upsert_seed};

fn updated(doc: Document, u: Document) -> Document {
    let mut doc = doc;
    Update::parse(&Bson::Document(u))
        .unwrap()
        .apply(&mut doc, false)
        .unwrap();
    doc
}

fn parse_error(u: Document) -> (i32, String) {
    let err = Update::parse(&Bson::Document(u)).unwrap_err();
    (err.code, err.errmsg)
}

fn apply_error(doc: Document, u: Document) -> (i32, String) {
    let mut doc = doc;
    let err = Update::parse(&Bson::Document(u))
        .unwrap()
        .apply(&mut doc, false)
        .unwrap_err();
    (err.code, err.errmsg)
}

#[test]
fn set_and_unset_handle_dotted_paths() {
    let d = updated(
        doc! {"_id": 1, "a": {"b": 1}},
        doc! {"$set": {"a.c": 2, "x.y": 3}},
    );
    assert_eq!(d, doc! {"_id": 1, "a": {"b": 1, "c": 2}, "x": {"y": 3}});
    let d = updated(d, doc! {"$unset": {"a.b": "", "x": 1, "nope": 1}});
    assert_eq!(d, doc! {"_id": 1, "a": {"c": 2}});
}

#[test]
fn new_fields_are_added_in_field_name_order() {
    let d = updated(
        doc! {"_id": 1},
        doc! {"$set": {"z": 1, "b": 1}, "$inc": {"a": 1}},
    );
    assert_eq!(d.keys().collect::<Vec<_>>(), vec!["_id", "a", "b", "z"]);
}

#[test]
fn inc_and_mul_follow_numeric_promotion() {
    let d = updated(
        doc! {"_id": 1, "n": 1, "f": 2},
        doc! {"$inc": {"n": 2, "m": 5i64}, "$mul": {"f": 1.5, "g": 3}},
    );
    assert_eq!(d, doc! {"_id": 1, "f": 3.0, "g": 0, "m": 5i64, "n": 3});
    let d = updated(doc! {"_id": 1, "n": i32::MAX}, doc! {"$inc": {"n": 1}});
    assert_eq!(d.get("n"), Some(&Bson::Int64(i64::from(i32::MAX) + 1)));
}

#[test]
fn inc_of_a_non_numeric_field_is_a_type_mismatch() {
    let (code, msg) = apply_error(doc! {"_id": 1, "a": "x"}, doc! {"$inc": {"a": 1}});
    assert_eq!(code, 14);
    assert_eq!(
        msg,
        "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of non-numeric type string"
    );
    let (code, msg) = parse_error(doc! {"$inc": {"a": "x"}});
    assert_eq!(
        (code, msg.as_str()),
        (
            14,
            r#"Cannot increment with non-numeric argument: {a: "x"}"#
        )
    );
}

#[test]
fn min_max_and_rename_update_fields() {
    let d = updated(
        doc! {"_id": 1, "lo": 5, "hi": 5, "old": "v"},
        doc! {"$min": {"lo": 3}, "$max": {"hi": 3}, "$rename": {"old": "new"}},
    );
    assert_eq!(d, doc! {"_id": 1, "lo": 3, "hi": 5, "new": "v"});
}

#[test]
fn push_supports_each_position_slice_and_sort() {
    let d = updated(doc! {"_id": 1}, doc! {"$push": {"a": 1}});
    assert_eq!(d, doc! {"_id": 1, "a": [1]});
    let d = updated(d, doc! {"$push": {"a": {"$each": [5, 3], "$position": 0}}});
    assert_eq!(d, doc! {"_id": 1, "a": [5, 3, 1]});
    let d = updated(
        d,
        doc! {"$push": {"a": {"$each": [4], "$sort": 1, "$slice": -3}}},
    );
    assert_eq!(d, doc! {"_id": 1, "a": [3, 4, 5]});
    let d = updated(d, doc! {"$push": {"a": {"k": 1}}});
    assert_eq!(d, doc! {"_id": 1, "a": [3, 4, 5, {"k": 1}]});
}

#[test]
fn push_to_a_non_array_is_bad_value() {
    let (code, msg) = apply_error(doc! {"_id": 1, "a": 1}, doc! {"$push": {"a": 2}});
    assert_eq!(code, 2);
    assert_eq!(
        msg,
        "The field 'a' must be an array but is of type int in document {_id: 1}"
    );
}

#[test]
fn add_to_set_pull_pull_all_and_pop_edit_arrays() {
    let d = updated(
        doc! {"_id": 1, "a": [1, 2]},
        doc! {"$addToSet": {"a": {"$each": [2, 3]}}},
    );
    assert_eq!(d, doc! {"_id": 1, "a": [1, 2, 3]});
    let d = updated(d, doc! {"$pull": {"a": {"$gte": 3}}});
    assert_eq!(d, doc! {"_id": 1, "a": [1, 2]});
    let d = updated(d, doc! {"$pullAll": {"a": [1]}});
    assert_eq!(d, doc! {"_id": 1, "a": [2]});
    let d = updated(doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$pop": {"a": -1}});
    assert_eq!(d, doc! {"_id": 1, "a": [2, 3]});
    let d = updated(
        doc! {"_id": 1, "r": [{"k": 1, "x": 1}, {"k": 2}]},
        doc! {"$pull": {"r": {"k": 1}}},
    );
    assert_eq!(d, doc! {"_id": 1, "r": [{"k": 2}]});
}

#[test]
fn replacement_keeps_id_first() {
    let d = updated(doc! {"_id": 7, "a": 1}, doc! {"b": 2});
    assert_eq!(d, doc! {"_id": 7, "b": 2});
    let d = updated(doc! {"_id": 7, "a": 1}, doc! {"b": 2, "_id": 7});
    assert_eq!(d, doc! {"_id": 7, "b": 2});
}

#[test]
fn changing_id_is_immutable_field() {
    let (code, msg) = apply_error(doc! {"_id": 1}, doc! {"$set": {"_id": 2}});
    assert_eq!(code, 66);
    assert_eq!(
        msg,
        "Performing an update on the path '_id' would modify the immutable field '_id'"
    );
    let (code, _) = apply_error(doc! {"_id": 1}, doc! {"_id": 2, "a": 1});
    assert_eq!(code, 66);
    assert_eq!(
        updated(doc! {"_id": 1}, doc! {"$set": {"_id": 1}}),
        doc! {"_id": 1}
    );
}

#[test]
fn set_on_insert_applies_only_when_inserting() {
    let u = Update::parse(&doc! {"$setOnInsert": {"created": true}}.into()).unwrap();
    let mut existing = doc! {"_id": 1};
    u.apply(&mut existing, false).unwrap();
    assert_eq!(existing, doc! {"_id": 1});
    let mut fresh = doc! {"_id": 1};
    u.apply(&mut fresh, true).unwrap();
    assert_eq!(fresh, doc! {"_id": 1, "created": true});
}

#[test]
fn unknown_or_malformed_modifiers_fail_to_parse() {
    let (code, msg) = parse_error(doc! {"$foo": {"a": 1}});
    assert_eq!(code, 9);
    assert_eq!(
        msg,
        "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update specified as an array"
    );
    assert_eq!(parse_error(doc! {"$set": {"a": 1}, "b": 1}).0, 9);
    assert_eq!(parse_error(doc! {"$set": 1}).0, 9);
    assert_eq!(parse_error(doc! {"$set": {"a..b": 1}}).0, 56);
    assert_eq!(parse_error(doc! {"a": 1, "$set": {"b": 1}}).0, 52);
}

#[test]
fn overlapping_paths_conflict() {
    let (code, msg) = parse_error(doc! {"$set": {"a.b": 1}, "$inc": {"a": 1}});
    assert_eq!(code, 40);
    assert_eq!(
        msg,
        "Updating the path 'a.b' would create a conflict at 'a'"
    );
}

#[test]
fn pipeline_updates_run_set_and_unset_stages() {
    let u = Update::parse(&Bson::Array(vec![
        doc! {"$set": {"total": {"$add": ["$a", "$b"]}}}.into(),
        doc! {"$unset": "b"}.into(),
    ]))
    .unwrap();
    let mut d = doc! {"_id": 1, "a": 1, "b": 2};
    u.apply(&mut d, false).unwrap();
    assert_eq!(d, doc! {"_id": 1, "a": 1, "total": 3});
}

#[test]
fn upsert_seed_takes_equality_fields_of_the_query() {
    let seed = upsert_seed(&doc! {
        "name": "x", "age": {"$gt": 3}, "k": {"$eq": 5}, "a.b": 1,
        "$and": [{"c": 2}], "_id": 9, "r": {"$in": [7]},
    });
    assert_eq!(
        seed,
        doc! {"_id": 9, "name": "x", "k": 5, "a": {"b": 1}, "c": 2, "r": 7}
    );
}
