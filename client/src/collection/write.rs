//! The write operations of [`Collection`]. Single-document writes are retryable writes
//! (`txnNumber`, one retry); `update_many` and `delete_many` are not, as the spec says.

use bson::{Bson, Document, RawDocumentBuf, doc, oid::ObjectId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Collection, batch};
use crate::client::{Operation, Retry};
use crate::error::{Error, Result, WriteFailure, int_field};
use crate::options::{
    DeleteResult, FindOneAndUpdateOptions, InsertManyOptions, InsertManyResult, InsertOneResult,
    ReturnDocument, UpdateOptions, UpdateResult,
};

/// `document` as BSON with an `_id` first (a new ObjectId when it had none), and that `_id`.
fn with_id<T: Serialize>(document: &T) -> Result<(Bson, RawDocumentBuf)> {
    let mut doc = bson::serialize_to_document(document)?;
    let id = match doc.remove("_id") {
        Some(id) => id,
        None => Bson::ObjectId(ObjectId::new()),
    };
    let mut out = doc! {"_id": id.clone()};
    out.extend(doc);
    Ok((id, RawDocumentBuf::try_from(&out)?))
}

fn count(reply: &Document, key: &str) -> u64 {
    int_field(reply, key)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

fn check_update(update: &Document) -> Result<()> {
    match update.keys().next() {
        Some(key) if key.starts_with('$') => Ok(()),
        _ => Err(Error::InvalidArgument(
            "an update document needs update operators such as $set (use replace_one to \
             replace a whole document)"
                .into(),
        )),
    }
}

fn check_replacement(replacement: &Document) -> Result<()> {
    if replacement.keys().any(|k| k.starts_with('$')) {
        return Err(Error::InvalidArgument(
            "a replacement document may not contain update operators (use update_one)".into(),
        ));
    }
    Ok(())
}

impl<T> Collection<T> {
    async fn update(
        &self,
        filter: Document,
        update: Document,
        multi: bool,
        options: Option<UpdateOptions>,
    ) -> Result<UpdateResult> {
        let options = options.unwrap_or_default();
        let statement = doc! {"q": filter, "u": update, "multi": multi, "upsert": options.upsert};
        let body = doc! {"update": self.name.clone(), "updates": [statement], "ordered": true};
        let retry = if multi { Retry::No } else { Retry::Write };
        let reply = self.run(body, retry, &self.session()).await?;
        let upserted_id = reply
            .get_array("upserted")
            .ok()
            .and_then(|u| u.first())
            .and_then(Bson::as_document)
            .and_then(|u| u.get("_id").cloned());
        let n = count(&reply, "n");
        Ok(UpdateResult {
            matched_count: n.saturating_sub(u64::from(upserted_id.is_some())),
            modified_count: count(&reply, "nModified"),
            upserted_id,
        })
    }

    async fn delete(&self, filter: Document, limit: i32) -> Result<DeleteResult> {
        let statement = doc! {"q": filter, "limit": limit};
        let body = doc! {"delete": self.name.clone(), "deletes": [statement], "ordered": true};
        let retry = if limit == 1 { Retry::Write } else { Retry::No };
        let reply = self.run(body, retry, &self.session()).await?;
        Ok(DeleteResult {
            deleted_count: count(&reply, "n"),
        })
    }

    /// Applies `update` (operators such as `$set`) to the first document matching `filter`.
    /// A retryable write.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an update without operators; the server's error.
    pub async fn update_one(
        &self,
        filter: Document,
        update: Document,
        options: impl Into<Option<UpdateOptions>>,
    ) -> Result<UpdateResult> {
        check_update(&update)?;
        self.update(filter, update, false, options.into()).await
    }

    /// Applies `update` to every document matching `filter`. Not retryable.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an update without operators; the server's error.
    pub async fn update_many(
        &self,
        filter: Document,
        update: Document,
        options: impl Into<Option<UpdateOptions>>,
    ) -> Result<UpdateResult> {
        check_update(&update)?;
        self.update(filter, update, true, options.into()).await
    }

    /// Deletes the first document matching `filter`. A retryable write.
    ///
    /// # Errors
    /// The server's error, or a network error after the one retry.
    pub async fn delete_one(&self, filter: Document) -> Result<DeleteResult> {
        self.delete(filter, 1).await
    }

    /// Deletes every document matching `filter`. Not retryable.
    ///
    /// # Errors
    /// The server's error, or a network error.
    pub async fn delete_many(&self, filter: Document) -> Result<DeleteResult> {
        self.delete(filter, 0).await
    }
}

impl<T: Serialize> Collection<T> {
    /// Inserts `document` (an ObjectId `_id` is added when it has none). A retryable write.
    ///
    /// # Errors
    /// [`Error::Write`] for a duplicate key and other per-document failures; the server's
    /// error; a network error after the one retry.
    pub async fn insert_one(&self, document: &T) -> Result<InsertOneResult> {
        let (id, raw) = with_id(document)?;
        let body = doc! {"insert": self.name.clone(), "ordered": true};
        let mut op = Operation::new(&self.db, body, Retry::Write);
        op.sequence = Some(("documents", vec![raw]));
        self.client.execute(op, &self.session()).await?;
        Ok(InsertOneResult { inserted_id: id })
    }

    /// Inserts `documents`, in as many `insert` commands as mongo-pool's `maxWriteBatchSize`
    /// and `maxMessageSizeBytes` require; each is a retryable write. Ordered (the default)
    /// stops at the first failure; unordered inserts every other document and reports all
    /// failures together, with indexes into `documents`.
    ///
    /// # Errors
    /// [`Error::Write`] with the failed documents; [`Error::InvalidArgument`] when a document
    /// is over `maxBsonObjectSize`; the server's error.
    pub async fn insert_many<I>(
        &self,
        documents: I,
        options: impl Into<Option<InsertManyOptions>>,
    ) -> Result<InsertManyResult>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        use std::borrow::Borrow as _;
        let ordered = options.into().unwrap_or_default().ordered;
        let (ids, raws): (Vec<Bson>, Vec<RawDocumentBuf>) = documents
            .into_iter()
            .map(|d| with_id(d.borrow()))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let sizes: Vec<usize> = raws.iter().map(|r| r.as_bytes().len()).collect();
        let batches = batch::split(&sizes, self.client.limits())?;
        let session = self.session();
        let mut failures: Option<WriteFailure> = None;
        for range in batches {
            let body = doc! {"insert": self.name.clone(), "ordered": ordered};
            let mut op = Operation::new(&self.db, body, Retry::Write);
            op.index_offset = range.start;
            op.sequence = Some(("documents", raws[range].to_vec()));
            match self.client.execute(op, &session).await {
                Ok(_) => {}
                Err(Error::Write(failure)) if !ordered => match failures.as_mut() {
                    None => failures = Some(*failure),
                    Some(all) => {
                        all.write_errors.extend(failure.write_errors);
                        all.n += failure.n;
                        all.write_concern_error = all
                            .write_concern_error
                            .take()
                            .or(failure.write_concern_error);
                    }
                },
                Err(error) => return Err(error),
            }
        }
        match failures {
            Some(failure) => Err(failure.into()),
            None => Ok(InsertManyResult { inserted_ids: ids }),
        }
    }

    /// Replaces the first document matching `filter` with `replacement`. A retryable write;
    /// with `upsert` it inserts when nothing matches.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the replacement holds update operators; the server's
    /// error.
    pub async fn replace_one(
        &self,
        filter: Document,
        replacement: &T,
        options: impl Into<Option<UpdateOptions>>,
    ) -> Result<UpdateResult> {
        let replacement = bson::serialize_to_document(replacement)?;
        check_replacement(&replacement)?;
        self.update(filter, replacement, false, options.into())
            .await
    }
}

impl<T: DeserializeOwned> Collection<T> {
    /// Updates the first document matching `filter` and returns it (before the update by
    /// default; see [`ReturnDocument`]), or `None` when nothing matched. A retryable write.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an update without operators; the server's error.
    pub async fn find_one_and_update(
        &self,
        filter: Document,
        update: Document,
        options: impl Into<Option<FindOneAndUpdateOptions>>,
    ) -> Result<Option<T>> {
        check_update(&update)?;
        let options = options.into().unwrap_or_default();
        let mut body = doc! {
            "findAndModify": self.name.clone(), "query": filter, "update": update,
            "new": options.return_document == ReturnDocument::After, "upsert": options.upsert,
        };
        if let Some(sort) = options.sort {
            body.insert("sort", sort);
        }
        if let Some(projection) = options.projection {
            body.insert("fields", projection);
        }
        let mut reply = self.run(body, Retry::Write, &self.session()).await?;
        match reply.remove("value") {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Document(d)) => Ok(Some(bson::deserialize_from_document(d)?)),
            Some(other) => Err(Error::UnexpectedReply(format!(
                "findAndModify value is a {:?}",
                other.element_type()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_missing_id_is_generated_and_put_first() {
        let (id, raw) = with_id(&doc! {"a": 1}).unwrap();
        assert!(matches!(id, Bson::ObjectId(_)));
        let doc = Document::try_from(raw).unwrap();
        assert_eq!(doc.keys().next().map(String::as_str), Some("_id"));
        assert_eq!(doc.get("_id"), Some(&id));
    }

    #[test]
    fn an_existing_id_is_kept() {
        let (id, _) = with_id(&doc! {"a": 1, "_id": "x"}).unwrap();
        assert_eq!(id, Bson::String("x".into()));
    }

    #[test]
    fn updates_need_operators_and_replacements_must_not_have_them() {
        assert!(check_update(&doc! {"$set": {"a": 1}}).is_ok());
        assert!(check_update(&doc! {"a": 1}).is_err());
        assert!(check_update(&doc! {}).is_err());
        assert!(check_replacement(&doc! {"a": 1}).is_ok());
        assert!(check_replacement(&doc! {"$set": {"a": 1}}).is_err());
    }
}
