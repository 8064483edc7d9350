//! `findAndModify`: find one document (sorted), then remove it or update it (or upsert),
//! replying `{lastErrorObject: {n, updatedExisting, upserted?}, value}`. Failures here are
//! top-level command errors, not write errors.

use bson::{Bson, Document, doc};

use super::{modify_at, upsert};
use crate::store::args::Args;
use crate::store::filter::Filter;
use crate::store::projection::{self, Projection};
use crate::store::sort::SortSpec;
use crate::store::update::Update;
use crate::store::{CommandError, Outcome, Store, collection_name};

struct Request {
    filter: Filter,
    query: Document,
    sort: SortSpec,
    remove: bool,
    update: Option<Update>,
    return_new: bool,
    upsert: bool,
    fields: Option<Projection>,
}

fn parse(command: &Document) -> Result<Request, CommandError> {
    let args = Args::new("findAndModify", command);
    let query = args.document("query")?.cloned().unwrap_or_default();
    let remove = args.bool("remove", false)?;
    let return_new = args.bool("new", false)?;
    let upsert = args.bool("upsert", false)?;
    let update = match args.get("update") {
        None | Some(Bson::Null) => None,
        Some(u) => Some(Update::parse(u)?),
    };
    match (remove, &update) {
        (false, None) => {
            return Err(CommandError::failed_to_parse(
                "Either an update or remove=true must be specified",
            ));
        }
        (true, Some(_)) => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both an update and remove=true",
            ));
        }
        (true, None) if upsert => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both upsert=true and remove=true ",
            ));
        }
        (true, None) if return_new => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document",
            ));
        }
        _ => {}
    }
    let fields = match args.document("fields")? {
        Some(spec) => projection::parse_find(spec)?,
        None => None,
    };
    Ok(Request {
        filter: Filter::parse(&query)?,
        query,
        sort: SortSpec::parse(args.document("sort")?.unwrap_or(&Document::new()))?,
        remove,
        update,
        return_new,
        upsert,
        fields,
    })
}

fn project(fields: Option<&Projection>, doc: Option<Document>) -> Result<Bson, CommandError> {
    match (doc, fields) {
        (None, _) => Ok(Bson::Null),
        (Some(d), None) => Ok(Bson::Document(d)),
        (Some(d), Some(p)) => Ok(Bson::Document(p.apply(&d)?)),
    }
}

/// `findAndModify`.
pub(crate) fn find_and_modify(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let request = parse(command)?;
    let target = store.collection(db, coll).and_then(|c| {
        let mut matching: Vec<(usize, Document)> = c
            .docs
            .iter()
            .enumerate()
            .filter(|(_, d)| request.filter.matches(d))
            .map(|(i, d)| (i, d.clone()))
            .collect();
        request.sort.sort_with(&mut matching, |(_, d)| d);
        matching.into_iter().next()
    });
    let fields = request.fields.as_ref();
    if request.remove {
        let Some((position, old)) = target else {
            return Ok(reply(doc! {"n": 0}, Bson::Null));
        };
        if let Some(c) = store.collection_mut(db, coll) {
            c.invalidate();
            c.docs.remove(position);
        }
        return Ok(reply(doc! {"n": 1}, project(fields, Some(old))?));
    }
    let Some(update) = request.update.as_ref() else {
        return Ok(reply(doc! {"n": 0}, Bson::Null));
    };
    match target {
        Some((position, old)) => {
            let collection = store.collection_or_create(db, coll);
            let changed =
                modify_at(collection, position, update).map_err(|f| f.into_command_error())?;
            let value = if request.return_new {
                Some(changed.unwrap_or_else(|| old.clone()))
            } else {
                Some(old)
            };
            Ok(reply(
                doc! {"n": 1, "updatedExisting": true},
                project(fields, value)?,
            ))
        }
        None if request.upsert => {
            let collection = store.collection_or_create(db, coll);
            let id =
                upsert(collection, &request.query, update).map_err(|f| f.into_command_error())?;
            let inserted = collection.docs.last().cloned();
            let value = if request.return_new {
                project(fields, inserted)?
            } else {
                Bson::Null
            };
            Ok(reply(
                doc! {"n": 1, "updatedExisting": false, "upserted": id},
                value,
            ))
        }
        None => Ok(reply(doc! {"n": 0, "updatedExisting": false}, Bson::Null)),
    }
}

fn reply(last_error: Document, value: Bson) -> Outcome {
    Outcome::Reply(doc! {"lastErrorObject": last_error, "value": value})
}
