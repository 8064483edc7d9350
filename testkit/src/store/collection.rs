//! One collection: its documents in insertion order, its indexes (always `_id_` first), the
//! options it was created with and its UUID. Every write goes through here so unique indexes
//! are enforced on insert, update, upsert and findAndModify alike.

use std::collections::HashSet;

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};

use super::CommandError;
use super::index::{DuplicateKey, Index};

/// Why one write statement failed.
#[derive(Clone, Debug)]
pub(crate) enum WriteFailure {
    Command(CommandError),
    Duplicate(Box<DuplicateKey>),
}

impl From<CommandError> for WriteFailure {
    fn from(err: CommandError) -> Self {
        Self::Command(err)
    }
}

impl WriteFailure {
    /// The `writeErrors` entry mongod reports for statement `index`.
    pub(crate) fn write_error(&self, index: usize) -> Document {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        match self {
            Self::Command(err) => {
                doc! {"index": index, "code": err.code, "errmsg": err.errmsg.clone()}
            }
            Self::Duplicate(dup) => doc! {
                "index": index,
                "code": 11000,
                "keyPattern": dup.key_pattern.clone(),
                "keyValue": dup.key_value.clone(),
                "errmsg": dup.errmsg.clone(),
            },
        }
    }

    /// The failure as a top-level command error.
    pub(crate) fn into_command_error(self) -> CommandError {
        match self {
            Self::Command(err) => err,
            Self::Duplicate(dup) => dup.to_command_error(),
        }
    }
}

/// A collection's data and catalog entry.
#[derive(Clone, Debug)]
pub(crate) struct Collection {
    pub(crate) ns: String,
    pub(crate) docs: Vec<Document>,
    pub(crate) indexes: Vec<Index>,
    pub(crate) options: Document,
    pub(crate) uuid: Bson,
    /// For each unique index (by position), the canonical keys of every document, so inserts
    /// check uniqueness in O(1). `None` until first needed and after any change other than an
    /// insert; rebuilt lazily.
    unique_keys: Option<Vec<HashSet<Vec<u8>>>>,
}

impl Collection {
    pub(crate) fn new(ns: String, options: Document) -> Self {
        let uuid = Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: rand::random::<[u8; 16]>().to_vec(),
        });
        Self {
            ns,
            docs: Vec::new(),
            indexes: vec![Index::id_index()],
            options,
            uuid,
            unique_keys: None,
        }
    }

    /// The first unique-index violation `doc` would cause, ignoring the document at `skip`.
    pub(crate) fn duplicate(&self, doc: &Document, skip: Option<usize>) -> Option<DuplicateKey> {
        let others = || {
            self.docs
                .iter()
                .enumerate()
                .filter(move |(i, _)| Some(*i) != skip)
                .map(|(_, d)| d)
        };
        self.indexes
            .iter()
            .find_map(|index| index.find_duplicate(&self.ns, doc, others()))
    }

    /// Appends `doc` (which already has its `_id` first).
    ///
    /// # Errors
    /// A duplicate key on any unique index.
    pub(crate) fn insert(&mut self, doc: Document) -> Result<(), WriteFailure> {
        let mut sets = match self.unique_keys.take() {
            Some(sets) if sets.len() == self.indexes.len() => sets,
            _ => self.build_unique_keys(),
        };
        let mut added: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, index) in self.indexes.iter().enumerate() {
            let Some(keys) = index.unique_keys(&doc) else {
                continue;
            };
            for (key, tuple) in keys {
                if sets[i].contains(&key) {
                    for (j, k) in added {
                        sets[j].remove(&k);
                    }
                    self.unique_keys = Some(sets);
                    return Err(WriteFailure::Duplicate(Box::new(
                        index.duplicate_error(&self.ns, &tuple),
                    )));
                }
                if sets[i].insert(key.clone()) {
                    added.push((i, key));
                }
            }
        }
        self.unique_keys = Some(sets);
        self.docs.push(doc);
        Ok(())
    }

    fn build_unique_keys(&self) -> Vec<HashSet<Vec<u8>>> {
        self.indexes
            .iter()
            .map(|index| {
                self.docs
                    .iter()
                    .filter_map(|d| index.unique_keys(d))
                    .flatten()
                    .map(|(key, _)| key)
                    .collect()
            })
            .collect()
    }

    /// Forgets the unique-key cache: call after any change to `docs` or `indexes` other than
    /// [`Collection::insert`].
    pub(crate) fn invalidate(&mut self) {
        self.unique_keys = None;
    }

    /// Replaces the document at `position`.
    ///
    /// # Errors
    /// A duplicate key on any unique index.
    pub(crate) fn replace(&mut self, position: usize, doc: Document) -> Result<(), WriteFailure> {
        if let Some(dup) = self.duplicate(&doc, Some(position)) {
            return Err(WriteFailure::Duplicate(Box::new(dup)));
        }
        self.unique_keys = None;
        if let Some(slot) = self.docs.get_mut(position) {
            *slot = doc;
        }
        Ok(())
    }

    pub(crate) fn index_named(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|i| i.name() == name)
    }
}

/// Gives `doc` an `_id` (a new ObjectId) if it has none, and moves `_id` first.
///
/// # Errors
/// `InvalidIdField` (53) for an array or regex `_id`.
pub(crate) fn with_id(doc: &Document) -> Result<Document, CommandError> {
    let id = match doc.get("_id") {
        Some(Bson::Array(_)) => {
            return Err(CommandError::new(
                53,
                "InvalidIdField",
                "The '_id' value cannot be of type array",
            ));
        }
        Some(Bson::RegularExpression(_)) => {
            return Err(CommandError::new(
                53,
                "InvalidIdField",
                "can't use a regex for _id",
            ));
        }
        Some(id) => id.clone(),
        None => Bson::ObjectId(bson::oid::ObjectId::new()),
    };
    let mut out = doc! {"_id": id};
    for (k, v) in doc {
        if k != "_id" {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}
