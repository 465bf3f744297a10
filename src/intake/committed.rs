//! After a failed attempt at a batch whose outcome is unknown (the answer
//! to its COMMIT lost with the connection): whether an earlier attempt
//! committed it. See `ARCHITECTURE.md`, "Appends are idempotent".

use std::sync::Arc;

use crate::event::Event;
use crate::store::{Cursor, Origin, Store, StoreError};

/// After a failed attempt at this batch: the events of a live queue an
/// earlier attempt may have committed before its connection broke. The
/// queue position is not unique in the inbox (the cursor, written in the
/// same statement, is the check), so they are looked up before the batch
/// is written again: nothing but this batch stores this queue's ids (the
/// sift has already dropped an id stored before). One transaction wrote
/// the batch, so an earlier attempt stored all of its events or none:
/// `Ok(Some(ids))`, each event's row, when all are there; `Ok(None)` when
/// they are not, or the batch is not a live queue's.
pub(super) async fn committed_before(
    store: &Arc<dyn Store>,
    instance: &str,
    origin: &Origin,
    events: &[Event],
    cursor: Option<&Cursor>,
) -> Result<Option<Vec<i64>>, StoreError> {
    if events.is_empty() || !cursor.is_some_and(|c| origin.is_queue(&c.queue_id)) {
        return Ok(None);
    }
    let event_ids: Vec<i64> = events.iter().map(Event::id).collect();
    let found: std::collections::HashMap<i64, i64> = store
        .inbox_ids(instance, origin, &event_ids)
        .await?
        .into_iter()
        .collect();
    Ok(event_ids.iter().map(|e| found.get(e).copied()).collect())
}
