//! The instance lock on PostgreSQL: a session advisory lock on
//! (`CLASS`, `hashtext(instance)`), held by a dedicated connection that a
//! task pings. When the ping fails the store stops appending (nothing is
//! acknowledged) while the task takes the lock again on a new connection;
//! if another process holds it by then, the lock is lost and the daemon
//! stops.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::store::error::StoreError;
use crate::store::lock::{InstanceLock, LockState};

/// The advisory lock class of this daemon: "ZEL".
pub(super) const CLASS: i32 = 0x005A_454C;
/// How often the lock's connection is checked.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How long a ping may take before the connection counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes the lock of `instance`, or says who holds it.
pub(super) async fn take(
    options: PgConnectOptions,
    instance: &str,
    state: Arc<LockState>,
) -> Result<InstanceLock, StoreError> {
    let conn = match try_take(&options, instance).await? {
        Ok(conn) => conn,
        Err(holder) => {
            return Err(StoreError::InstanceLocked {
                what: format!("instance `{instance}` of this PostgreSQL database"),
                holder,
            })
        }
    };
    state.set_held();
    let (lost, release) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(watch(
        conn,
        options,
        instance.to_owned(),
        state.clone(),
        lost.clone(),
        release.clone(),
    ));
    Ok(InstanceLock::watched(lost, release, state))
}

/// A connection holding the lock, or the holder's name when another
/// session holds it.
async fn try_take(
    options: &PgConnectOptions,
    instance: &str,
) -> Result<Result<PgConnection, String>, StoreError> {
    let mut conn = PgConnection::connect_with(options).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(CLASS)
        .bind(instance)
        .fetch_one(&mut conn)
        .await?;
    if got {
        return Ok(Ok(conn));
    }
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT a.application_name || ' (from ' || COALESCE(host(a.client_addr), 'a local socket')
                || ', connected since ' || to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') || ')'
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = ($1::int8 & 4294967295)::oid
           AND l.objid = (hashtext($2)::int8 & 4294967295)::oid AND l.objsubid = 2
         LIMIT 1",
    )
    .bind(CLASS)
    .bind(instance)
    .fetch_optional(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(Err(holder.unwrap_or_else(|| "another session".to_owned())))
}

/// Pings the lock's connection until `release`; takes the lock again
/// when the connection dies, and cancels `lost` when another holds it.
async fn watch(
    mut conn: PgConnection,
    options: PgConnectOptions,
    instance: String,
    state: Arc<LockState>,
    lost: CancellationToken,
    release: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = release.cancelled() => {
                let _ = conn.close().await;
                return;
            }
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        let ping =
            tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(&mut conn)).await;
        if matches!(ping, Ok(Ok(_))) {
            continue;
        }
        state.set_retaking();
        tracing::warn!(instance = %instance, "The connection holding the instance lock is down; appending nothing until it is taken again");
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        conn = loop {
            match try_take(&options, &instance).await {
                Ok(Ok(c)) => break c,
                Ok(Err(holder)) => {
                    state.set_lost();
                    tracing::error!(instance = %instance, holder = %holder, "Another process took the instance lock; stopping");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Cannot take the instance lock again yet");
                }
            }
            tokio::select! {
                _ = release.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        };
        state.set_held();
        tracing::info!(instance = %instance, "Instance lock taken again");
    }
}
