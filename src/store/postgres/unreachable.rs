//! Why PostgreSQL gives no connection. sqlx's pool retries a refused
//! connection ("connection refused") and a full server ("too many clients",
//! "too many connections for role": SQLSTATE 53300) quietly until its
//! acquire timeout, then says only "pool timed out while waiting for an open
//! connection"; sqlx 0.8 keeps none of the attempts' errors and no hook sees
//! them (`after_connect` runs only on success). So when the pool times out,
//! one connection is attempted directly, and its error is the one reported.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// How long the direct attempt may take (a refusal or a full server answers
/// at once; a host that does not answer keeps the pool's own error).
const DIRECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `e`; or, when it is the pool's timeout, the error of one connection
/// attempt with `connect` made directly. The pool's timeout stays when that
/// attempt connects (the pool's own connections were all busy) or gets no
/// answer either.
pub(super) async fn explain(e: sqlx::Error, connect: &PgConnectOptions) -> sqlx::Error {
    if !matches!(e, sqlx::Error::PoolTimedOut) {
        return e;
    }
    match tokio::time::timeout(DIRECT_TIMEOUT, connect.connect()).await {
        Ok(Err(cause)) => cause,
        Ok(Ok(conn)) => {
            close(conn).await;
            e
        }
        Err(_) => e,
    }
}

/// Ends the direct attempt's session politely, without waiting long.
async fn close(conn: PgConnection) {
    let _ = tokio::time::timeout(DIRECT_TIMEOUT, conn.close()).await;
}
