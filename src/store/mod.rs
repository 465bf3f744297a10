//! Persistence: the [`Store`] trait and its PostgreSQL and SQLite
//! implementations, with one migrations folder per backend.

mod admin;
mod aggregate;
mod backend;
mod postgres;
mod postgres_admin;
mod postgres_record;
mod postgres_stats;
pub mod retention;
mod sqlite;
mod sqlite_admin;
mod sqlite_stats;
mod statistics;

pub use admin::{
    AdminStore, AuditAction, DeadLetter, ListenerOverview, ListenerState, LoggedEvent,
};
pub use aggregate::{ActivityTotals, StatsBucket};
pub use backend::{
    open, CleanupCounts, Cursor, RunRecord, Store, StoreError, StoreOptions, StoredEvent, Summary,
    Unfinished,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use statistics::{AggregateReport, ErrorCount, ListenerSummary, RetentionReport, StatsStore};
