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

use sqlx::postgres::PgCopyIn;
use sqlx::PgConnection;

use crate::event::Event;
use crate::store::crypto::{Cipher, KeyId};
use crate::store::error::StoreError;
use crate::store::model::Line;
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
/// Once the ids are taken, the batch after in `line` may take its own.
pub(super) async fn copy_rows(
    conn: &mut PgConnection,
    instance: &str,
    queue: &str,
    rows: &[CopyRow<'_>],
    line: Option<&Line>,
) -> Result<Vec<i64>, StoreError> {
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let mut ids: Vec<i64> = sqlx::query_scalar(NEXT_IDS)
        .bind(n)
        .fetch_all(&mut *conn)
        .await?;
    line.inspect(|l| l.pass_ids());
    ids.sort_unstable();
    let mut copy = conn.copy_in_raw(COPY_INBOX).await?;
    match send_rows(&mut copy, instance, queue, rows, &ids).await {
        Ok(()) => {
            copy.finish().await?;
            Ok(ids)
        }
        Err(e) => {
            // The server may already have refused; abort says so properly.
            let _ = copy.abort("the COPY data could not be sent").await;
            Err(e.into())
        }
    }
}

/// Bytes of the `COPY` stream sent in one message (a row longer than that
/// goes whole in its own).
const COPY_PIECE: usize = 64 << 10;

/// Sends the stream of `rows` in pieces as they are encoded: neither the
/// stream nor the connection's write buffer ever holds the whole batch (a
/// 1,000-event batch is over a megabyte), and nothing is copied twice.
async fn send_rows(
    copy: &mut PgCopyIn<&mut PgConnection>,
    instance: &str,
    queue: &str,
    rows: &[CopyRow<'_>],
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    let mut piece = Vec::with_capacity(COPY_PIECE + 2048);
    header(&mut piece);
    for (row, id) in rows.iter().zip(ids) {
        encode_row(&mut piece, instance, queue, row, *id);
        if piece.len() >= COPY_PIECE {
            copy.send(piece.as_slice()).await?;
            piece.clear();
        }
    }
    trailer(&mut piece);
    copy.send(piece.as_slice()).await?;
    Ok(())
}

/// The binary `COPY` stream's signature, flags and header extension.
fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

/// One tuple: ten fields, each its byte length and its bytes (-1 for NULL).
fn encode_row(out: &mut Vec<u8>, instance: &str, queue: &str, row: &CopyRow<'_>, id: i64) {
    out.extend_from_slice(&10i16.to_be_bytes());
    int8(out, Some(id));
    text(out, Some(instance));
    text(out, Some(queue));
    int8(out, Some(row.event_id));
    text(out, Some(row.event_type));
    text(out, row.op);
    int8(out, row.message_id);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.push(u8::from(row.backfilled));
    text(out, Some(row.raw));
    text(out, row.key_id);
}

/// The stream's end.
fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// The whole stream of `rows`, as [`copy_rows`] sends it in pieces.
#[cfg(test)]
fn encode(instance: &str, queue: &str, rows: &[CopyRow<'_>], ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out);
    for (row, id) in rows.iter().zip(ids) {
        encode_row(&mut out, instance, queue, row, *id);
    }
    trailer(&mut out);
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
/// its id), sealed with `cipher`, the batch after in `line` told when its
/// ids are taken.
pub(super) async fn copy_events(
    tx: &mut PgConnection,
    cipher: &Cipher,
    instance: &str,
    origin: &str,
    events: &[&Event],
    line: Option<&Line>,
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
    let ids = copy_rows(tx, instance, origin, &rows, line).await?;
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
