//! Catalog commands: `create`, `drop`, `dropDatabase`, `createIndexes`, `listIndexes`,
//! `dropIndexes`, `listCollections` and `listDatabases`, with mongod's reply shapes.

use bson::{Bson, Document, doc};

use super::args::Args;
use super::collection::Collection;
use super::filter::Filter;
use super::index::Index;
use super::render;
use super::{CommandError, Outcome, Store, collection_name};

/// Fields any command may carry that are not options of the command itself.
const GENERIC_FIELDS: &[&str] = &[
    "$db",
    "lsid",
    "txnNumber",
    "$clusterTime",
    "$readPreference",
    "writeConcern",
    "readConcern",
    "comment",
    "maxTimeMS",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "autocommit",
    "startTransaction",
    "stmtId",
    "$audit",
    "$client",
    "mayBypassWriteBlocking",
];

fn reply(doc: Document) -> Result<Outcome, CommandError> {
    Ok(Outcome::Reply(doc))
}

fn count(n: usize) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n as i64), Bson::Int32)
}

/// `create` -> `{}`.
pub(crate) fn create(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    if store.collection(db, coll).is_some() {
        return Err(CommandError::new(
            48,
            "NamespaceExists",
            format!("Collection {db}.{coll} already exists."),
        ));
    }
    let options: Document = command
        .iter()
        .skip(1)
        .filter(|(k, _)| !GENERIC_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ns = format!("{db}.{coll}");
    store
        .databases
        .entry(db.to_owned())
        .or_default()
        .collections
        .insert(coll.to_owned(), Collection::new(ns, options));
    reply(Document::new())
}

/// `drop` -> `{nIndexesWas, ns}`; dropping a missing collection succeeds with `{}`.
pub(crate) fn drop(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let Some(database) = store.databases.get_mut(db) else {
        return reply(Document::new());
    };
    let Some(removed) = database.collections.remove(coll) else {
        return reply(Document::new());
    };
    if database.collections.is_empty() {
        store.databases.remove(db);
    }
    reply(doc! {"nIndexesWas": count(removed.indexes.len()), "ns": removed.ns})
}

/// `dropDatabase` -> `{dropped}` (`{}` if the database did not exist).
pub(crate) fn drop_database(store: &mut Store, db: &str) -> Result<Outcome, CommandError> {
    match store.databases.remove(db) {
        Some(_) => reply(doc! {"dropped": db}),
        None => reply(Document::new()),
    }
}

/// `createIndexes` -> `{createdCollectionAutomatically, numIndexesBefore, numIndexesAfter}`.
pub(crate) fn create_indexes(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("createIndexes", command);
    let specs = args.required_documents("indexes")?;
    if specs.is_empty() {
        return Err(CommandError::bad_value(
            "Must specify at least one index to create",
        ));
    }
    let requested = specs
        .into_iter()
        .map(Index::from_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let created_automatically = store.collection(db, coll).is_none();
    let collection = store.collection_or_create(db, coll);
    let before = collection.indexes.len();
    let mut indexes = collection.indexes.clone();
    for index in requested {
        if let Some(existing) = indexes.iter().find(|i| i.name() == index.name()) {
            if existing.key() != index.key() {
                return Err(CommandError::new(
                    86,
                    "IndexKeySpecsConflict",
                    format!(
                        "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {}, existing index: {}",
                        render::document(index.spec()),
                        render::document(existing.spec())
                    ),
                ));
            }
            if !existing.same_options(&index) {
                return Err(CommandError::new(
                    85,
                    "IndexOptionsConflict",
                    format!(
                        "An equivalent index already exists with the same name but different options. Requested index: {}, existing index: {}",
                        render::document(index.spec()),
                        render::document(existing.spec())
                    ),
                ));
            }
            continue;
        }
        if let Some(existing) = indexes.iter().find(|i| i.key() == index.key()) {
            return Err(CommandError::new(
                85,
                "IndexOptionsConflict",
                format!(
                    "Index already exists with a different name: {}",
                    existing.name()
                ),
            ));
        }
        for (i, doc) in collection.docs.iter().enumerate() {
            if let Some(dup) =
                index.find_duplicate(&collection.ns, doc, collection.docs[..i].iter())
            {
                return Err(dup.to_command_error());
            }
        }
        indexes.push(index);
    }
    let after = indexes.len();
    collection.indexes = indexes;
    collection.invalidate();
    if after == before {
        return reply(doc! {
            "numIndexesBefore": count(before),
            "numIndexesAfter": count(after),
            "note": "all indexes already exist",
        });
    }
    reply(doc! {
        "createdCollectionAutomatically": created_automatically,
        "numIndexesBefore": count(before),
        "numIndexesAfter": count(after),
    })
}

/// `listIndexes` -> cursor over "db.coll" of `{v, key, name, ...options}`.
pub(crate) fn list_indexes(
    store: &Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let collection = store.collection(db, coll).ok_or_else(|| {
        CommandError::namespace_not_found(format!("ns does not exist: {db}.{coll}"))
    })?;
    let documents = collection
        .indexes
        .iter()
        .map(|i| i.spec().clone())
        .collect();
    Ok(Outcome::Cursor {
        ns: format!("{db}.{coll}"),
        documents,
    })
}

fn index_not_found(errmsg: String) -> CommandError {
    CommandError::new(27, "IndexNotFound", errmsg)
}

fn cannot_drop_id() -> CommandError {
    CommandError::new(72, "InvalidOptions", "cannot drop _id index")
}

/// `dropIndexes` -> `{nIndexesWas}`.
pub(crate) fn drop_indexes(
    store: &mut Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let coll = collection_name(db, command)?;
    let args = Args::new("dropIndexes", command);
    let target = args.get("index").ok_or_else(|| args.missing("index"))?;
    let collection = store
        .collection_mut(db, coll)
        .ok_or_else(|| CommandError::namespace_not_found(format!("ns not found {db}.{coll}")))?;
    let was = collection.indexes.len();
    let names: Vec<String> = match target {
        Bson::String(star) if star == "*" => collection
            .indexes
            .iter()
            .map(|i| i.name().to_owned())
            .filter(|n| n != "_id_")
            .collect(),
        Bson::String(name) => vec![name.clone()],
        Bson::Array(items) => items
            .iter()
            .map(|item| match item {
                Bson::String(name) => Ok(name.clone()),
                other => Err(CommandError::type_mismatch(format!(
                    "dropIndexes.index argument must be a string or an array of strings, found {}",
                    super::compare::type_name(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Bson::Document(key) => {
            let index = collection
                .indexes
                .iter()
                .find(|i| i.key() == key)
                .ok_or_else(|| {
                    index_not_found(format!(
                        "can't find index with key: {}",
                        render::document(key)
                    ))
                })?;
            vec![index.name().to_owned()]
        }
        other => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'dropIndexes.index' is the wrong type '{}', expected types '[string, object, array']",
                super::compare::type_name(other)
            )));
        }
    };
    for name in &names {
        if name == "_id_" {
            return Err(cannot_drop_id());
        }
        if collection.index_named(name).is_none() {
            return Err(index_not_found(format!(
                "index not found with name [{name}]"
            )));
        }
    }
    collection
        .indexes
        .retain(|i| !names.iter().any(|n| n == i.name()));
    collection.invalidate();
    reply(doc! {"nIndexesWas": count(was)})
}

/// `listCollections` -> cursor over "db.$cmd.listCollections".
pub(crate) fn list_collections(
    store: &Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    let args = Args::new("listCollections", command);
    let filter = Filter::parse(args.document("filter")?.unwrap_or(&Document::new()))?;
    let name_only = args.bool("nameOnly", false)?;
    let mut documents = Vec::new();
    if let Some(database) = store.databases.get(db) {
        for (name, collection) in &database.collections {
            let entry = doc! {
                "name": name.clone(),
                "type": "collection",
                "options": collection.options.clone(),
                "info": {"readOnly": false, "uuid": collection.uuid.clone()},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            };
            if filter.matches(&entry) {
                documents.push(if name_only {
                    doc! {"name": name.clone(), "type": "collection"}
                } else {
                    entry
                });
            }
        }
    }
    Ok(Outcome::Cursor {
        ns: format!("{db}.$cmd.listCollections"),
        documents,
    })
}

fn size_on_disk(collections: &std::collections::BTreeMap<String, Collection>) -> i64 {
    collections
        .values()
        .map(|c| {
            let data: usize = c
                .docs
                .iter()
                .map(|d| d.to_vec().map_or(0, |b| b.len()))
                .sum();
            4096 * (1 + c.indexes.len() as i64) + data as i64
        })
        .sum()
}

/// `listDatabases` (admin only) -> `{databases, totalSize, totalSizeMb}`.
pub(crate) fn list_databases(
    store: &Store,
    db: &str,
    command: &Document,
) -> Result<Outcome, CommandError> {
    if db != "admin" {
        return Err(CommandError::new(
            13,
            "Unauthorized",
            "listDatabases may only be run against the admin database.",
        ));
    }
    let args = Args::new("listDatabases", command);
    let filter = Filter::parse(args.document("filter")?.unwrap_or(&Document::new()))?;
    let name_only = args.bool("nameOnly", false)?;
    let mut databases = Vec::new();
    let mut total: i64 = 0;
    for (name, database) in &store.databases {
        let size = size_on_disk(&database.collections);
        let entry = doc! {"name": name.clone(), "sizeOnDisk": size, "empty": database.collections.is_empty()};
        if !filter.matches(&entry) {
            continue;
        }
        total += size;
        databases.push(if name_only {
            doc! {"name": name.clone()}
        } else {
            entry
        });
    }
    if name_only {
        return reply(doc! {"databases": databases});
    }
    reply(doc! {"databases": databases, "totalSize": total, "totalSizeMb": total / (1024 * 1024)})
}
