//! A server cursor as a [`Stream`]: it hands out the first batch, fetches further batches with
//! `getMore` when the buffer runs dry, and sends `killCursors` when dropped before the end.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bson::{Bson, Document, doc};
use futures_core::Stream;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::client::{Client, Operation, Retry};
use crate::error::{Error, Result};
use crate::session::ClientSession;

/// A `getMore` in flight: the next cursor id and batch.
type PendingBatch = BoxFuture<'static, Result<(i64, VecDeque<Document>)>>;

/// The results of `find` or `aggregate`: a [`Stream`] of `Result<T>`.
///
/// ```no_run
/// # async fn demo(notes: mongo_pool_client::Collection<bson::Document>) -> mongo_pool_client::Result<()> {
/// use futures_util::StreamExt as _;
/// let mut cursor = notes.find(bson::doc! {}, None).await?;
/// while let Some(note) = cursor.next().await {
///     println!("{:?}", note?);
/// }
/// # Ok(()) }
/// ```
///
/// Dropping it before the end kills the server cursor (in a background task on the current
/// tokio runtime).
pub struct Cursor<T> {
    client: Client,
    session: ClientSession,
    db: String,
    collection: String,
    id: i64,
    batch_size: Option<u32>,
    buffer: VecDeque<Document>,
    pending: Option<PendingBatch>,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Cursor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field(
                "namespace",
                &format_args!("{}.{}", self.db, self.collection),
            )
            .field("id", &self.id)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// `cursor.id`, `cursor.ns` and the documents of `cursor.<batch>` in a reply.
pub(crate) fn parse_batch(reply: &Document, batch: &str) -> Result<(i64, VecDeque<Document>)> {
    let cursor = reply
        .get_document("cursor")
        .map_err(|_| Error::UnexpectedReply("no `cursor` document".into()))?;
    let id = crate::error::int_field(cursor, "id")
        .ok_or_else(|| Error::UnexpectedReply("no `cursor.id`".into()))?;
    let docs = cursor
        .get_array(batch)
        .map_err(|_| Error::UnexpectedReply(format!("no `cursor.{batch}`")))?
        .iter()
        .map(|d| match d {
            Bson::Document(d) => Ok(d.clone()),
            other => Err(Error::UnexpectedReply(format!(
                "a {:?} in cursor.{batch}",
                other.element_type()
            ))),
        })
        .collect::<Result<VecDeque<_>>>()?;
    Ok((id, docs))
}

impl<T> Cursor<T> {
    /// A cursor over the first reply of `find`/`aggregate`.
    pub(crate) fn new(
        client: Client,
        session: ClientSession,
        db: &str,
        collection: &str,
        reply: &Document,
        batch_size: Option<u32>,
    ) -> Result<Cursor<T>> {
        let (id, buffer) = parse_batch(reply, "firstBatch")?;
        Ok(Cursor {
            client,
            session,
            db: db.to_owned(),
            collection: collection.to_owned(),
            id,
            batch_size,
            buffer,
            pending: None,
            _type: PhantomData,
        })
    }

    /// The server cursor id (0 once the server has no more results).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Whether every result was handed out.
    pub fn is_exhausted(&self) -> bool {
        self.id == 0 && self.buffer.is_empty()
    }

    fn get_more(&self) -> PendingBatch {
        let mut body = doc! {"getMore": self.id, "collection": self.collection.clone()};
        if let Some(n) = self.batch_size {
            body.insert("batchSize", i64::from(n));
        }
        let op = Operation::new(&self.db, body, Retry::No);
        let client = self.client.clone();
        let session = self.session.clone();
        Box::pin(async move {
            let reply = client.execute(op, &session).await?;
            parse_batch(&reply, "nextBatch")
        })
    }
}

impl<T: DeserializeOwned> Cursor<T> {
    /// Reads every remaining result into a vector.
    ///
    /// # Errors
    /// The first error of a `getMore` or of turning a document into `T`.
    pub async fn collect_all(mut self) -> Result<Vec<T>> {
        use futures_util::StreamExt as _;
        let mut out = Vec::with_capacity(self.buffer.len());
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

impl<T: DeserializeOwned> Stream for Cursor<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = self.get_mut();
        loop {
            if let Some(document) = this.buffer.pop_front() {
                return Poll::Ready(Some(
                    bson::deserialize_from_document(document).map_err(Error::from),
                ));
            }
            if this.id == 0 {
                return Poll::Ready(None);
            }
            if this.pending.is_none() {
                this.pending = Some(this.get_more());
            }
            let Some(pending) = this.pending.as_mut() else {
                return Poll::Ready(None);
            };
            match pending.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.pending = None;
                    match result {
                        Ok((id, batch)) => {
                            this.id = id;
                            this.buffer = batch;
                        }
                        Err(error) => {
                            // The cursor is unusable; the server reaps it if it still exists.
                            this.id = 0;
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                }
            }
        }
    }
}

impl<T> Drop for Cursor<T> {
    fn drop(&mut self) {
        if self.id == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                cursor = self.id,
                "no runtime to kill the cursor; the server reaps it"
            );
            return;
        };
        let body = doc! {"killCursors": self.collection.clone(), "cursors": [self.id]};
        let op = Operation::new(&self.db, body, Retry::No);
        let client = self.client.clone();
        let session = self.session.clone();
        runtime.spawn(async move {
            if let Err(error) = client.execute(op, &session).await {
                tracing::debug!(error = %error, "killCursors failed");
            }
        });
    }
}
