//! Options of the collection operations and what the writes report back.
//!
//! Every options struct is `Default` and has builder methods, so call sites read
//! `FindOptions::new().sort(doc! {"n": -1}).limit(10)`; pass `None` for the defaults.

use bson::{Bson, Document};

/// Options of [`crate::Collection::find`] and [`crate::Collection::find_one`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FindOptions {
    /// `sort`, e.g. `{"created": -1}`.
    pub sort: Option<Document>,
    /// `projection`, e.g. `{"body": 0}`.
    pub projection: Option<Document>,
    /// At most this many documents in all (ignored by `find_one`).
    pub limit: Option<i64>,
    /// Skip this many documents first.
    pub skip: Option<u64>,
    /// Documents per batch (first batch and each `getMore`).
    pub batch_size: Option<u32>,
}

impl FindOptions {
    /// The defaults: no sort, projection, limit or skip; the server's batch size.
    pub fn new() -> FindOptions {
        FindOptions::default()
    }
    /// Sets [`FindOptions::sort`].
    #[must_use]
    pub fn sort(mut self, sort: Document) -> Self {
        self.sort = Some(sort);
        self
    }
    /// Sets [`FindOptions::projection`].
    #[must_use]
    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }
    /// Sets [`FindOptions::limit`].
    #[must_use]
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Sets [`FindOptions::skip`].
    #[must_use]
    pub fn skip(mut self, skip: u64) -> Self {
        self.skip = Some(skip);
        self
    }
    /// Sets [`FindOptions::batch_size`].
    #[must_use]
    pub fn batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = Some(batch_size);
        self
    }
}

/// Options of `update_one`, `update_many` and `replace_one`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateOptions {
    /// Insert a document when none matches.
    pub upsert: bool,
}

impl UpdateOptions {
    /// No upsert.
    pub fn new() -> UpdateOptions {
        UpdateOptions::default()
    }
    /// Sets [`UpdateOptions::upsert`].
    #[must_use]
    pub fn upsert(mut self, upsert: bool) -> Self {
        self.upsert = upsert;
        self
    }
}

/// Which version of the document `find_one_and_update` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReturnDocument {
    /// The document as it was before the update (the default, as in every driver).
    #[default]
    Before,
    /// The document after the update.
    After,
}

/// Options of [`crate::Collection::find_one_and_update`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FindOneAndUpdateOptions {
    /// Which document to update when several match.
    pub sort: Option<Document>,
    /// Fields of the returned document.
    pub projection: Option<Document>,
    /// Insert a document when none matches.
    pub upsert: bool,
    /// Return the document before or after the update.
    pub return_document: ReturnDocument,
}

impl FindOneAndUpdateOptions {
    /// The defaults: the first match, before the update, no upsert.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`FindOneAndUpdateOptions::sort`].
    #[must_use]
    pub fn sort(mut self, sort: Document) -> Self {
        self.sort = Some(sort);
        self
    }
    /// Sets [`FindOneAndUpdateOptions::projection`].
    #[must_use]
    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }
    /// Sets [`FindOneAndUpdateOptions::upsert`].
    #[must_use]
    pub fn upsert(mut self, upsert: bool) -> Self {
        self.upsert = upsert;
        self
    }
    /// Sets [`FindOneAndUpdateOptions::return_document`].
    #[must_use]
    pub fn return_document(mut self, which: ReturnDocument) -> Self {
        self.return_document = which;
        self
    }
}

/// Options of [`crate::Collection::count_documents`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountOptions {
    /// Skip this many matches.
    pub skip: Option<u64>,
    /// Count at most this many.
    pub limit: Option<u64>,
}

impl CountOptions {
    /// Count every match.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`CountOptions::skip`].
    #[must_use]
    pub fn skip(mut self, skip: u64) -> Self {
        self.skip = Some(skip);
        self
    }
    /// Sets [`CountOptions::limit`].
    #[must_use]
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Options of [`crate::Collection::aggregate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AggregateOptions {
    /// Documents per batch.
    pub batch_size: Option<u32>,
}

impl AggregateOptions {
    /// The server's batch size.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`AggregateOptions::batch_size`].
    #[must_use]
    pub fn batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = Some(batch_size);
        self
    }
}

/// Options of [`crate::Collection::insert_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InsertManyOptions {
    /// Stop at the first failed document (the default) or insert every other one.
    pub ordered: bool,
}

impl Default for InsertManyOptions {
    fn default() -> Self {
        InsertManyOptions { ordered: true }
    }
}

impl InsertManyOptions {
    /// Ordered.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`InsertManyOptions::ordered`].
    #[must_use]
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }
}

/// An index for [`crate::Collection::create_index`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IndexModel {
    /// The key pattern, e.g. `{"owner": 1, "created": -1}`.
    pub keys: Document,
    /// The name; by default derived from the keys (`owner_1_created_-1`), as drivers do.
    pub name: Option<String>,
    /// A unique index.
    pub unique: bool,
}

impl IndexModel {
    /// A non-unique index on `keys` with the default name.
    pub fn new(keys: Document) -> Self {
        IndexModel {
            keys,
            name: None,
            unique: false,
        }
    }
    /// Sets [`IndexModel::name`].
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets [`IndexModel::unique`].
    #[must_use]
    pub fn unique(mut self, unique: bool) -> Self {
        self.unique = unique;
        self
    }

    /// The name the index gets.
    pub fn resolved_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.keys
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Bson::String(s) => s.clone(),
                    Bson::Int32(n) => n.to_string(),
                    Bson::Int64(n) => n.to_string(),
                    Bson::Double(f) => f.to_string(),
                    other => other.to_string(),
                };
                format!("{k}_{v}")
            })
            .collect::<Vec<_>>()
            .join("_")
    }
}

/// What `insert_one` did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InsertOneResult {
    /// The `_id` of the document (generated as an ObjectId when the document had none).
    pub inserted_id: Bson,
}

/// What `insert_many` did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InsertManyResult {
    /// The `_id` of each document, in input order.
    pub inserted_ids: Vec<Bson>,
}

/// What an update or replace did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpdateResult {
    /// Documents that matched the filter.
    pub matched_count: u64,
    /// Documents changed.
    pub modified_count: u64,
    /// The `_id` of the document an upsert inserted.
    pub upserted_id: Option<Bson>,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteResult {
    /// Documents deleted.
    pub deleted_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn index_names_follow_the_driver_convention() {
        assert_eq!(
            IndexModel::new(doc! {"owner": 1, "created": -1}).resolved_name(),
            "owner_1_created_-1"
        );
        assert_eq!(
            IndexModel::new(doc! {"a": 1})
                .name("custom")
                .resolved_name(),
            "custom"
        );
    }
}
