//! A database handle: collections, and `run_command` for everything the typed API lacks.

use bson::Document;

use crate::client::{Client, Operation, Retry};
use crate::collection::Collection;
use crate::error::Result;
use crate::session::ClientSession;

/// A handle to one database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    client: Client,
    name: String,
    session: Option<ClientSession>,
}

impl Database {
    pub(crate) fn new(client: Client, name: &str) -> Database {
        Database {
            client,
            name: name.to_owned(),
            session: None,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A typed handle to collection `name`; `T` is what reads return and writes take.
    ///
    /// ```no_run
    /// # async fn demo(client: mongo_pool_client::Client) -> mongo_pool_client::Result<()> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Note { _id: String, text: String }
    /// let notes = client.database("app").collection::<Note>("notes");
    /// notes.insert_one(&Note { _id: "n1".into(), text: "hi".into() }).await?;
    /// # Ok(()) }
    /// ```
    pub fn collection<T>(&self, name: &str) -> Collection<T> {
        let collection = Collection::new(self.client.clone(), &self.name, name);
        match &self.session {
            Some(session) => collection.with_session(session),
            None => collection,
        }
    }

    /// The same database with its commands (and its collections' operations) in `session`.
    #[must_use]
    pub fn with_session(&self, session: &ClientSession) -> Database {
        Database {
            session: Some(session.clone()),
            ..self.clone()
        }
    }

    /// Runs `command` on this database (`$db` is added) and returns the reply. It is sent
    /// once, never retried; in a session (see [`Database::with_session`]) it carries the
    /// session's `lsid` (and transaction fields), otherwise none.
    ///
    /// ```no_run
    /// # async fn demo(client: mongo_pool_client::Client) -> mongo_pool_client::Result<()> {
    /// let stats = client.database("app").run_command(bson::doc! {"dbStats": 1}).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Command`] when the server answers `ok: 0`, network errors otherwise.
    pub async fn run_command(&self, command: Document) -> Result<Document> {
        let op = Operation::new(&self.name, command, Retry::No);
        self.client.inner.execute(op, self.session.as_ref()).await
    }
}
