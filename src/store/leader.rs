//! [`LeaderStore`]: the distributed mode's leadership and outbox (issue 16).
//! An ingest leads an instance while it holds the instance's advisory lock
//! on a dedicated connection ([`Lease`]) and the lease row's epoch is its
//! own; every cursor and outbox write it makes checks that epoch in the
//! same transaction ([`StoreError::Fenced`] otherwise). The outbox is the
//! inbox itself: rows above `published_through` are not yet confirmed by
//! the broker. PostgreSQL only: SQLite answers [`StoreError::Unsupported`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::StoreError;
use super::model::StoredEvent;

/// The lease row of an instance, as `list` and `/health` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRow {
    /// The epoch of the last leader (0: never led).
    pub epoch: i64,
    /// Its holder (`host=H pid=P`).
    pub holder: Option<String>,
    /// When it last renewed its lease.
    pub renewed_at: Option<DateTime<Utc>>,
    /// The highest inbox id published with a confirm.
    pub published_through: i64,
    /// Inbox rows above `published_through`.
    pub outbox_depth: i64,
}

/// A batch of the outbox: its events, and the highest inbox id read (rows
/// that cannot be read are skipped, and logged, but passed).
#[derive(Debug, Default)]
pub struct OutboxBatch {
    /// The events, in inbox id order.
    pub events: Vec<StoredEvent>,
    /// The highest inbox id of the batch (0 when empty).
    pub through: i64,
}

/// Leadership held: the advisory lock's connection and the epoch taken.
#[async_trait]
pub trait Lease: Send {
    /// The epoch this leader writes with.
    fn epoch(&self) -> i64;
    /// Renews the lease on the lock's own connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the epoch is no longer this one; any
    /// other error when the lock's connection is down. Either way the
    /// caller demotes at once.
    async fn renew(&mut self) -> Result<(), StoreError>;
    /// Releases the lock (closing its connection).
    async fn release(self: Box<Self>);
}

/// The distributed mode's leadership and outbox reads.
#[async_trait]
pub trait LeaderStore: Send + Sync {
    /// Takes the lock of `instance` if free: the epoch is bumped, `holder`
    /// written, and the store's appends for the instance are fenced with
    /// the new epoch. `None` while another session holds it (a holder
    /// whose lease is older than `lease` has its connection terminated, so
    /// that the next try can succeed).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn lead(
        &self,
        instance: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let _ = (instance, holder, lease);
        Err(StoreError::Unsupported("leadership"))
    }

    /// The lease row of `instance`, `None` before any leader.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn leader_row(&self, instance: &str) -> Result<Option<LeaderRow>, StoreError> {
        let _ = instance;
        Err(StoreError::Unsupported("leadership"))
    }

    /// Up to `limit` committed inbox rows of `instance` with an id above
    /// `after`, in id order, decrypted.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn outbox_after(
        &self,
        instance: &str,
        after: i64,
        limit: i64,
    ) -> Result<OutboxBatch, StoreError> {
        let _ = (instance, after, limit);
        Err(StoreError::Unsupported("the outbox"))
    }

    /// Moves `published_through` of `instance` to `through` (never back),
    /// if `epoch` is still the instance's.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when another leader took over.
    async fn mark_published(
        &self,
        instance: &str,
        epoch: i64,
        through: i64,
    ) -> Result<(), StoreError> {
        let _ = (instance, epoch, through);
        Err(StoreError::Unsupported("the outbox"))
    }

    /// Fences the store's appends (the inbox and cursor writes) of
    /// `instance` with `epoch`; `None` lifts the fence.
    fn fence(&self, epoch: Option<i64>) {
        let _ = epoch;
    }
}
