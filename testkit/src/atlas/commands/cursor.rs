//! `getMore` and `killCursors` against the cursors a member owns.

use bson::{Bson, Document, doc};

use super::{collection_ns, positive};
use crate::atlas::change_stream;
use crate::atlas::cluster::{Cluster, lock};
use crate::atlas::reply::{CommandReply, error};

pub(super) async fn get_more(
    cluster: &Cluster,
    member: usize,
    db: &str,
    command: &Document,
) -> CommandReply {
    let id = match command.get("getMore") {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        _ => {
            return error(
                14,
                "TypeMismatch",
                "getMore must be a 64-bit cursor id",
                &[],
            );
        }
    };
    let ns = collection_ns(db, command, "collection");
    let size = positive(command.get("batchSize")).unwrap_or(0);
    let stream = lock(&cluster.members[member].cursors).stream(id);
    if let Some(stream) = stream {
        if stream.ns != ns {
            return error(
                13,
                "Unauthorized",
                &format!(
                    "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}",
                    stream.ns
                ),
                &[],
            );
        }
        // For a tailable awaitData cursor, maxTimeMS is how long getMore waits for data.
        let await_time = positive(command.get("maxTimeMS"))
            .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)));
        return change_stream::get_more(cluster, member, id, stream, size, await_time).await;
    }
    let mut cursors = lock(&cluster.members[member].cursors);
    match cursors.get_more(id, &ns, size) {
        None => error(
            43,
            "CursorNotFound",
            &format!("cursor id {id} not found"),
            &[],
        ),
        Some(Err(owner)) => error(
            13,
            "Unauthorized",
            &format!(
                "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {owner}"
            ),
            &[],
        ),
        Some(Ok((batch, next_id))) => CommandReply::ok(doc! {
            "cursor": { "nextBatch": batch, "id": next_id, "ns": ns },
        }),
    }
}

pub(super) fn kill_cursors(cluster: &Cluster, member: usize, command: &Document) -> CommandReply {
    let ids: Vec<i64> = match command.get_array("cursors") {
        Ok(ids) => ids
            .iter()
            .filter_map(|id| match id {
                Bson::Int64(v) => Some(*v),
                Bson::Int32(v) => Some(i64::from(*v)),
                _ => None,
            })
            .collect(),
        Err(_) => {
            return error(
                14,
                "TypeMismatch",
                "killCursors.cursors must be an array",
                &[],
            );
        }
    };
    let mut cursors = lock(&cluster.members[member].cursors);
    let (killed, not_found): (Vec<i64>, Vec<i64>) =
        ids.into_iter().partition(|id| cursors.kill(*id));
    CommandReply::ok(doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    })
}
