//! Tests for query filters: equality, arrays, dotted paths, operators and their errors.

use bson::{Bson, Document, doc, raw::CString};

use super::Filter;

fn matches(filter: Document, doc: Document) -> bool {
    Filter::parse(&filter).unwrap().matches(&doc)
}

fn parse_error(filter: Document) -> (i32, String) {
    let err = Filter::parse(&filter).unwrap_err();
    (err.code, err.errmsg)
}

fn regex(pattern: &str, options: &str) -> Bson {
    Bson::RegularExpression(bson::Regex {
        pattern: CString::try_from(pattern).unwrap(),
        options: CString::try_from(options).unwrap(),
    })
}

#[test]
fn implicit_equality_matches_scalars_and_numbers_across_types() {
    assert!(matches(doc! {"a": 1}, doc! {"a": 1.0}));
    assert!(matches(doc! {"a": 1i64}, doc! {"a": 1}));
    assert!(!matches(doc! {"a": 1}, doc! {"a": "1"}));
    assert!(matches(doc! {}, doc! {"anything": true}));
}

#[test]
fn equality_on_an_array_field_matches_any_element_or_the_whole_array() {
    let d = doc! {"tags": ["a", "b"]};
    assert!(matches(doc! {"tags": "a"}, d.clone()));
    assert!(matches(doc! {"tags": ["a", "b"]}, d.clone()));
    assert!(!matches(doc! {"tags": ["b", "a"]}, d.clone()));
    assert!(!matches(doc! {"tags": "c"}, d));
}

#[test]
fn embedded_document_equality_is_exact_and_order_sensitive() {
    let d = doc! {"a": {"x": 1, "y": 2}};
    assert!(matches(doc! {"a": {"x": 1, "y": 2}}, d.clone()));
    assert!(!matches(doc! {"a": {"y": 2, "x": 1}}, d.clone()));
    assert!(!matches(doc! {"a": {"x": 1}}, d));
}

#[test]
fn dotted_paths_reach_into_subdocuments_and_arrays_of_subdocuments() {
    assert!(matches(doc! {"a.b.c": 1}, doc! {"a": {"b": {"c": 1}}}));
    let d = doc! {"items": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": 5}]};
    assert!(matches(doc! {"items.sku": "y"}, d.clone()));
    assert!(matches(doc! {"items.qty": {"$gt": 4}}, d.clone()));
    assert!(matches(doc! {"items.1.sku": "y"}, d.clone()));
    assert!(!matches(doc! {"items.0.sku": "y"}, d));
}

#[test]
fn null_matches_missing_and_null_but_not_other_values() {
    assert!(matches(doc! {"a": null}, doc! {}));
    assert!(matches(doc! {"a": null}, doc! {"a": null}));
    assert!(!matches(doc! {"a": null}, doc! {"a": 0}));
    assert!(matches(
        doc! {"a.b": null},
        doc! {"a": [{"b": 1}, {"c": 1}]}
    ));
    assert!(matches(doc! {"a": {"$ne": null}}, doc! {"a": 0}));
    assert!(!matches(doc! {"a": {"$ne": null}}, doc! {}));
}

#[test]
fn comparison_operators_only_match_the_same_type_bracket() {
    assert!(matches(doc! {"a": {"$gt": 5}}, doc! {"a": 6.5}));
    assert!(!matches(doc! {"a": {"$gt": 5}}, doc! {"a": "z"}));
    assert!(!matches(doc! {"a": {"$lt": "m"}}, doc! {"a": 1}));
    assert!(matches(
        doc! {"a": {"$gte": 5, "$lte": 5}},
        doc! {"a": 5i64}
    ));
    assert!(!matches(doc! {"a": {"$lt": 5}}, doc! {}));
    assert!(matches(doc! {"a": {"$gte": null}}, doc! {}));
    assert!(matches(doc! {"a": {"$gt": 2}}, doc! {"a": [1, 3]}));
    assert!(matches(
        doc! {"s": {"$gte": "b", "$lt": "c"}},
        doc! {"s": "bob"}
    ));
}

#[test]
fn eq_ne_in_nin_follow_array_and_missing_semantics() {
    assert!(matches(doc! {"a": {"$eq": 2}}, doc! {"a": [1, 2]}));
    assert!(!matches(doc! {"a": {"$ne": 2}}, doc! {"a": [1, 2]}));
    assert!(matches(doc! {"a": {"$in": [5, "x"]}}, doc! {"a": "x"}));
    assert!(matches(doc! {"a": {"$in": [null]}}, doc! {}));
    assert!(!matches(doc! {"a": {"$nin": [1, 2]}}, doc! {"a": [2, 3]}));
    assert!(matches(doc! {"a": {"$nin": [1, 2]}}, doc! {}));
    assert!(matches(
        doc! {"a": {"$in": [regex("^x", "")]}},
        doc! {"a": "xy"}
    ));
}

#[test]
fn exists_distinguishes_missing_from_null() {
    assert!(matches(doc! {"a": {"$exists": true}}, doc! {"a": null}));
    assert!(!matches(doc! {"a": {"$exists": true}}, doc! {}));
    assert!(matches(doc! {"a": {"$exists": false}}, doc! {"b": 1}));
    assert!(matches(
        doc! {"a.b": {"$exists": 1}},
        doc! {"a": [{"b": 1}]}
    ));
}

#[test]
fn logical_operators_combine_filters() {
    let d = doc! {"a": 1, "b": 2};
    assert!(matches(doc! {"$and": [{"a": 1}, {"b": 2}]}, d.clone()));
    assert!(matches(doc! {"$or": [{"a": 5}, {"b": 2}]}, d.clone()));
    assert!(!matches(doc! {"$nor": [{"a": 5}, {"b": 2}]}, d.clone()));
    assert!(matches(doc! {"a": {"$not": {"$gt": 3}}}, d.clone()));
    assert!(matches(doc! {"z": {"$not": {"$gt": 3}}}, d.clone()));
    assert!(!matches(doc! {"a": {"$not": {"$lt": 3}}}, d));
}

#[test]
fn regex_matches_strings_and_string_elements() {
    assert!(matches(
        doc! {"name": regex("^al", "i")},
        doc! {"name": "Alice"}
    ));
    assert!(matches(
        doc! {"name": {"$regex": "ice$"}},
        doc! {"name": "Alice"}
    ));
    assert!(matches(
        doc! {"name": {"$regex": "^AL", "$options": "i"}},
        doc! {"name": "Alice"}
    ));
    assert!(matches(
        doc! {"tags": {"$regex": "^b"}},
        doc! {"tags": ["a", "bee"]}
    ));
    assert!(!matches(doc! {"n": {"$regex": "1"}}, doc! {"n": 1}));
    assert!(matches(
        doc! {"name": {"$not": regex("^B", "")}},
        doc! {"name": "Alice"}
    ));
}

#[test]
fn array_operators_size_all_elem_match() {
    let d = doc! {"t": [1, 5, 9], "r": [{"k": "a", "v": 1}, {"k": "b", "v": 2}]};
    assert!(matches(doc! {"t": {"$size": 3}}, d.clone()));
    assert!(!matches(doc! {"t": {"$size": 2}}, d.clone()));
    assert!(matches(doc! {"t": {"$all": [9, 1]}}, d.clone()));
    assert!(!matches(doc! {"t": {"$all": [9, 2]}}, d.clone()));
    assert!(matches(
        doc! {"t": {"$elemMatch": {"$gt": 4, "$lt": 6}}},
        d.clone()
    ));
    assert!(!matches(
        doc! {"t": {"$elemMatch": {"$gt": 5, "$lt": 9}}},
        d.clone()
    ));
    assert!(matches(
        doc! {"r": {"$elemMatch": {"k": "b", "v": 2}}},
        d.clone()
    ));
    assert!(!matches(doc! {"r": {"$elemMatch": {"k": "b", "v": 1}}}, d));
}

#[test]
fn type_and_mod_operators_match() {
    assert!(matches(doc! {"a": {"$type": "string"}}, doc! {"a": "x"}));
    assert!(matches(doc! {"a": {"$type": "number"}}, doc! {"a": 1.5}));
    assert!(matches(doc! {"a": {"$type": 16}}, doc! {"a": 1}));
    assert!(matches(
        doc! {"a": {"$type": ["long", "array"]}},
        doc! {"a": [1]}
    ));
    assert!(!matches(doc! {"a": {"$type": "long"}}, doc! {"a": 1}));
    assert!(matches(doc! {"a": {"$mod": [4, 1]}}, doc! {"a": 9}));
}

#[test]
fn expr_evaluates_an_aggregation_expression() {
    assert!(matches(
        doc! {"$expr": {"$gt": ["$spent", "$budget"]}},
        doc! {"spent": 5, "budget": 3}
    ));
    assert!(!matches(
        doc! {"$expr": {"$gt": ["$spent", "$budget"]}},
        doc! {"spent": 1, "budget": 3}
    ));
}

#[test]
fn unknown_operators_are_bad_value() {
    assert_eq!(
        parse_error(doc! {"a": {"$foo": 1}}),
        (2, "unknown operator: $foo".to_owned())
    );
    let (code, msg) = parse_error(doc! {"$foo": 1});
    assert_eq!(code, 2);
    assert!(msg.starts_with("unknown top level operator: $foo"));
    assert_eq!(
        parse_error(doc! {"a": {"$gt": 1, "b": 1}}).1,
        "unknown operator: b"
    );
}

#[test]
fn malformed_operators_fail_like_mongod() {
    assert_eq!(
        parse_error(doc! {"a": {"$in": 1}}),
        (2, "$in needs an array".to_owned())
    );
    assert_eq!(
        parse_error(doc! {"$or": []}).1,
        "$and/$or/$nor must be a nonempty array"
    );
    assert_eq!(
        parse_error(doc! {"$and": [1]}).1,
        "$or/$and/$nor entries need to be full objects"
    );
    assert_eq!(
        parse_error(doc! {"a": {"$not": 1}}).1,
        "$not needs a regex or a document"
    );
    assert_eq!(
        parse_error(doc! {"a": {"$regex": 1}}).1,
        "$regex has to be a string"
    );
    assert_eq!(
        parse_error(doc! {"a": {"$options": "i"}}).1,
        "$options needs a $regex"
    );
    assert_eq!(
        parse_error(doc! {"a": {"$type": "nope"}}).1,
        "Unknown type name alias: nope"
    );
}
