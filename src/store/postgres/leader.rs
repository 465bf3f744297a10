//! [`LeaderStore`] on PostgreSQL: leadership is the instance's session
//! advisory lock (the class of `lock.rs`) on a dedicated, unpooled
//! connection, plus the lease row's epoch, bumped on that connection when
//! the lock is taken and renewed on it (so a dead lock connection fails the
//! renewal). The fence (`check`) is a `FOR SHARE` read of the lease row in
//! the writer's transaction: the next leader's bump waits for it, so once a
//! new epoch is committed no transaction of the old one can commit.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};

use super::connect::PgStore;
use crate::store::dialect::Dialect;
use crate::store::error::StoreError;
use crate::store::inbox_rows::{rows_to_unfinished, UnfinishedRow};
use crate::store::leader::{LeaderRow, LeaderStore, Lease, OutboxBatch};

/// How long a renewal may take before the lock's connection counts as down.
const RENEW_TIMEOUT: Duration = Duration::from_secs(3);

/// The lock and the epoch of the leader of one instance.
struct PgLease {
    conn: PgConnection,
    instance: String,
    epoch: i64,
}

#[async_trait]
impl Lease for PgLease {
    fn epoch(&self) -> i64 {
        self.epoch
    }

    async fn renew(&mut self) -> Result<(), StoreError> {
        let renew = sqlx::query(
            "UPDATE event_listeners_leader SET renewed_at = now() WHERE instance = $1 AND epoch = $2",
        )
        .bind(&self.instance)
        .bind(self.epoch)
        .execute(&mut self.conn);
        match tokio::time::timeout(RENEW_TIMEOUT, renew).await {
            Ok(Ok(done)) if done.rows_affected() == 1 => Ok(()),
            Ok(Ok(_)) => Err(StoreError::Fenced {
                mine: self.epoch,
                current: current_epoch(&mut self.conn, &self.instance).await?,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StoreError::LockNotHeld),
        }
    }

    async fn release(self: Box<Self>) {
        // Closing the session releases its advisory lock.
        let _ = self.conn.close().await;
    }
}

async fn current_epoch<'c, E: sqlx::PgExecutor<'c>>(
    conn: E,
    instance: &str,
) -> Result<i64, StoreError> {
    let epoch: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM event_listeners_leader WHERE instance = $1")
            .bind(instance)
            .fetch_optional(conn)
            .await?;
    Ok(epoch.unwrap_or(0))
}

/// The fence, first statement of a writer's transaction: the lease row
/// read `FOR SHARE` (held to the commit) must carry `epoch`.
pub(super) async fn check(
    conn: &mut PgConnection,
    instance: &str,
    epoch: i64,
) -> Result<(), StoreError> {
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT epoch FROM event_listeners_leader WHERE instance = $1 FOR SHARE",
    )
    .bind(instance)
    .fetch_optional(&mut *conn)
    .await?;
    match current {
        Some(c) if c == epoch => Ok(()),
        other => Err(StoreError::Fenced {
            mine: epoch,
            current: other.unwrap_or(0),
        }),
    }
}

#[async_trait]
impl LeaderStore for PgStore {
    async fn lead(
        &self,
        instance: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let mut conn = PgConnection::connect_with(self.connect_options()).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(super::lock::CLASS)
            .bind(instance)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            // A holder that stopped renewing (its host gone without closing
            // its connection) is cut off, so that the next try succeeds.
            let stale: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(l.pid)
                 FROM pg_locks l, event_listeners_leader r
                 WHERE r.instance = $2 AND r.renewed_at < now() - make_interval(secs => $3)
                   AND l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid = ($1::int8 & 4294967295)::oid
                   AND l.objid = (hashtext($2)::int8 & 4294967295)::oid AND l.objsubid = 2",
            )
            .bind(super::lock::CLASS)
            .bind(instance)
            .bind(lease.as_secs_f64())
            .fetch_all(&mut conn)
            .await?;
            if stale.contains(&true) {
                tracing::warn!(instance = %instance, "The leader stopped renewing its lease; its lock's connection was terminated");
            }
            let _ = conn.close().await;
            return Ok(None);
        }
        // Waits for the previous leader's transactions still holding the
        // row FOR SHARE: after this commit none of them can commit.
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO event_listeners_leader (instance, epoch, holder, renewed_at)
             VALUES ($1, 1, $2, now())
             ON CONFLICT (instance) DO UPDATE SET epoch = event_listeners_leader.epoch + 1,
               holder = excluded.holder, renewed_at = now()
             RETURNING epoch",
        )
        .bind(instance)
        .bind(holder)
        .fetch_one(&mut conn)
        .await?;
        self.fence(Some(epoch));
        Ok(Some(Box::new(PgLease {
            conn,
            instance: instance.to_owned(),
            epoch,
        })))
    }

    async fn leader_row(&self, instance: &str) -> Result<Option<LeaderRow>, StoreError> {
        type Row = (
            i64,
            Option<String>,
            Option<chrono::DateTime<chrono::Utc>>,
            i64,
            i64,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT l.epoch, l.holder, l.renewed_at, l.published_through,
               (SELECT count(*) FROM event_listeners_inbox i
                WHERE i.instance = l.instance AND i.id > l.published_through)
             FROM event_listeners_leader l WHERE l.instance = $1",
        )
        .bind(instance)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(
            |(epoch, holder, renewed_at, published_through, outbox_depth)| LeaderRow {
                epoch,
                holder,
                renewed_at,
                published_through,
                outbox_depth,
            },
        ))
    }

    async fn outbox_after(
        &self,
        instance: &str,
        after: i64,
        limit: i64,
    ) -> Result<OutboxBatch, StoreError> {
        let rows: Vec<UnfinishedRow> = sqlx::query_as(
            "SELECT i.id, i.event_id, i.backfilled, i.raw::text, i.received_at, i.queue_id, i.key_id
             FROM event_listeners_inbox i
             WHERE i.instance = $1 AND i.id > $2 ORDER BY i.id LIMIT $3",
        )
        .bind(instance)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let through = rows.last().map_or(0, |r| r.0);
        let events = rows_to_unfinished(rows, Default::default(), self.cipher(), instance)?
            .into_iter()
            .map(|u| u.stored)
            .collect();
        Ok(OutboxBatch { events, through })
    }

    async fn mark_published(
        &self,
        instance: &str,
        epoch: i64,
        through: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE event_listeners_leader SET published_through = GREATEST(published_through, $3)
             WHERE instance = $1 AND epoch = $2",
        )
        .bind(instance)
        .bind(epoch)
        .bind(through)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                mine: epoch,
                current: current_epoch(self.pool(), instance).await?,
            })
        }
    }

    fn fence(&self, epoch: Option<i64>) {
        self.fence_cell()
            .store(epoch.unwrap_or(0), Ordering::SeqCst);
    }
}
