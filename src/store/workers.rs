//! [`WorkerStore`]: what the workers of a distributed deployment
//! (`run --role worker`) ask the database besides recording runs: which
//! listeners already have a logged run for a batch of deliveries (so a
//! redelivery is not run twice), and the membership table through which
//! the live workers split the partitions. Membership is PostgreSQL's only
//! (the roles refuse SQLite); the logged runs work on both backends.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::dialect::Dialect;
use super::error::StoreError;
use super::sql::Pool;

/// The logged runs of a set of inbox ids (minus those an operator rewound),
/// from the event log view's two tables: the compact rows whose inbox ids
/// may hold them, by their bounds (migration `20261203000014`).
const LOGGED_RUNS_PG: &str = concat!(
    "WITH ids AS (SELECT min(x) AS lo, max(x) AS hi FROM unnest($1::int8[]) AS x)
     SELECT e.inbox_id, e.listener_name FROM (
       SELECT id, inbox_id, listener_name FROM event_listeners_eventlog_rows
       WHERE inbox_id = ANY($1)
       UNION ALL
       SELECT b.id, u.inbox_id, u.listener_name FROM event_listeners_eventruns b
       CROSS JOIN ids
       CROSS JOIN LATERAL UNNEST(b.inbox_ids, b.listeners) AS u(inbox_id, listener_name)
       WHERE b.last_inbox >= ids.lo AND b.first_inbox <= ids.hi AND u.inbox_id = ANY($1)) e
     WHERE ",
    super::sql::not_rewound!()
);
const LOGGED_RUNS_SQLITE: &str = concat!(
    "SELECT e.inbox_id, e.listener_name FROM event_listeners_eventlog e
     WHERE e.inbox_id = $1 AND ",
    super::sql::not_rewound!()
);

/// The heartbeat, then the live workers, in the database's clock.
const HEARTBEAT: &str = "INSERT INTO event_listeners_workers (instance, worker_id, heartbeat_at)
     VALUES ($1, $2, now())
     ON CONFLICT (instance, worker_id) DO UPDATE SET heartbeat_at = now()";
const LIVE: &str = "SELECT worker_id FROM event_listeners_workers
     WHERE instance = $1 AND heartbeat_at > now() - make_interval(secs => $2)
     ORDER BY worker_id";
/// Rows dead for long are deleted as the heartbeats go.
const FORGET: &str = "DELETE FROM event_listeners_workers
     WHERE instance = $1 AND heartbeat_at < now() - make_interval(secs => $2)";
const LEAVE: &str = "DELETE FROM event_listeners_workers WHERE instance = $1 AND worker_id = $2";

/// The workers' side of the store.
#[async_trait]
pub trait WorkerStore: Send + Sync {
    /// For each of `inbox_ids` that has any, the listeners with a logged
    /// run (rewound runs left out, as recovery does).
    async fn logged_runs(
        &self,
        instance: &str,
        inbox_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError>;
    /// Notes that `worker_id` of `instance` is alive now, and gives the
    /// live workers (a heartbeat within `lease`), sorted.
    async fn worker_heartbeat(
        &self,
        instance: &str,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Vec<String>, StoreError>;
    /// The live workers of `instance` (a heartbeat within `lease`),
    /// sorted, without heartbeating: for `list`.
    async fn live_workers(
        &self,
        instance: &str,
        lease: Duration,
    ) -> Result<Vec<String>, StoreError>;
    /// Removes `worker_id` at shutdown, so the others take its partitions
    /// at their next heartbeat rather than after the lease.
    async fn worker_leave(&self, instance: &str, worker_id: &str) -> Result<(), StoreError>;
}

fn postgres_only() -> StoreError {
    StoreError::Query(sqlx::Error::Protocol(
        "worker membership needs PostgreSQL".to_owned(),
    ))
}

#[async_trait]
impl<T: Dialect> WorkerStore for T {
    async fn logged_runs(
        &self,
        instance: &str,
        inbox_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let rows: Vec<(i64, String)> = match self.pool() {
            Pool::Postgres(p) => {
                sqlx::query_as(LOGGED_RUNS_PG)
                    .bind(inbox_ids)
                    .bind(instance)
                    .fetch_all(p)
                    .await?
            }
            Pool::Sqlite(p) => {
                let mut all = Vec::new();
                for id in inbox_ids {
                    let rows: Vec<(i64, String)> = sqlx::query_as(LOGGED_RUNS_SQLITE)
                        .bind(id)
                        .bind(instance)
                        .fetch_all(p)
                        .await?;
                    all.extend(rows);
                }
                all
            }
        };
        let mut done: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, listener) in rows {
            done.entry(id).or_default().push(listener);
        }
        Ok(done)
    }

    async fn worker_heartbeat(
        &self,
        instance: &str,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let Pool::Postgres(p) = self.pool() else {
            return Err(postgres_only());
        };
        let secs = lease.as_secs_f64();
        sqlx::query(HEARTBEAT)
            .bind(instance)
            .bind(worker_id)
            .execute(p)
            .await?;
        sqlx::query(FORGET)
            .bind(instance)
            .bind(secs * 10.0)
            .execute(p)
            .await?;
        self.live_workers(instance, lease).await
    }

    async fn live_workers(
        &self,
        instance: &str,
        lease: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let Pool::Postgres(p) = self.pool() else {
            return Err(postgres_only());
        };
        let live: Vec<(String,)> = sqlx::query_as(LIVE)
            .bind(instance)
            .bind(lease.as_secs_f64())
            .fetch_all(p)
            .await?;
        Ok(live.into_iter().map(|(w,)| w).collect())
    }

    async fn worker_leave(&self, instance: &str, worker_id: &str) -> Result<(), StoreError> {
        let Pool::Postgres(p) = self.pool() else {
            return Err(postgres_only());
        };
        sqlx::query(LEAVE)
            .bind(instance)
            .bind(worker_id)
            .execute(p)
            .await?;
        Ok(())
    }
}
