//! The PostgreSQL inbox: the hot-path append, one statement per batch,
//! its own transaction. The events' columns travel as parallel arrays that
//! `UNNEST` turns back into rows, and the cursor upsert is a data-modifying
//! part of the same `WITH`. The SQL text never changes with the batch size,
//! so it is prepared once per connection. Inserts assume the rows are new;
//! a unique violation retries the batch in the `ON CONFLICT` form
//! ([`Insert`]). A batch with elements in quarantine (rare) writes them
//! first, in a transaction around the same statement.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;

use super::connect::{Insert, PgStore};
use super::copy_in::{copy_events, COPY_FROM};
use crate::event::{Event, Quarantined};
use crate::store::dialect::{Dialect, InboxDialect};
use crate::store::error::StoreError;
use std::borrow::Cow;

use crate::store::crypto::{Cipher, KeyId};
use crate::store::lock::InstanceLock;
use crate::store::model::{Cursor, Line};
use crate::store::storable;

#[async_trait]
impl InboxDialect for PgStore {
    const DONE_RUNS: &'static str = crate::store::sql::DONE_RUNS_COMPACT;

    const UNFINISHED: &'static str =
        "SELECT i.id, i.event_id, i.backfilled, i.raw::text, i.received_at, i.queue_id, i.key_id
         FROM event_listeners_inbox i
         WHERE i.instance = $1 AND i.id > COALESCE(
           (SELECT dispatched_through FROM event_listeners_dispatched WHERE instance = $1), 0)
         ORDER BY i.id";

    async fn settle(&self) -> Result<(), StoreError> {
        super::predecessor::settle(self.pool()).await
    }

    async fn take_lock(&self, instance: &str) -> Result<InstanceLock, StoreError> {
        let options = (*self.pool().connect_options()).clone();
        super::lock::take(options, instance, self.lock_state().clone()).await
    }

    const APPENDS_IN_FLIGHT: usize = 2;

    async fn insert_events(
        &self,
        instance: &str,
        origin: &str,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: Option<&Cursor>,
        line: Option<&Line>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        // The queue position is not unique in this inbox (migration
        // 20261203000012): a later copy of an id the batch repeats is not
        // written at all. Every copy gets the first one's row here, and
        // `first_copies` takes it from the later ones.
        let firsts = crate::store::repeats::first_of_each_id(events);
        let firsts = &firsts;
        let write = Write {
            instance,
            origin,
            events: firsts,
            cursor,
            line,
        };
        let ids = if !quarantined.is_empty() || self.fence_epoch().is_some() {
            append_in_tx(self, &write, quarantined, Insert::SkipExisting).await?
        } else {
            // A unique violation means some of these events are stored
            // already (a backfilled message arriving live, a file read
            // again): the careful form skips them.
            Insert::plain_then_skipping(|mode| {
                let write = &write;
                async move {
                    // A large batch goes by COPY, and a batch after another
                    // in flight takes its turn at the cursor: both need a
                    // transaction around more than one statement.
                    let after_another = line.is_some_and(|l| l.after.is_some());
                    if let Some(l) = line.filter(|l| l.ids_passed()) {
                        // A `COPY` refused (some rows are stored already)
                        // after the batch behind it took its ids: rows
                        // inserted now would take ids above those. Given
                        // up, so that the batch behind rolls back too, and
                        // both are written again in order (`Pipeline::land`).
                        let expected = l.after.as_ref().map_or(-1, |(c, _)| c.last_event_id);
                        return Err(StoreError::OutOfTurn { expected });
                    }
                    if (mode == Insert::Plain && firsts.len() >= COPY_FROM) || after_another {
                        return append_in_tx(self, write, &[], mode).await;
                    }
                    let ids =
                        append_once(self.pool(), &self.opts().cipher, write, cursor, mode).await?;
                    // Committed, cursor and all: the batch after may go on.
                    line.inspect(|l| l.pass_turn());
                    Ok(ids)
                }
            })
            .await?
        };
        if firsts.len() == events.len() {
            return Ok(ids);
        }
        let by_id: HashMap<i64, Option<i64>> = firsts.iter().map(|e| e.id()).zip(ids).collect();
        Ok(events
            .iter()
            .map(|e| by_id.get(&e.id()).copied().flatten())
            .collect())
    }

    async fn find_inbox_ids(
        &self,
        instance: &str,
        origin: &str,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT event_id, id FROM event_listeners_inbox
             WHERE instance = $1 AND queue_id = $2 AND event_id = ANY($3)",
        )
        .bind(instance)
        .bind(origin)
        .bind(event_ids)
        .fetch_all(self.pool())
        .await?)
    }
}

/// What one append writes: `events` of `origin`, and the cursor moved to
/// `cursor` (in its turn, for a batch in a line of appends in flight).
struct Write<'a> {
    instance: &'a str,
    origin: &'a str,
    events: &'a [&'a Event],
    cursor: Option<&'a Cursor>,
    line: Option<&'a Line>,
}

/// One try at storing `write`'s events and `cursor` (its own, or none when
/// the caller writes it after): one statement, so one round trip and its
/// own transaction (data-modifying `WITH` parts all run, atomically). A
/// `BEGIN`, `INSERT`, cursor `INSERT`, `COMMIT` sequence costs four round
/// trips, and the server sits idle in the transaction between them.
async fn append_once<'c, E>(
    conn: E,
    cipher: &Cipher,
    write: &Write<'_>,
    cursor: Option<&Cursor>,
    mode: Insert,
) -> Result<Vec<Option<i64>>, StoreError>
where
    E: sqlx::PgExecutor<'c>,
{
    let Write {
        instance,
        origin,
        events,
        ..
    } = *write;
    if events.is_empty() {
        if let Some(c) = cursor {
            write_cursor(conn, instance, c).await?;
        }
        return Ok(Vec::new());
    }
    let event_ids: Vec<i64> = events.iter().map(|e| e.id()).collect();
    // The extracted columns are text: a NUL there is replaced (the raw
    // JSON keeps it, escaped, byte for byte).
    let types: Vec<Cow<'_, str>> = events
        .iter()
        .map(|e| storable::text(e.event_type()))
        .collect();
    let ops: Vec<Option<Cow<'_, str>>> =
        events.iter().map(|e| e.op().map(storable::text)).collect();
    let message_ids: Vec<Option<i64>> = events.iter().map(|e| e.message_id()).collect();
    let backfilled: Vec<bool> = events.iter().map(|e| e.is_backfilled()).collect();
    let sealed = cipher.seal_inbox(instance, origin, events.iter().copied())?;
    let raws: Vec<&str> = sealed.iter().map(|(_, raw)| raw.as_ref()).collect();
    let key_ids: Vec<Option<&str>> = sealed.iter().map(|(id, _)| id.map(KeyId::as_str)).collect();
    let sql = match (mode, cursor.is_some()) {
        (Insert::Plain, false) => APPEND_PLAIN,
        (Insert::Plain, true) => APPEND_PLAIN_CURSOR,
        (Insert::SkipExisting, false) => APPEND_SKIP,
        (Insert::SkipExisting, true) => APPEND_SKIP_CURSOR,
    };
    let mut query = sqlx::query(sql)
        .bind(instance)
        .bind(origin)
        .bind(&event_ids)
        .bind(&types)
        .bind(&ops)
        .bind(&message_ids)
        .bind(&backfilled)
        .bind(&raws)
        .bind(&key_ids);
    if let Some(c) = cursor {
        query = query
            .bind(&c.site)
            .bind(&c.queue_id)
            .bind(c.last_event_id)
            .bind(c.last_message_id);
    }
    let rows = query.fetch_all(conn).await?;
    let by_event: HashMap<i64, i64> = rows
        .iter()
        .map(|r| (r.get::<i64, _>(1), r.get::<i64, _>(0)))
        .collect();
    Ok(event_ids
        .iter()
        .map(|id| by_event.get(id).copied())
        .collect())
}

/// [`append_once`] in a transaction, for a batch of one of these kinds,
/// which need more than its one statement:
/// - with elements in quarantine (rare: Zulip sent something that is no
///   event as it came): their rows first;
/// - fenced by a distributed ingest's epoch: the fence first;
/// - large (`mode` plain, [`COPY_FROM`] events or more): the rows by
///   `COPY` (`copy_in.rs` says why), each new, so each gets its id;
/// - in a line of appends in flight: the cursor written last, in its turn
///   ([`write_cursor_in_line`]).
async fn append_in_tx(
    store: &PgStore,
    write: &Write<'_>,
    quarantined: &[Quarantined],
    mode: Insert,
) -> Result<Vec<Option<i64>>, StoreError> {
    let Write {
        instance, origin, ..
    } = *write;
    let mut tx = store.pool().begin().await?;
    // The distributed ingest's fence: this transaction commits only under
    // its epoch (see `leader.rs`).
    if let Some(epoch) = store.fence_epoch() {
        super::leader::check(&mut tx, instance, epoch).await?;
    }
    if !quarantined.is_empty() {
        super::quarantined::write(&mut tx, instance, origin, quarantined).await?;
    }
    // Inbox ids ascend from batch to batch, which the dispatch watermark
    // relies on (`ARCHITECTURE.md`, "Two batches in flight"). A `COPY`
    // takes all of its ids from the sequence first, so it may take them as
    // soon as the batch before has taken its own, and copy its rows beside
    // that one's; an `INSERT` takes each row's id as it inserts it, so it
    // waits until the batch before has inserted all of its rows.
    let copy = mode == Insert::Plain && write.events.len() >= COPY_FROM;
    if let Some(line) = write.line {
        if copy {
            line.wait_ids().await;
        } else {
            line.wait_turn().await;
        }
    }
    let cipher = &store.opts().cipher;
    let ids = if copy {
        copy_events(&mut tx, cipher, instance, origin, write.events, write.line).await?
    } else {
        let ids = append_once(&mut *tx, cipher, write, None, mode).await?;
        write.line.inspect(|l| l.pass_ids());
        ids
    };
    match (write.cursor, write.line) {
        (Some(c), Some(line)) => write_cursor_in_line(&mut tx, instance, c, line).await?,
        (Some(c), None) => write_cursor(&mut *tx, instance, c).await?,
        (None, _) => {}
    }
    tx.commit().await?;
    Ok(ids)
}

/// `$1` instance, `$2` queue (the origin as stored), `$3`-`$9` the events' columns.
macro_rules! inbox_insert {
    ($conflict:literal) => {
        concat!(
            "INSERT INTO event_listeners_inbox
               (instance, queue_id, event_id, event_type, op, message_id, backfilled, raw, key_id)
             SELECT $1, $2, t.event_id, t.event_type, t.op, t.message_id, t.backfilled, t.raw,
                    t.key_id
             FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::text[],
                         $9::text[])
               AS t(event_id, event_type, op, message_id, backfilled, raw, key_id) ",
            $conflict,
            " RETURNING id, event_id"
        )
    };
}

/// The cursor's upsert: `$1` instance, then the placeholders of site,
/// queue id, last event id and last message id.
macro_rules! cursor_upsert {
    ($site:literal, $queue:literal, $event:literal, $message:literal) => {
        concat!(
            "INSERT INTO event_listeners_cursor (instance, site, queue_id, last_event_id, last_message_id, updated_at)
             VALUES ($1, ", $site, ", ", $queue, ", ", $event, ", ", $message, ", now())
             ON CONFLICT (instance) DO UPDATE SET
               site = excluded.site, queue_id = excluded.queue_id, last_event_id = excluded.last_event_id,
               last_message_id = GREATEST(event_listeners_cursor.last_message_id, excluded.last_message_id),
               updated_at = now()"
        )
    };
}

const APPEND_PLAIN: &str = inbox_insert!("");
const APPEND_SKIP: &str = inbox_insert!("ON CONFLICT DO NOTHING");
/// The inbox insert and the cursor upsert as one statement.
macro_rules! append_with_cursor {
    ($conflict:literal) => {
        concat!(
            "WITH ins AS (",
            inbox_insert!($conflict),
            "), cur AS (",
            cursor_upsert!("$10", "$11", "$12", "$13"),
            ") SELECT id, event_id FROM ins"
        )
    };
}

const APPEND_PLAIN_CURSOR: &str = append_with_cursor!("");
const APPEND_SKIP_CURSOR: &str = append_with_cursor!("ON CONFLICT DO NOTHING");

/// The cursor of a batch in a line of appends in flight, moved to `c` in
/// its turn. With a batch before it in flight: once that one's cursor
/// write has run (`Line::wait_turn`, here), the cursor's row is locked with
/// `FOR UPDATE`, which waits for that one's transaction to end and then
/// (under READ COMMITTED) reads the row as it left it. Moved to where that
/// batch leaves it (it committed), the cursor moves on; anywhere else (it
/// rolled back, or gave up before its cursor write): the caller's
/// transaction rolls back with [`StoreError::OutOfTurn`]. Then, with the
/// row held to this transaction's end, word to the batch after
/// (`Line::pass_turn`).
///
/// (A plain `UPDATE ... WHERE last_event_id = <that batch's>` would not
/// do: it tests its condition on the row as of its snapshot, before that
/// batch committed, and would skip the row without waiting.)
async fn write_cursor_in_line(
    tx: &mut sqlx::PgConnection,
    instance: &str,
    c: &Cursor,
    line: &Line,
) -> Result<(), StoreError> {
    if let Some((after, _)) = &line.after {
        // Once the batch before has written the cursor, the row lock waits
        // for it to end.
        line.wait_turn().await;
        let found: Option<(String, i64)> = sqlx::query_as(
            "SELECT queue_id, last_event_id FROM event_listeners_cursor
             WHERE instance = $1 FOR UPDATE",
        )
        .bind(instance)
        .fetch_optional(&mut *tx)
        .await?;
        if found.as_ref() != Some(&(after.queue_id.clone(), after.last_event_id)) {
            return Err(StoreError::OutOfTurn {
                expected: after.last_event_id,
            });
        }
    }
    write_cursor(&mut *tx, instance, c).await?;
    line.pass_turn();
    Ok(())
}

async fn write_cursor<'c, E: sqlx::PgExecutor<'c>>(
    conn: E,
    instance: &str,
    c: &Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(cursor_upsert!("$2", "$3", "$4", "$5"))
        .bind(instance)
        .bind(&c.site)
        .bind(&c.queue_id)
        .bind(c.last_event_id)
        .bind(c.last_message_id)
        .execute(conn)
        .await?;
    Ok(())
}
