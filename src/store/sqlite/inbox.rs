//! The SQLite inbox: events written as multi-row `INSERT … VALUES (…), (…)`
//! statements in chunks of [`CHUNK`] rows, so the common statement shapes
//! are prepared once and reused, with the quarantined elements and the
//! cursor in the same transaction; the commit counts only if the file is
//! still the one opened.

use std::borrow::Cow;
use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::connect::{SqliteStore, CHUNK};
use crate::event::{Event, Quarantined};
use crate::store::crypto::KeyId;
use crate::store::dialect::{Dialect, InboxDialect};
use crate::store::error::StoreError;
use crate::store::lock::InstanceLock;
use crate::store::model::{Cursor, Line};
use crate::store::storable;

#[async_trait]
impl InboxDialect for SqliteStore {
    const APPENDS_IN_FLIGHT: usize = 1;

    const DONE_RUNS: &'static str = super::super::sql::DONE_RUNS;

    const UNFINISHED: &'static str =
        "SELECT i.id, i.event_id, i.backfilled, i.raw, i.received_at, i.queue_id, i.key_id
         FROM event_listeners_inbox i
         WHERE i.instance = $1 AND i.id > COALESCE(
           (SELECT dispatched_through FROM event_listeners_dispatched WHERE instance = $1), 0)
         ORDER BY i.id";

    const LOCK_COVERS_EVERY_INSTANCE: bool = true;

    async fn take_lock(&self, _instance: &str) -> Result<InstanceLock, StoreError> {
        let file = self.pool().connect_options().get_filename().to_owned();
        super::lock::take(&file, self.lock_state().clone(), self.files())
    }

    async fn insert_events(
        &self,
        instance: &str,
        origin: &str,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: Option<&Cursor>,
        line: Option<&Line>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        // One writer: a second append in flight would only wait on the
        // file (`APPENDS_IN_FLIGHT`), and must not wait for the one before
        // inside its own transaction.
        if line.is_some_and(|l| l.after.is_some()) {
            return Err(StoreError::Unsupported("a second append in flight"));
        }
        let _turn = self.write_turn().await;
        // The connection outlives the transaction: should the file turn
        // out to be deleted or replaced, it is the one to give it up with.
        let mut conn = self.pool().acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let now = Utc::now();
        let sealed = self.opts().cipher.seal_inbox(instance, origin, events)?;
        let mut by_event: HashMap<i64, i64> = HashMap::with_capacity(events.len());
        let rows: Vec<(&Event, &(Option<&KeyId>, Cow<'_, str>))> =
            events.iter().zip(&sealed).collect();
        for chunk in rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO event_listeners_inbox
                   (instance, queue_id, event_id, event_type, op, message_id, backfilled, raw,
                    key_id, received_at) ",
            );
            q.push_values(chunk, |mut b, (e, (key_id, raw))| {
                b.push_bind(instance)
                    .push_bind(origin)
                    .push_bind(e.id())
                    .push_bind(e.event_type())
                    .push_bind(e.op())
                    .push_bind(e.message_id())
                    .push_bind(e.is_backfilled())
                    .push_bind(raw.as_ref())
                    .push_bind(key_id.map(KeyId::as_str))
                    .push_bind(now);
            });
            q.push(" ON CONFLICT DO NOTHING RETURNING id, event_id");
            for r in q.build().fetch_all(&mut *tx).await? {
                by_event.insert(r.get(1), r.get(0));
            }
        }
        for chunk in quarantined.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO event_listeners_quarantine
                   (instance, queue_id, event_id, kind, reason, raw, raw_bytes, received_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(instance)
                    .push_bind(origin)
                    .push_bind(e.event_id)
                    .push_bind(e.reason.label())
                    .push_bind(storable::text(&e.detail).into_owned())
                    .push_bind(storable::text(&e.raw).into_owned())
                    .push_bind(e.raw_bytes.as_deref())
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
        }
        if let Some(c) = cursor {
            sqlx::query(
                "INSERT INTO event_listeners_cursor (instance, site, queue_id, last_event_id, last_message_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (instance) DO UPDATE SET
                   site = excluded.site, queue_id = excluded.queue_id, last_event_id = excluded.last_event_id,
                   last_message_id = COALESCE(MAX(last_message_id, excluded.last_message_id),
                                              excluded.last_message_id, last_message_id),
                   updated_at = excluded.updated_at",
            )
            .bind(instance)
            .bind(&c.site)
            .bind(&c.queue_id)
            .bind(c.last_event_id)
            .bind(c.last_message_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if let Some(line) = line {
            line.pass_turn();
        }
        // Before the caller may acknowledge: a commit into a deleted or
        // replaced file is lost.
        if let Err(e) = self.files().check() {
            tracing::error!(error = %e, "The SQLite database was deleted or replaced; closing it");
            self.abandon(conn).await;
            return Err(e);
        }
        Ok(events
            .iter()
            .map(|e| by_event.get(&e.id()).copied())
            .collect())
    }

    async fn find_inbox_ids(
        &self,
        instance: &str,
        origin: &str,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut out = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT event_id, id FROM event_listeners_inbox WHERE instance = ",
            );
            q.push_bind(instance)
                .push(" AND queue_id = ")
                .push_bind(origin)
                .push(" AND event_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            out.extend(
                q.build_query_as::<(i64, i64)>()
                    .fetch_all(self.pool())
                    .await?,
            );
        }
        Ok(out)
    }
}
