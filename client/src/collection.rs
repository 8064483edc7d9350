//! A typed collection handle and its read operations; the writes are in `collection/write.rs`.
//!
//! Every operation builds one command, runs it through the client (which adds the session
//! fields and retries where the specs allow) and maps the reply to a result type.

use std::marker::PhantomData;

use bson::{Bson, Document, doc};
use serde::de::DeserializeOwned;

use crate::client::{Client, Operation, Retry};
use crate::cursor::Cursor;
use crate::error::{Error, Result, int_field};
use crate::options::{AggregateOptions, CountOptions, FindOptions, IndexModel};
use crate::session::ClientSession;

mod batch;
mod write;

/// A handle to one collection whose documents are `T` (any serde type, or [`bson::Document`]);
/// cheap to clone.
pub struct Collection<T> {
    client: Client,
    db: String,
    name: String,
    session: Option<ClientSession>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            client: self.client.clone(),
            db: self.db.clone(),
            name: self.name.clone(),
            session: self.session.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("namespace", &format_args!("{}.{}", self.db, self.name))
            .field("session", &self.session.is_some())
            .finish()
    }
}

impl<T> Collection<T> {
    pub(crate) fn new(client: Client, db: &str, name: &str) -> Collection<T> {
        Collection {
            client,
            db: db.to_owned(),
            name: name.to_owned(),
            session: None,
            _type: PhantomData,
        }
    }

    /// The collection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database name.
    pub fn database_name(&self) -> &str {
        &self.db
    }

    /// The same collection with its operations in `session` (and so in its transaction, if
    /// one is started).
    #[must_use]
    pub fn with_session(&self, session: &ClientSession) -> Collection<T> {
        Collection {
            session: Some(session.clone()),
            ..self.clone()
        }
    }

    /// The same collection with documents of another type.
    pub fn clone_with_type<U>(&self) -> Collection<U> {
        Collection {
            client: self.client.clone(),
            db: self.db.clone(),
            name: self.name.clone(),
            session: self.session.clone(),
            _type: PhantomData,
        }
    }

    /// The session to run in: the bound one, or a fresh implicit one.
    /// Runs a cursor-returning read (`find`, `aggregate`) and wraps its first batch.
    async fn open_cursor<R>(&self, body: Document, batch_size: Option<u32>) -> Result<Cursor<R>> {
        let session = self.session();
        let reply = self.run(body, Retry::Read, &session).await?;
        Cursor::new(
            self.client.clone(),
            session,
            &self.db,
            &self.name,
            &reply,
            batch_size,
        )
    }

    fn session(&self) -> ClientSession {
        self.client.session_or_implicit(self.session.as_ref())
    }

    /// Runs `body` on this collection's database.
    async fn run(&self, body: Document, retry: Retry, session: &ClientSession) -> Result<Document> {
        self.client
            .execute(Operation::new(&self.db, body, retry), session)
            .await
    }

    /// Counts the documents matching `filter` (an `aggregate` with `$match` and `$group`, as
    /// drivers do).
    ///
    /// # Errors
    /// The server's error, or a network error after the one retry.
    pub async fn count_documents(
        &self,
        filter: Document,
        options: impl Into<Option<CountOptions>>,
    ) -> Result<u64> {
        let options = options.into().unwrap_or_default();
        let mut pipeline = vec![doc! {"$match": filter}];
        if let Some(skip) = options.skip {
            pipeline.push(doc! {"$skip": to_i64(skip)?});
        }
        if let Some(limit) = options.limit {
            pipeline.push(doc! {"$limit": to_i64(limit)?});
        }
        pipeline.push(doc! {"$group": {"_id": 1, "n": {"$sum": 1}}});
        let body = doc! {"aggregate": self.name.clone(), "pipeline": pipeline, "cursor": {}};
        let reply = self.run(body, Retry::Read, &self.session()).await?;
        let (_, batch) = crate::cursor::parse_batch(&reply, "firstBatch")?;
        Ok(batch
            .front()
            .and_then(|d| int_field(d, "n"))
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    /// Runs an aggregation pipeline; its results come as documents.
    ///
    /// # Errors
    /// The server's error, or a network error after the one retry.
    pub async fn aggregate(
        &self,
        pipeline: impl IntoIterator<Item = Document>,
        options: impl Into<Option<AggregateOptions>>,
    ) -> Result<Cursor<Document>> {
        let options = options.into().unwrap_or_default();
        let pipeline: Vec<Document> = pipeline.into_iter().collect();
        let mut cursor = Document::new();
        if let Some(n) = options.batch_size {
            cursor.insert("batchSize", i64::from(n));
        }
        let body = doc! {"aggregate": self.name.clone(), "pipeline": pipeline, "cursor": cursor};
        self.open_cursor(body, options.batch_size).await
    }

    /// The distinct values of `field` among the documents matching `filter`.
    ///
    /// # Errors
    /// The server's error, or a network error after the one retry.
    pub async fn distinct(&self, field: &str, filter: Document) -> Result<Vec<Bson>> {
        let body = doc! {"distinct": self.name.clone(), "key": field, "query": filter};
        let mut reply = self.run(body, Retry::Read, &self.session()).await?;
        match reply.remove("values") {
            Some(Bson::Array(values)) => Ok(values),
            _ => Err(Error::UnexpectedReply(
                "no `values` in the distinct reply".into(),
            )),
        }
    }

    /// Creates an index (nothing happens if the same index exists) and returns its name.
    ///
    /// # Errors
    /// The server's error, e.g. when an index of that name exists with other keys.
    pub async fn create_index(&self, index: IndexModel) -> Result<String> {
        let name = index.resolved_name();
        let mut spec = doc! {"key": index.keys, "name": name.clone()};
        if index.unique {
            spec.insert("unique", true);
        }
        let body = doc! {"createIndexes": self.name.clone(), "indexes": [spec]};
        self.run(body, Retry::No, &self.session()).await?;
        Ok(name)
    }
}

impl<T: DeserializeOwned> Collection<T> {
    /// Finds the documents matching `filter`; the cursor fetches further batches as it is read.
    ///
    /// ```no_run
    /// # async fn demo(notes: mongo_pool_client::Collection<bson::Document>) -> mongo_pool_client::Result<()> {
    /// use mongo_pool_client::FindOptions;
    /// let latest = notes
    ///     .find(bson::doc! {"owner": "ana"}, FindOptions::new().sort(bson::doc! {"at": -1}).limit(10))
    ///     .await?
    ///     .collect_all()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The server's error, or a network error after the one retry.
    pub async fn find(
        &self,
        filter: Document,
        options: impl Into<Option<FindOptions>>,
    ) -> Result<Cursor<T>> {
        let options = options.into().unwrap_or_default();
        let body = self.find_command(filter, &options, false)?;
        self.open_cursor(body, options.batch_size).await
    }

    /// The first document matching `filter` (after `sort`), if any.
    ///
    /// # Errors
    /// The server's error, a network error after the one retry, or a document that does not
    /// deserialize into `T`.
    pub async fn find_one(
        &self,
        filter: Document,
        options: impl Into<Option<FindOptions>>,
    ) -> Result<Option<T>> {
        let options = options.into().unwrap_or_default();
        let body = self.find_command(filter, &options, true)?;
        let reply = self.run(body, Retry::Read, &self.session()).await?;
        let (_, mut batch) = crate::cursor::parse_batch(&reply, "firstBatch")?;
        batch
            .pop_front()
            .map(|d| bson::deserialize_from_document(d).map_err(Error::from))
            .transpose()
    }

    fn find_command(&self, filter: Document, options: &FindOptions, one: bool) -> Result<Document> {
        let mut body = doc! {"find": self.name.clone(), "filter": filter};
        if let Some(sort) = &options.sort {
            body.insert("sort", sort.clone());
        }
        if let Some(projection) = &options.projection {
            body.insert("projection", projection.clone());
        }
        if let Some(skip) = options.skip {
            body.insert("skip", to_i64(skip)?);
        }
        if one {
            body.insert("limit", 1_i64);
            body.insert("singleBatch", true);
        } else {
            if let Some(limit) = options.limit {
                // A negative limit means "one batch of at most |limit|", as in the drivers.
                if limit < 0 {
                    body.insert("singleBatch", true);
                }
                body.insert("limit", limit.saturating_abs());
            }
            if let Some(n) = options.batch_size {
                body.insert("batchSize", i64::from(n));
            }
        }
        Ok(body)
    }
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidArgument(format!("{n} is too large")))
}
