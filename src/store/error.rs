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
    /// The instance lock's connection is down: nothing may be appended
    /// (acknowledged) until it is taken again.
    #[error("the database connection holding the instance lock is down; retrying")]
    LockNotHeld,
}

impl StoreError {
    /// Whether waiting and retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::LockNotHeld)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                // PostgreSQL class 08 (connection), 57P01-03 (shutdown), 53 (resources);
                // SQLite BUSY/LOCKED.
                let code = db.code().unwrap_or_default();
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "5"
                    || code == "6"
                {
                    StoreError::Unavailable(e)
                } else {
                    StoreError::Query(e)
                }
            }
            _ => StoreError::Query(e),
        }
    }
}
