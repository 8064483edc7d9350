//! Tests for the aggregate command and its stages.

use bson::{Bson, Document, doc};

use crate::store::{Outcome, Store};

fn store_with(docs: Vec<Document>) -> Store {
    let mut store = Store::new();
    let documents: Vec<Bson> = docs.into_iter().map(Bson::Document).collect();
    store
        .execute("db", &doc! {"insert": "c", "documents": documents})
        .unwrap();
    store
}

fn aggregate(store: &mut Store, pipeline: Vec<Document>) -> Vec<Document> {
    let pipeline: Vec<Bson> = pipeline.into_iter().map(Bson::Document).collect();
    match store.execute(
        "db",
        &doc! {"aggregate": "c", "pipeline": pipeline, "cursor": {}},
    ) {
        Ok(Outcome::Cursor { ns, documents }) => {
            assert_eq!(ns, "db.c");
            documents
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn aggregate_error(store: &mut Store, command: Document) -> (i32, String) {
    let err = store.execute("db", &command).unwrap_err();
    (err.code, err.errmsg)
}

fn sales() -> Store {
    store_with(vec![
        doc! {"_id": 1, "item": "a", "qty": 2, "price": 10.0, "tags": ["x", "y"]},
        doc! {"_id": 2, "item": "b", "qty": 1, "price": 20.0, "tags": ["y"]},
        doc! {"_id": 3, "item": "a", "qty": 5, "price": 10.0, "tags": []},
        doc! {"_id": 4, "item": "c", "qty": 3, "price": 5.0},
    ])
}

#[test]
fn match_sort_skip_limit_run_in_order() {
    let mut store = sales();
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$match": {"qty": {"$gte": 2}}},
            doc! {"$sort": {"qty": -1}},
            doc! {"$skip": 1},
            doc! {"$limit": 1},
        ],
    );
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].get_i32("_id").unwrap(), 4);
}

#[test]
fn group_with_sum_count_and_other_accumulators() {
    let mut store = sales();
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$group": {
                "_id": "$item",
                "total": {"$sum": "$qty"},
                "n": {"$sum": 1},
                "c": {"$count": {}},
                "avg": {"$avg": "$qty"},
                "min": {"$min": "$qty"},
                "max": {"$max": "$qty"},
                "first": {"$first": "$qty"},
                "last": {"$last": "$qty"},
                "ids": {"$push": "$_id"},
                "prices": {"$addToSet": "$price"},
            }},
            doc! {"$sort": {"_id": 1}},
        ],
    );
    assert_eq!(
        docs[0],
        doc! {
            "_id": "a", "total": 7, "n": 2, "c": 2, "avg": 3.5, "min": 2, "max": 5,
            "first": 2, "last": 5, "ids": [1, 3], "prices": [10.0],
        }
    );
    assert_eq!(docs.len(), 3);
}

#[test]
fn group_by_null_and_by_a_document_of_fields() {
    let mut store = sales();
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$group": {"_id": null, "revenue": {"$sum": {"$multiply": ["$qty", "$price"]}}}},
        ],
    );
    assert_eq!(docs, vec![doc! {"_id": null, "revenue": 105.0}]);
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$group": {"_id": {"item": "$item", "p": "$price"}, "n": {"$sum": 1}}},
            doc! {"$sort": {"_id.item": 1}},
        ],
    );
    assert_eq!(docs[0], doc! {"_id": {"item": "a", "p": 10.0}, "n": 2});
}

#[test]
fn count_stage_counts_or_yields_nothing() {
    let mut store = sales();
    assert_eq!(
        aggregate(&mut store, vec![doc! {"$count": "total"}]),
        vec![doc! {"total": 4}]
    );
    assert!(
        aggregate(
            &mut store,
            vec![doc! {"$match": {"qty": 99}}, doc! {"$count": "total"}]
        )
        .is_empty()
    );
}

#[test]
fn project_add_fields_and_unset_reshape_documents() {
    let mut store = sales();
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$match": {"_id": 1}},
            doc! {"$project": {"item": 1, "value": {"$multiply": ["$qty", "$price"]}}},
            doc! {"$addFields": {"meta.flag": true}},
            doc! {"$unset": "item"},
        ],
    );
    assert_eq!(
        docs,
        vec![doc! {"_id": 1, "value": 20.0, "meta": {"flag": true}}]
    );
}

#[test]
fn unwind_emits_one_document_per_element() {
    let mut store = sales();
    let docs = aggregate(
        &mut store,
        vec![doc! {"$unwind": "$tags"}, doc! {"$project": {"tags": 1}}],
    );
    assert_eq!(
        docs,
        vec![
            doc! {"_id": 1, "tags": "x"},
            doc! {"_id": 1, "tags": "y"},
            doc! {"_id": 2, "tags": "y"}
        ]
    );
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true, "includeArrayIndex": "i"}},
        ],
    );
    assert_eq!(docs.len(), 5);
    assert_eq!(docs[0].get_i64("i").unwrap(), 0);
    assert_eq!(docs[3].get("i"), Some(&Bson::Null));
}

#[test]
fn lookup_replace_root_and_sort_by_count() {
    let mut store = sales();
    store
        .execute(
            "db",
            &doc! {"insert": "items", "documents": [{"_id": "a", "name": "Apple"}]},
        )
        .unwrap();
    let docs = aggregate(
        &mut store,
        vec![
            doc! {"$match": {"_id": 1}},
            doc! {"$lookup": {"from": "items", "localField": "item", "foreignField": "_id", "as": "info"}},
            doc! {"$replaceRoot": {"newRoot": {"$arrayElemAt": ["$info", 0]}}},
        ],
    );
    assert_eq!(docs, vec![doc! {"_id": "a", "name": "Apple"}]);
    let docs = aggregate(&mut store, vec![doc! {"$sortByCount": "$item"}]);
    assert_eq!(docs[0], doc! {"_id": "a", "count": 2});
}

#[test]
fn facet_runs_sub_pipelines_on_the_same_input() {
    let mut store = sales();
    let docs = aggregate(
        &mut store,
        vec![doc! {"$facet": {
            "n": [{"$count": "n"}],
            "cheap": [{"$match": {"price": {"$lt": 10}}}, {"$project": {"_id": 1}}],
        }}],
    );
    assert_eq!(docs, vec![doc! {"n": [{"n": 4}], "cheap": [{"_id": 4}]}]);
}

#[test]
fn pipeline_errors_match_mongod() {
    let mut store = sales();
    let (code, msg) = aggregate_error(
        &mut store,
        doc! {"aggregate": "c", "pipeline": [{"$bogus": {}}], "cursor": {}},
    );
    assert_eq!(
        (code, msg.as_str()),
        (40324, "Unrecognized pipeline stage name: '$bogus'")
    );
    let (code, _) = aggregate_error(&mut store, doc! {"aggregate": "c", "pipeline": []});
    assert_eq!(code, 9);
    let (code, _) = aggregate_error(
        &mut store,
        doc! {"aggregate": "c", "pipeline": [{"$group": {"n": {"$sum": 1}}}], "cursor": {}},
    );
    assert_eq!(code, 15955);
    let (code, msg) = aggregate_error(
        &mut store,
        doc! {"aggregate": "c", "pipeline": [{"$group": {"_id": null, "n": {"$foo": 1}}}], "cursor": {}},
    );
    assert_eq!(
        (code, msg.as_str()),
        (15952, "unknown group operator '$foo'")
    );
    let (code, _) = aggregate_error(
        &mut store,
        doc! {"aggregate": "c", "pipeline": [{"$match": {}, "$limit": 1}], "cursor": {}},
    );
    assert_eq!(code, 40323);
    let (code, _) = aggregate_error(
        &mut store,
        doc! {"aggregate": "c", "pipeline": [{"$limit": 0}], "cursor": {}},
    );
    assert_eq!(code, 15958);
}

#[test]
fn pipeline_stage_errors_surface_on_empty_collections() {
    let mut store = Store::new();
    let (code, _) = aggregate_error(
        &mut store,
        doc! {"aggregate": "none", "pipeline": [{"$project": {"a": {"$nope": 1}}}], "cursor": {}},
    );
    assert_eq!(code, 168);
}

#[test]
fn collection_less_aggregate_needs_documents_stage() {
    let mut store = Store::new();
    let (code, msg) = aggregate_error(
        &mut store,
        doc! {"aggregate": 1, "pipeline": [{"$match": {}}], "cursor": {}},
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            73,
            "{aggregate: 1} is not valid for '$match'; a collection is required."
        )
    );
    let outcome = store
        .execute("db", &doc! {"aggregate": 1, "pipeline": [{"$documents": [{"x": 1}, {"x": 2}]}, {"$match": {"x": 2}}], "cursor": {}})
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Cursor {
            ns: "db.$cmd.aggregate".into(),
            documents: vec![doc! {"x": 2}]
        }
    );
}
