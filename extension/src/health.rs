//! `mongo-pool health`: a client of the socket that sends `ping` through it (so the answer
//! proves both the socket and the path to Atlas) and reports whether it came back `ok`.

use std::path::Path;
use std::time::Duration;

use bson::{Document, rawdoc};
use futures_util::{SinkExt, StreamExt};
use mongo_pool_wire::OpMsgBuilder;
use mongo_pool_wire::codec::MessageCodec;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

/// Why the health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Nothing listens at the path.
    #[error("cannot connect to the socket: {0} (is mongo-pool running?)")]
    Connect(std::io::Error),
    /// The exchange failed.
    #[error("no valid reply: {0}")]
    Exchange(String),
    /// No reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The reply was an error.
    #[error("ping failed: {0}")]
    NotOk(String),
}

/// Sends `ping` through the socket at `path`.
///
/// # Errors
/// [`HealthError`] when the socket is missing, silent, or answers with an error.
pub async fn ping(path: &Path, limit: Duration) -> Result<(), HealthError> {
    let exchange = async {
        let stream = UnixStream::connect(path)
            .await
            .map_err(HealthError::Connect)?;
        let mut framed = Framed::new(stream, MessageCodec::default());
        let command = rawdoc! { "ping": 1, "$db": "admin" };
        let frame = OpMsgBuilder::new(&command)
            .request_id(1)
            .build()
            .map_err(|e| HealthError::Exchange(e.to_string()))?;
        framed
            .send(frame)
            .await
            .map_err(|e| HealthError::Exchange(e.to_string()))?;
        let reply = match framed.next().await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => return Err(HealthError::Exchange(e.to_string())),
            None => {
                return Err(HealthError::Exchange(
                    "the socket closed the connection".into(),
                ));
            }
        };
        let body = reply
            .op_msg()
            .map_err(|e| HealthError::Exchange(e.to_string()))
            .and_then(|m| {
                // Whatever answers on the socket is not trusted yet: check the reply's BSON,
                // depth included, before the (recursive) conversion.
                mongo_pool_wire::validate::document(
                    m.body,
                    mongo_pool_wire::validate::MAX_REQUEST_DEPTH,
                )
                .map_err(|e| HealthError::Exchange(e.to_string()))?;
                Document::try_from(m.body).map_err(|e| HealthError::Exchange(e.to_string()))
            })?;
        if crate::upstream::reply_ok(&body) {
            Ok(())
        } else {
            Err(HealthError::NotOk(
                body.get_str("errmsg").unwrap_or("no errmsg").to_owned(),
            ))
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| HealthError::Timeout(limit))?
}
