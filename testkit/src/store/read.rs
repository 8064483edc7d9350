//! The read commands `find`, `count` and `distinct`. `find` returns the whole result (after
//! filter, sort, skip, limit and projection) for the server to batch into a cursor.

use bson::{Bson, Document, doc};

use super::args::Args;
use super::compare::{compare, equal};
use super::filter::Filter;
use super::path::query_values;
use super::projection;
use super::sort::SortSpec;
use super::{CommandError, Outcome, Store, collection_name};

/// `find` -> cursor over "db.coll".
pub(crate) fn find(store: &Store, db: &str, command: &Document) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("find", command);
    let filter = Filter::parse(args.document("filter")?.unwrap_or(&Document::new()))?;
    let sort = SortSpec::parse(args.document("sort")?.unwrap_or(&Document::new()))?;
    let projection = match args.document("projection")? {
        Some(spec) => projection::parse_find(spec)?,
        None => None,
    };
    let skip = args.non_negative("skip")?.unwrap_or(0);
    // Drivers send a negative limit as `limit: n, singleBatch: true`; accept either form.
    let limit = args.integer("limit")?.map(i64::unsigned_abs).unwrap_or(0);
    args.integer("batchSize")?;
    let mut documents: Vec<Document> = store
        .documents(db, coll)
        .iter()
        .filter(|d| filter.matches(d))
        .cloned()
        .collect();
    sort.sort(&mut documents);
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let limit = if limit == 0 {
        usize::MAX
    } else {
        usize::try_from(limit).unwrap_or(usize::MAX)
    };
    let documents = documents
        .into_iter()
        .skip(skip)
        .take(limit)
        .map(|d| match &projection {
            Some(p) => p.apply(&d),
            None => Ok(d),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome::Cursor {
        ns: format!("{db}.{coll}"),
        documents,
    })
}

/// `count` -> `{n}`.
pub(crate) fn count(store: &Store, db: &str, command: &Document) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("count", command);
    let filter = Filter::parse(args.document("query")?.unwrap_or(&Document::new()))?;
    let skip = args.non_negative("skip")?.unwrap_or(0);
    let limit = args.integer("limit")?.map(i64::unsigned_abs).unwrap_or(0);
    let matching = store
        .documents(db, coll)
        .iter()
        .filter(|d| filter.matches(d))
        .count() as u64;
    let mut n = matching.saturating_sub(skip.unsigned_abs());
    if limit > 0 {
        n = n.min(limit);
    }
    let n = i32::try_from(n).map_or(
        Bson::Int64(i64::try_from(n).unwrap_or(i64::MAX)),
        Bson::Int32,
    );
    Ok(Outcome::Reply(doc! {"n": n}))
}

/// `distinct` -> `{values}`, array fields contributing each element, sorted in BSON order.
pub(crate) fn distinct(
    store: &Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("distinct", command);
    let key = args.string("key")?.ok_or_else(|| args.missing("key"))?;
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(CommandError::location(
            15998,
            "FieldPath field names may not be empty strings.",
        ));
    }
    let filter = Filter::parse(args.document("query")?.unwrap_or(&Document::new()))?;
    let mut values: Vec<Bson> = Vec::new();
    for doc in store
        .documents(db, coll)
        .iter()
        .filter(|d| filter.matches(d))
    {
        for value in query_values(doc, key).into_iter().flatten() {
            let items: Vec<&Bson> = match value {
                Bson::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in items {
                if !values.iter().any(|v| equal(v, item)) {
                    values.push(item.clone());
                }
            }
        }
    }
    values.sort_by(compare);
    Ok(Outcome::Reply(doc! {"values": values}))
}
