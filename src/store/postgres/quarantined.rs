//! The rows of a page's elements in quarantine (what Zulip sent that is no
//! event as it came), written in the transaction of the batch they came
//! with (`inbox.rs`, `append_in_tx`).

use std::borrow::Cow;

use crate::event::Quarantined;
use crate::store::error::StoreError;
use crate::store::storable;

/// Writes `quarantined` of `instance` and `origin` on `tx`.
pub(super) async fn write(
    tx: &mut sqlx::PgConnection,
    instance: &str,
    origin: &str,
    quarantined: &[Quarantined],
) -> Result<(), StoreError> {
    let detail: Vec<Cow<'_, str>> = quarantined
        .iter()
        .map(|q| storable::text(&q.detail))
        .collect();
    let raw: Vec<Cow<'_, str>> = quarantined.iter().map(|q| storable::text(&q.raw)).collect();
    sqlx::query(
        "INSERT INTO event_listeners_quarantine
           (instance, queue_id, event_id, kind, reason, raw, raw_bytes)
         SELECT $1, $2, t.event_id, t.kind, t.reason, t.raw, t.raw_bytes
         FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::text[], $7::bytea[])
           AS t(event_id, kind, reason, raw, raw_bytes)",
    )
    .bind(instance)
    .bind(origin)
    .bind(quarantined.iter().map(|q| q.event_id).collect::<Vec<_>>())
    .bind(
        quarantined
            .iter()
            .map(|q| q.reason.label())
            .collect::<Vec<_>>(),
    )
    .bind(&detail)
    .bind(&raw)
    .bind(
        quarantined
            .iter()
            .map(|q| q.raw_bytes.as_deref())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
