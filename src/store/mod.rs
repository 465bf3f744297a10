//! Persistence: the [`Store`] trait and its PostgreSQL and SQLite
//! implementations, with one migrations folder per backend.

mod aggregate;
mod backend;
mod postgres;
mod sqlite;

pub use aggregate::{ActivityTotals, StatsBucket};
pub use backend::{
    open, CleanupCounts, Cursor, RunRecord, Store, StoreError, StoreOptions, StoredEvent, Summary,
    Unfinished,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
