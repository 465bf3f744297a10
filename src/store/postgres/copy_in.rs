//! The inbox append for large batches: `COPY … FROM STDIN (FORMAT BINARY)`
//! in a transaction with the cursor upsert, instead of one `UNNEST`
//! statement.
//!
//! `UNNEST` makes the server build each parameter array (a 1,000-event
//! batch's raw JSON is one ~1 MB array), take it apart again and
//! materialize the rows before the insert sees them; `COPY` hands each
//! row straight to the table. The ids are taken from the sequence first
//! (one `nextval` per row, in order, so they grow in the events' order as
//! `UNNEST`'s did), because `COPY` cannot return them. The transaction
//! costs round trips `UNNEST`'s single statement does not (`BEGIN`, ids,
//! `COPY`, cursor, `COMMIT`), so only batches of at least [`COPY_FROM`]
//! events take this path; smaller ones (live traffic) keep the one
//! statement. A row stored already fails the `COPY` with a unique
//! violation like the plain `INSERT`, and the caller retries in the
//! `ON CONFLICT` form.

use std::borrow::Cow;

use sqlx::PgConnection;

use crate::event::Event;
use crate::store::crypto::{Cipher, KeyId};
use crate::store::error::StoreError;
use crate::store::storable;

/// The smallest batch appended with `COPY`.
pub(super) const COPY_FROM: usize = 64;

/// The columns of one inbox row, as `COPY` takes them.
pub(super) struct CopyRow<'a> {
    pub(super) event_id: i64,
    pub(super) event_type: &'a str,
    pub(super) op: Option<&'a str>,
    pub(super) message_id: Option<i64>,
    pub(super) backfilled: bool,
    pub(super) raw: &'a str,
    pub(super) key_id: Option<&'a str>,
}

const NEXT_IDS: &str =
    "SELECT nextval('event_listeners_inbox_id_seq') FROM generate_series(1, $1::int8)";

const COPY_INBOX: &str = "COPY event_listeners_inbox
     (id, instance, queue_id, event_id, event_type, op, message_id, backfilled, raw, key_id)
     FROM STDIN (FORMAT BINARY)";

/// Stores `rows` of `instance` and `queue` on `conn`, inside the caller's
/// transaction; returns their inbox ids, in order.
pub(super) async fn copy_rows(
    conn: &mut PgConnection,
    instance: &str,
    queue: &str,
    rows: &[CopyRow<'_>],
) -> Result<Vec<i64>, StoreError> {
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let mut ids: Vec<i64> = sqlx::query_scalar(NEXT_IDS)
        .bind(n)
        .fetch_all(&mut *conn)
        .await?;
    ids.sort_unstable();
    let data = encode(instance, queue, rows, &ids);
    let mut copy = conn.copy_in_raw(COPY_INBOX).await?;
    if let Err(e) = copy.send(data).await {
        // The server may already have refused; abort says so properly.
        let _ = copy.abort("the COPY data could not be sent").await;
        return Err(e.into());
    }
    copy.finish().await?;
    Ok(ids)
}

/// The binary `COPY` stream: the signature, then one tuple per row (ten
/// fields, each its byte length and its bytes, -1 for NULL), then -1.
fn encode(instance: &str, queue: &str, rows: &[CopyRow<'_>], ids: &[i64]) -> Vec<u8> {
    let size: usize = rows.iter().map(|r| r.raw.len() + 128).sum();
    let mut out = Vec::with_capacity(size + instance.len() * rows.len() + 32);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for (row, id) in rows.iter().zip(ids) {
        out.extend_from_slice(&10i16.to_be_bytes());
        int8(&mut out, Some(*id));
        text(&mut out, Some(instance));
        text(&mut out, Some(queue));
        int8(&mut out, Some(row.event_id));
        text(&mut out, Some(row.event_type));
        text(&mut out, row.op);
        int8(&mut out, row.message_id);
        out.extend_from_slice(&1i32.to_be_bytes());
        out.push(u8::from(row.backfilled));
        text(&mut out, Some(row.raw));
        text(&mut out, row.key_id);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn int8(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn text(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => {
            // A field longer than 2 GiB cannot be in one batch of events.
            let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// `events` of `origin` into the inbox by `COPY` (each new, so each gets
/// its id), sealed with `cipher`.
pub(super) async fn copy_events(
    tx: &mut PgConnection,
    cipher: &Cipher,
    instance: &str,
    origin: &str,
    events: &[&Event],
) -> Result<Vec<Option<i64>>, StoreError> {
    let types: Vec<Cow<'_, str>> = events
        .iter()
        .map(|e| storable::text(e.event_type()))
        .collect();
    let ops: Vec<Option<Cow<'_, str>>> =
        events.iter().map(|e| e.op().map(storable::text)).collect();
    let sealed = cipher.seal_inbox(instance, origin, events.iter().copied())?;
    let rows: Vec<CopyRow<'_>> = events
        .iter()
        .zip(&types)
        .zip(&ops)
        .zip(&sealed)
        .map(|(((e, t), op), (key_id, raw))| CopyRow {
            event_id: e.id(),
            event_type: t,
            op: op.as_deref(),
            message_id: e.message_id(),
            backfilled: e.is_backfilled(),
            raw: raw.as_ref(),
            key_id: key_id.map(KeyId::as_str),
        })
        .collect();
    let ids = copy_rows(tx, instance, origin, &rows).await?;
    Ok(ids.into_iter().map(Some).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_binary_copy_format() {
        let rows = [CopyRow {
            event_id: 7,
            event_type: "message",
            op: None,
            message_id: Some(9),
            backfilled: true,
            raw: "{}",
            key_id: None,
        }];
        let out = encode("default", "q", &rows, &[42]);
        assert_eq!(&out[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&out[19..21], &10i16.to_be_bytes());
        assert_eq!(&out[21..25], &8i32.to_be_bytes());
        assert_eq!(&out[25..33], &42i64.to_be_bytes());
        assert_eq!(&out[out.len() - 2..], &(-1i16).to_be_bytes());
        // 10 fields: three int8, five texts (two NULL), one bool.
        let expected =
            19 + 2 + 3 * 12 + (4 + 7) + (4 + 1) + (4 + 7) + 4 + (4 + 1) + (4 + 2) + 4 + 2;
        assert_eq!(out.len(), expected);
    }
}
