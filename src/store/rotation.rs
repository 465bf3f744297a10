//! [`RotationStore`]: `rotate-key`'s reads and writes, written once for both
//! backends. It walks each table with a sealed column ([`SealedTable`]) in
//! key order, a batch of rows not yet under the store's encrypting key at
//! a time: each row opened with whichever key sealed it (or read as plain
//! text) and sealed again under the encrypting key, the batch's updates in
//! one transaction. An update applies only if the row still holds what was
//! read (its key id, and for listener data its value, which the recorder
//! may overwrite meanwhile), so a running daemon loses nothing; a row it
//! rewrote is under its own key already. Since every row carries its key
//! id, a walk cut short (a crash, a kill) is resumed by walking again.

use async_trait::async_trait;
use serde_json::Value;

use super::crypto::{Aad, CryptoError, KeyId};
use super::dialect::Dialect;
use super::error::StoreError;
use super::sql::on_pool;

/// A table whose rows hold a sealed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedTable {
    /// `event_listeners_inbox.raw`.
    Inbox,
    /// `event_listeners_listenerdata.value`.
    ListenerData,
    /// `event_listeners_replyoutbox.content`.
    Outbox,
}

impl SealedTable {
    /// Every one, in the order `rotate-key` walks them.
    pub const ALL: [SealedTable; 3] = [
        SealedTable::Inbox,
        SealedTable::ListenerData,
        SealedTable::Outbox,
    ];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            SealedTable::Inbox => "event_listeners_inbox",
            SealedTable::ListenerData => "event_listeners_listenerdata",
            SealedTable::Outbox => "event_listeners_replyoutbox",
        }
    }

    fn count_off_key(self) -> &'static str {
        match self {
            SealedTable::Inbox => {
                "SELECT count(*) FROM event_listeners_inbox WHERE COALESCE(key_id, '') <> $1"
            }
            SealedTable::ListenerData => {
                "SELECT count(*) FROM event_listeners_listenerdata WHERE COALESCE(key_id, '') <> $1"
            }
            SealedTable::Outbox => {
                "SELECT count(*) FROM event_listeners_replyoutbox WHERE COALESCE(key_id, '') <> $1"
            }
        }
    }
}

/// Where a walk of a table is: before every row, or after this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkFrom {
    /// Before the first row.
    Start,
    /// After the row of this id (inbox, outbox).
    Id(i64),
    /// After the row of this (listener, key) (listener data).
    Pair(String, String),
}

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedBatch {
    /// Rows read that were not under the encrypting key.
    pub read: u64,
    /// Of those, rows now sealed under it (the others changed meanwhile).
    pub rewritten: u64,
    /// Where the next batch starts; `None` when the table is walked.
    pub next: Option<WalkFrom>,
}

/// `rotate-key`'s reads and writes; every `Store` implements it.
#[async_trait]
pub trait RotationStore: Send + Sync {
    /// How many rows of `table` are not under key `key` (plain ones too).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn rows_off_key(&self, table: SealedTable, key: &KeyId) -> Result<u64, StoreError>;

    /// Seals again, under the store's encrypting key, up to `limit` rows of
    /// `table` after `from` that are under another key or none, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::Crypto`] when the store has no encrypting key or a row
    /// does not open (its key is not held); [`StoreError`] when the
    /// database fails.
    async fn rotate_batch(
        &self,
        table: SealedTable,
        from: &WalkFrom,
        limit: u32,
    ) -> Result<RotatedBatch, StoreError>;
}

/// A row to update: its key (id, or listener and key), the sealed text (a
/// JSON string for listener data), its new key id, and what it held.
struct Resealed {
    id: i64,
    pair: (String, String),
    sealed: String,
    key_id: String,
    old_key: String,
    old_value: String,
}

#[async_trait]
impl<T: Dialect> RotationStore for T {
    async fn rows_off_key(&self, table: SealedTable, key: &KeyId) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self.pool(), p => sqlx::query_scalar(table.count_off_key())
            .bind(key.as_str())
            .fetch_one(p)
            .await?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn rotate_batch(
        &self,
        table: SealedTable,
        from: &WalkFrom,
        limit: u32,
    ) -> Result<RotatedBatch, StoreError> {
        let cipher = self.cipher();
        let target = cipher
            .encrypting()
            .ok_or(CryptoError::NotEncrypting)?
            .clone();
        let (id, pair) = match from {
            WalkFrom::Start => (0, (String::new(), String::new())),
            WalkFrom::Id(id) => (*id, (String::new(), String::new())),
            WalkFrom::Pair(l, k) => (0, (l.clone(), k.clone())),
        };
        let limit = i64::from(limit.max(1));
        let mut rows: Vec<Resealed> = Vec::new();
        let reseal = |aad: &Aad<'_>, key_id: Option<String>, stored: String, json: bool| {
            let plain = if json {
                cipher.open_json(key_id.as_deref(), aad, &stored)?
            } else {
                cipher.open(key_id.as_deref(), aad, stored.clone())?
            };
            let (new_id, sealed) = cipher.seal(aad, &plain)?;
            let sealed = if json {
                Value::String(sealed.into_owned()).to_string()
            } else {
                sealed.into_owned()
            };
            Ok::<_, CryptoError>((
                sealed,
                new_id.map(KeyId::to_string).unwrap_or_default(),
                key_id.unwrap_or_default(),
                stored,
            ))
        };
        let read = on_pool!(self.pool(), p => {
            match table {
                SealedTable::Inbox => {
                    let found: Vec<(i64, String, String, i64, String, Option<String>)> =
                        sqlx::query_as(ROTATE_INBOX_ROWS)
                            .bind(id).bind(target.as_str()).bind(limit)
                            .fetch_all(p).await?;
                    for (id, instance, queue_id, event_id, raw, key_id) in found {
                        let aad = Aad::Inbox { instance: &instance, queue_id: &queue_id, event_id };
                        let (sealed, key_id, old_key, old_value) = reseal(&aad, key_id, raw, false)?;
                        rows.push(Resealed { id, pair: Default::default(), sealed, key_id, old_key, old_value });
                    }
                }
                SealedTable::Outbox => {
                    let found: Vec<(i64, String, i64, i32, String, Option<String>)> =
                        sqlx::query_as(ROTATE_OUTBOX_ROWS)
                            .bind(id).bind(target.as_str()).bind(limit)
                            .fetch_all(p).await?;
                    for (id, listener, inbox_id, seq, content, key_id) in found {
                        let aad = Aad::Outbox { listener: &listener, inbox_id, seq: i64::from(seq) };
                        let (sealed, key_id, old_key, old_value) = reseal(&aad, key_id, content, false)?;
                        rows.push(Resealed { id, pair: Default::default(), sealed, key_id, old_key, old_value });
                    }
                }
                SealedTable::ListenerData => {
                    let found: Vec<(String, String, String, Option<String>)> =
                        sqlx::query_as(ROTATE_DATA_ROWS)
                            .bind(&pair.0).bind(&pair.1).bind(target.as_str()).bind(limit)
                            .fetch_all(p).await?;
                    for (listener, key, value, key_id) in found {
                        let aad = Aad::ListenerData { listener: &listener, key: &key };
                        let (sealed, key_id, old_key, old_value) = reseal(&aad, key_id, value, true)?;
                        rows.push(Resealed { id: 0, pair: (listener, key), sealed, key_id, old_key, old_value });
                    }
                }
            }
            let mut rewritten = 0;
            let mut tx = p.begin().await?;
            for r in &rows {
                let q = match table {
                    SealedTable::Inbox => sqlx::query(ROTATE_INBOX_ROW)
                        .bind(&r.sealed).bind(&r.key_id).bind(r.id).bind(&r.old_key),
                    SealedTable::Outbox => sqlx::query(ROTATE_OUTBOX_ROW)
                        .bind(&r.sealed).bind(&r.key_id).bind(r.id).bind(&r.old_key),
                    SealedTable::ListenerData => {
                        let value: Value = serde_json::from_str(&r.sealed)
                            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                        sqlx::query(ROTATE_DATA_ROW)
                            .bind(sqlx::types::Json(value)).bind(&r.key_id)
                            .bind(&r.pair.0).bind(&r.pair.1)
                            .bind(&r.old_key).bind(&r.old_value)
                    }
                };
                rewritten += q.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            rewritten
        });
        let next = match (rows.last(), rows.len() as i64 == limit) {
            (Some(last), true) if table == SealedTable::ListenerData => {
                Some(WalkFrom::Pair(last.pair.0.clone(), last.pair.1.clone()))
            }
            (Some(last), true) => Some(WalkFrom::Id(last.id)),
            _ => None,
        };
        Ok(RotatedBatch {
            read: rows.len() as u64,
            rewritten: read,
            next,
        })
    }
}

/// Inbox rows after id `$1` not under key `$2`, at most `$3`.
const ROTATE_INBOX_ROWS: &str =
    "SELECT id, instance, queue_id, event_id, raw, key_id FROM event_listeners_inbox
     WHERE id > $1 AND COALESCE(key_id, '') <> $2 ORDER BY id LIMIT $3";
/// Inbox row `$3`, still under key `$4` ('' for none), sealed as `$1` under `$2`.
const ROTATE_INBOX_ROW: &str = "UPDATE event_listeners_inbox SET raw = $1, key_id = $2
     WHERE id = $3 AND COALESCE(key_id, '') = $4";
/// Outbox rows after id `$1` not under key `$2`, at most `$3`.
const ROTATE_OUTBOX_ROWS: &str =
    "SELECT id, listener_name, inbox_id, seq, content, key_id FROM event_listeners_replyoutbox
     WHERE id > $1 AND COALESCE(key_id, '') <> $2 ORDER BY id LIMIT $3";
/// Outbox row `$3`, still under key `$4`, its content sealed as `$1` under `$2`.
const ROTATE_OUTBOX_ROW: &str = "UPDATE event_listeners_replyoutbox SET content = $1, key_id = $2
     WHERE id = $3 AND COALESCE(key_id, '') = $4";
/// Listener data rows after (`$1`, `$2`) not under key `$3`, at most `$4`,
/// their value as JSON text.
const ROTATE_DATA_ROWS: &str =
    "SELECT listener_name, key, CAST(value AS TEXT), key_id FROM event_listeners_listenerdata
     WHERE (listener_name, key) > ($1, $2) AND COALESCE(key_id, '') <> $3
     ORDER BY listener_name, key LIMIT $4";
/// Listener data row (`$3`, `$4`), still under key `$5` and holding `$6`,
/// its value sealed as `$1` under `$2`.
const ROTATE_DATA_ROW: &str = "UPDATE event_listeners_listenerdata SET value = $1, key_id = $2
     WHERE listener_name = $3 AND key = $4 AND COALESCE(key_id, '') = $5
       AND CAST(value AS TEXT) = $6";
