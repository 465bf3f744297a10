//! [`StoreError`]: a database failure, split by what the caller does about
//! it, and its mapping from sqlx's errors.

/// A database failure, split by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or dropped the connection: retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A PostgreSQL database has migrations that `migrate` must apply first.
    #[error("the database has {count} pending migration(s) ({names}); run `zulip-event-listeners migrate` first")]
    PendingMigrations {
        /// How many.
        count: usize,
        /// Their descriptions.
        names: String,
    },
    /// Any other database error (a bug or a schema mismatch).
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another daemon holds the instance lock.
    #[error("another zulip-event-listeners is running {what}: {holder}. Stop it first, or give this one another `[scaling] instance_id` (on SQLite, another database file)")]
    InstanceLocked {
        /// The instance or file.
        what: String,
        /// Who holds it (host, pid, since when).
        holder: String,
    },
    /// The database password could not be read (a configuration problem).
    #[error("the database password: {0}")]
    Password(#[source] crate::config::SecretError),
    /// The encryption keys could not be read (a configuration problem).
    #[error("the encryption keys: {0}")]
    Keyring(#[source] super::crypto::KeyringError),
    /// A row could not be encrypted or decrypted (its key is not held, or it
    /// was altered).
    #[error(transparent)]
    Crypto(#[from] super::crypto::CryptoError),
    /// The instance lock's connection is down: nothing may be appended
    /// (acknowledged) until it is taken again.
    #[error("the database connection holding the instance lock is down; retrying")]
    LockNotHeld,
    /// Another ingest leads now (its epoch is not this process's): the
    /// write was refused and rolled back; the caller demotes.
    #[error("another ingest took the lead of this instance (epoch {current}, this one {mine}); this write was refused")]
    Fenced {
        /// This process's epoch.
        mine: i64,
        /// The stored epoch (0: no row).
        current: i64,
    },
    /// A batch sent while the one before it was still in flight found the
    /// cursor elsewhere than where that batch leaves it, once that batch
    /// was done (it had not committed, or had not begun): rolled back, so
    /// no batch ever commits ahead of the one before it. The caller writes
    /// it again after that one.
    #[error("the batch before this one had not committed when this one came to move the cursor (from event {expected}); rolled back, to be written again after it")]
    OutOfTurn {
        /// The event id the cursor was to move from.
        expected: i64,
    },
    /// What the backend cannot do (the distributed mode on SQLite).
    #[error("{0} needs PostgreSQL")]
    Unsupported(&'static str),
    /// The SQLite database file, or its lock file, was deleted or replaced
    /// while the daemon ran: its commits go to a file nobody will read, so
    /// it stops before acknowledging them.
    #[error("{file} is no longer the file this daemon opened ({change}): it was deleted or replaced while the daemon ran. Stopping without acknowledging what was stored since; restore the file if it was a mistake, then start again (the daemon opens whatever file the path names then)")]
    FileReplaced {
        /// The path.
        file: String,
        /// What it names now.
        change: String,
    },
}

impl StoreError {
    /// Whether waiting and retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::LockNotHeld)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => {
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    sqlite_outage(db.code().as_deref())
                } else {
                    postgres_outage(db.code().as_deref())
                }
            }
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(e)
        } else {
            StoreError::Query(e)
        }
    }
}

/// PostgreSQL class 08 (connection), 57P01-03 (shutdown), 53 (resources:
/// disk full, out of memory, too many connections).
fn postgres_outage(code: Option<&str>) -> bool {
    let code = code.unwrap_or_default();
    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
}

/// SQLite's primary result codes (the low byte of the extended code sqlx
/// reports) that waiting may cure: BUSY and LOCKED (another writer), IOERR
/// (a write or fsync the OS refused, such as `ENOSPC` while growing the
/// write-ahead log) and FULL (the disk is full). A full disk is an outage
/// like an unreachable server: nothing is acknowledged until space returns.
fn sqlite_outage(code: Option<&str>) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    let primary = code.and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
    matches!(primary, Some(BUSY | LOCKED | IOERR | FULL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_a_failed_write_on_sqlite_is_an_outage() {
        // SQLITE_FULL, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC, SQLITE_BUSY_TIMEOUT.
        for code in ["13", "778", "1034", "773", "5", "6"] {
            assert!(sqlite_outage(Some(code)), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_ERROR, SQLITE_CORRUPT, none.
        for code in ["2067", "1", "11"] {
            assert!(!sqlite_outage(Some(code)), "{code}");
        }
        assert!(!sqlite_outage(None));
    }

    #[test]
    fn postgres_connection_shutdown_and_resource_errors_are_an_outage() {
        for code in ["08006", "57P01", "53100", "53300"] {
            assert!(postgres_outage(Some(code)), "{code}");
        }
        for code in ["23505", "22021", "42P01"] {
            assert!(!postgres_outage(Some(code)), "{code}");
        }
    }

    #[tokio::test]
    async fn a_full_sqlite_database_maps_to_unavailable() {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect("sqlite::memory:")
            .await
            .unwrap();
        // One page of 4096 bytes at most: the second row does not fit.
        sqlx::query("PRAGMA max_page_count = 2")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x BLOB)")
            .execute(&mut conn)
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO t VALUES (zeroblob(100000))")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let err = StoreError::from(err);
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.is_transient());
    }
}
