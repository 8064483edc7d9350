//! The in-memory document store shared by every atlas-sim member: databases of collections
//! of documents (in insertion order) with their indexes. The server hands each data command
//! body to [`Store::execute`] and wraps what comes back (`ok`, `$clusterTime`, cursor
//! batching); reply shapes, field names and error codes are those of a MongoDB 7/8 mongod.
//!
//! Commands live in `write` (insert/update/delete/findAndModify), `read`
//! (find/count/distinct), `aggregate` and `catalog` (create/drop/indexes/list*); the query
//! language in `filter`, `update`, `projection`, `sort` and `expression`.

mod aggregate;
mod args;
mod arith;
mod catalog;
mod collection;
mod compare;
mod error;
mod expression;
mod filter;
mod index;
mod path;
mod projection;
mod read;
mod regex;
mod render;
mod sort;
#[cfg(test)]
mod tests;
mod update;
mod write;

use std::collections::BTreeMap;

use bson::{Bson, Document};

use collection::Collection;
pub use error::CommandError;

/// Databases by name, each a set of collections by name.
#[derive(Clone, Debug, Default)]
pub struct Store {
    databases: BTreeMap<String, Database>,
}

#[derive(Clone, Debug, Default)]
struct Database {
    collections: BTreeMap<String, Collection>,
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A complete reply body, without `ok` (the server adds `ok: 1.0`, `$clusterTime`,
    /// `operationTime`).
    Reply(Document),
    /// A cursor-producing command (find, aggregate, listCollections, listIndexes): `ns` is
    /// "db.coll" (for listCollections "db.$cmd.listCollections"), `documents` is the whole
    /// result; the server cuts it into firstBatch/nextBatch by batchSize.
    Cursor {
        /// The cursor namespace.
        ns: String,
        /// Every result document, in order.
        documents: Vec<Document>,
    },
}

const COMMANDS: &[&str] = &[
    "insert",
    "update",
    "delete",
    "findAndModify",
    "findandmodify",
    "find",
    "count",
    "distinct",
    "aggregate",
    "create",
    "drop",
    "dropDatabase",
    "createIndexes",
    "listIndexes",
    "dropIndexes",
    "deleteIndexes",
    "listCollections",
    "listDatabases",
];

const WRITE_COMMANDS: &[&str] = &[
    "insert",
    "update",
    "delete",
    "findAndModify",
    "findandmodify",
    "create",
    "createIndexes",
    "dropIndexes",
    "deleteIndexes",
    "drop",
    "dropDatabase",
];

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one data command against database `db`. `command` is the whole command body as a
    /// driver sent it (first key = command name), with OP_MSG document sequences merged in as
    /// arrays; generic fields (`$db`, `lsid`, `txnNumber`, `writeConcern`, ...) are ignored.
    ///
    /// # Errors
    /// The error mongod would reply with: `CommandNotFound` (59) for commands not
    /// implemented, `InvalidNamespace` (73) for bad names, `TypeMismatch` (14) /
    /// `Location40414` for malformed fields, and each command's own failures. Per-statement
    /// write failures are not errors: they are `writeErrors` in the reply.
    pub fn execute(&mut self, db: &str, command: &Document) -> Result<Outcome, CommandError> {
        let name = command
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or_default();
        if !COMMANDS.contains(&name) {
            return Err(CommandError::command_not_found(name));
        }
        validate_db_name(db)?;
        match name {
            "insert" => write::insert(self, db, command),
            "update" => write::update(self, db, command),
            "delete" => write::delete(self, db, command),
            "findAndModify" | "findandmodify" => write::find_and_modify(self, db, command),
            "find" => read::find(self, db, command),
            "count" => read::count(self, db, command),
            "distinct" => read::distinct(self, db, command),
            "aggregate" => aggregate::command(self, db, command),
            "create" => catalog::create(self, db, command),
            "drop" => catalog::drop(self, db, command),
            "dropDatabase" => catalog::drop_database(self, db),
            "createIndexes" => catalog::create_indexes(self, db, command),
            "listIndexes" => catalog::list_indexes(self, db, command),
            "dropIndexes" | "deleteIndexes" => catalog::drop_indexes(self, db, command),
            "listCollections" => catalog::list_collections(self, db, command),
            "listDatabases" => catalog::list_databases(self, db, command),
            other => Err(CommandError::command_not_found(other)),
        }
    }

    /// True for commands that modify data (insert, update, delete, findAndModify, create,
    /// createIndexes, dropIndexes, drop, dropDatabase).
    pub fn is_write(command_name: &str) -> bool {
        WRITE_COMMANDS.contains(&command_name)
    }

    /// Names of all commands [`Store::execute`] implements.
    pub fn commands() -> &'static [&'static str] {
        COMMANDS
    }

    fn collection(&self, db: &str, coll: &str) -> Option<&Collection> {
        self.databases.get(db)?.collections.get(coll)
    }

    fn collection_mut(&mut self, db: &str, coll: &str) -> Option<&mut Collection> {
        self.databases.get_mut(db)?.collections.get_mut(coll)
    }

    /// The collection, created implicitly (as a write to a missing collection does).
    fn collection_or_create(&mut self, db: &str, coll: &str) -> &mut Collection {
        self.databases
            .entry(db.to_owned())
            .or_default()
            .collections
            .entry(coll.to_owned())
            .or_insert_with(|| Collection::new(format!("{db}.{coll}"), Document::new()))
    }

    /// The documents of a collection (empty if it does not exist).
    fn documents(&self, db: &str, coll: &str) -> &[Document] {
        self.collection(db, coll).map_or(&[], |c| c.docs.as_slice())
    }

    /// The documents of collection `db.coll` in insertion order (empty if it does not exist),
    /// for the server's change streams to compare before and after a write.
    pub fn collection_documents(&self, db: &str, coll: &str) -> &[Document] {
        self.documents(db, coll)
    }
}

/// A parsed query filter, for matching documents outside a command (a change stream's
/// `$match` stages).
#[derive(Clone, Debug)]
pub struct Matcher(filter::Filter);

impl Matcher {
    /// Parses a filter document.
    ///
    /// # Errors
    /// `BadValue` (2) for unknown or malformed operators, as mongod.
    pub fn parse(filter: &Document) -> Result<Self, CommandError> {
        filter::Filter::parse(filter).map(Matcher)
    }

    /// True if `doc` satisfies the filter.
    pub fn matches(&self, doc: &Document) -> bool {
        self.0.matches(doc)
    }
}

/// Checks a database name as mongod does.
///
/// # Errors
/// `InvalidNamespace` (73).
fn validate_db_name(db: &str) -> Result<(), CommandError> {
    let bad = db.is_empty()
        || db.len() >= 64
        || db
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'));
    if bad {
        return Err(CommandError::invalid_namespace(format!(
            "Invalid database name: '{db}'"
        )));
    }
    Ok(())
}

/// The collection named by the command's first field, validated.
///
/// # Errors
/// `InvalidNamespace` (73) if it is not a string or not a valid collection name.
fn collection_name<'a>(db: &str, command: &'a Document) -> Result<&'a str, CommandError> {
    let (_, value) = command
        .iter()
        .next()
        .ok_or_else(|| CommandError::command_not_found(""))?;
    let Bson::String(name) = value else {
        return Err(CommandError::invalid_namespace(format!(
            "collection name has invalid type {}",
            compare::type_name(value)
        )));
    };
    let bad = name.is_empty() || name.contains('$') || name.contains('\0') || name.starts_with('.');
    if bad {
        return Err(CommandError::invalid_namespace(format!(
            "Invalid namespace specified '{db}.{name}'"
        )));
    }
    Ok(name.as_str())
}
