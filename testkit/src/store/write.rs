//! The write commands: `insert`, `update`, `delete` (batches of statements, ordered or not,
//! failures reported per statement as `writeErrors`) and `findAndModify`.

mod find_and_modify;

use bson::{Bson, Document, doc};

pub(crate) use find_and_modify::find_and_modify;

use super::args::Args;
use super::collection::{Collection, WriteFailure, with_id};
use super::filter::Filter;
use super::update::{Update, upsert_seed};
use super::{CommandError, Outcome, Store, collection_name};

fn count(n: usize) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n as i64), Bson::Int32)
}

fn batch_not_empty(len: usize) -> Result<(), CommandError> {
    if len == 0 {
        return Err(CommandError::new(
            16,
            "InvalidLength",
            "Write batch sizes must be between 1 and 100000. Got 0 operations.",
        ));
    }
    Ok(())
}

fn finish(mut reply: Document, errors: Vec<Document>) -> Outcome {
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Outcome::Reply(reply)
}

/// `insert`: `{n}` plus `writeErrors`.
pub(crate) fn insert(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("insert", command);
    let documents = args.required_documents("documents")?;
    let ordered = args.bool("ordered", true)?;
    batch_not_empty(documents.len())?;
    let collection = store.collection_or_create(db, coll);
    let mut n = 0;
    let mut errors = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let result = with_id(doc)
            .map_err(WriteFailure::from)
            .and_then(|d| collection.insert(d));
        match result {
            Ok(()) => n += 1,
            Err(failure) => {
                errors.push(failure.write_error(i));
                if ordered {
                    break;
                }
            }
        }
    }
    Ok(finish(doc! {"n": count(n)}, errors))
}

struct UpdateStatement<'a> {
    filter: &'a Document,
    update: &'a Bson,
    multi: bool,
    upsert: bool,
}

#[derive(Default)]
struct UpdateResult {
    matched: usize,
    modified: usize,
    upserted: Option<Bson>,
}

fn parse_update_statement(stmt: &Document) -> Result<UpdateStatement<'_>, CommandError> {
    let args = Args::new("update.updates", stmt);
    let filter = args.required_document("q")?;
    let update = args.get("u").ok_or_else(|| args.missing("u"))?;
    Ok(UpdateStatement {
        filter,
        update,
        multi: args.bool("multi", false)?,
        upsert: args.bool("upsert", false)?,
    })
}

/// `update`: `{n, nModified, upserted?}` plus `writeErrors`.
pub(crate) fn update(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("update", command);
    let statements = args.required_documents("updates")?;
    let ordered = args.bool("ordered", true)?;
    batch_not_empty(statements.len())?;
    let statements = statements
        .into_iter()
        .map(parse_update_statement)
        .collect::<Result<Vec<_>, _>>()?;
    let (mut n, mut modified) = (0, 0);
    let mut upserted = Vec::new();
    let mut errors = Vec::new();
    for (i, stmt) in statements.iter().enumerate() {
        match run_update(store, db, coll, stmt) {
            Ok(result) => {
                n += result.matched;
                modified += result.modified;
                if let Some(id) = result.upserted {
                    n += 1;
                    upserted.push(doc! {"index": count(i), "_id": id});
                }
            }
            Err(failure) => {
                errors.push(failure.write_error(i));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! {"n": count(n)};
    if !upserted.is_empty() {
        reply.insert("upserted", upserted);
    }
    reply.insert("nModified", count(modified));
    Ok(finish(reply, errors))
}

fn run_update(
    store: &mut Store,
    db: &str,
    coll: &str,
    stmt: &UpdateStatement<'_>,
) -> Result<UpdateResult, WriteFailure> {
    let filter = Filter::parse(stmt.filter)?;
    let update = Update::parse(stmt.update)?;
    if stmt.multi && update.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        )
        .into());
    }
    let mut result = UpdateResult::default();
    let Some(collection) = store.collection_mut(db, coll) else {
        if stmt.upsert {
            let collection = store.collection_or_create(db, coll);
            result.upserted = Some(upsert(collection, stmt.filter, &update)?);
        }
        return Ok(result);
    };
    let positions: Vec<usize> = collection
        .docs
        .iter()
        .enumerate()
        .filter(|(_, d)| filter.matches(d))
        .map(|(i, _)| i)
        .take(if stmt.multi { usize::MAX } else { 1 })
        .collect();
    if positions.is_empty() && stmt.upsert {
        result.upserted = Some(upsert(collection, stmt.filter, &update)?);
        return Ok(result);
    }
    for position in positions {
        if modify_at(collection, position, &update)?.is_some() {
            result.modified += 1;
        }
        result.matched += 1;
    }
    Ok(result)
}

/// Applies `update` to the document at `position`; returns the new document if it changed.
pub(super) fn modify_at(
    collection: &mut Collection,
    position: usize,
    update: &Update,
) -> Result<Option<Document>, WriteFailure> {
    let Some(current) = collection.docs.get(position) else {
        return Ok(None);
    };
    let mut next = current.clone();
    update.apply(&mut next, false)?;
    if &next == current {
        return Ok(None);
    }
    collection.replace(position, next.clone())?;
    Ok(Some(next))
}

/// Inserts the document an upsert creates; returns its `_id`.
pub(super) fn upsert(
    collection: &mut Collection,
    query: &Document,
    update: &Update,
) -> Result<Bson, WriteFailure> {
    let mut doc = match update {
        Update::Replacement(_) => {
            let mut seed = Document::new();
            if let Some(id) = upsert_seed(query).get("_id") {
                seed.insert("_id", id.clone());
            }
            seed
        }
        _ => upsert_seed(query),
    };
    let seeded_id = doc.get("_id").cloned();
    update.apply(&mut doc, true)?;
    if seeded_id.is_some() && doc.get("_id") != seeded_id.as_ref() {
        return Err(CommandError::new(
            66,
            "ImmutableField",
            "Performing an update on the path '_id' would modify the immutable field '_id'",
        )
        .into());
    }
    let doc = with_id(&doc)?;
    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
    collection.insert(doc)?;
    Ok(id)
}

/// `delete`: `{n}` plus `writeErrors`.
pub(crate) fn delete(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("delete", command);
    let statements = args.required_documents("deletes")?;
    let ordered = args.bool("ordered", true)?;
    batch_not_empty(statements.len())?;
    let mut parsed = Vec::new();
    for stmt in statements {
        let args = Args::new("delete.deletes", stmt);
        let q = args.required_document("q")?;
        let limit = args
            .integer("limit")?
            .ok_or_else(|| args.missing("limit"))?;
        if limit != 0 && limit != 1 {
            return Err(CommandError::failed_to_parse(format!(
                "The limit field in delete objects must be 0 or 1. Got {limit}"
            )));
        }
        parsed.push((q, limit));
    }
    let mut n = 0;
    let mut errors = Vec::new();
    for (i, (q, limit)) in parsed.into_iter().enumerate() {
        let result = delete_matching(store, db, coll, q, limit);
        match result {
            Ok(deleted) => n += deleted,
            Err(err) => {
                errors.push(WriteFailure::Command(err).write_error(i));
                if ordered {
                    break;
                }
            }
        }
    }
    Ok(finish(doc! {"n": count(n)}, errors))
}

fn delete_matching(
    store: &mut Store,
    db: &str,
    coll: &str,
    q: &Document,
    limit: i64,
) -> Result<usize, CommandError> {
    let filter = Filter::parse(q)?;
    let Some(collection) = store.collection_mut(db, coll) else {
        return Ok(0);
    };
    collection.invalidate();
    let before = collection.docs.len();
    if limit == 1 {
        if let Some(position) = collection.docs.iter().position(|d| filter.matches(d)) {
            collection.docs.remove(position);
        }
    } else {
        collection.docs.retain(|d| !filter.matches(d));
    }
    Ok(before - collection.docs.len())
}
