//! Persistence: the [`Store`], [`AdminStore`], [`AuditStore`], [`StatsStore`] and
//! [`DeadLetterStore`] traits,
//! the rows they move, and their PostgreSQL and SQLite implementations side
//! by side, with one migrations folder per backend. What both backends
//! share is written once: the rows and their decoding (`model`), the
//! statements that are the same text (`sql`), and the trait methods built
//! on them (`shared`); each backend supplies the rest (`dialect`).

mod admin;
mod aggregate;
mod api;
mod audit;
mod audit_trail;
mod changes;
mod crypto;
mod cursor_control;
mod dialect;
mod error;
mod inbox_rows;
mod leader;
mod listener_rows;
mod lock;
mod model;
mod open;
mod outbox;
mod postgres;
mod repeats;
pub mod retention;
mod rotation;
mod shared;
mod shared_admin;
mod shared_stats;
mod sql;
mod sqlite;
mod statistics;
mod storable;
mod triage;
mod triage_model;
mod workers;

pub use crate::config::{DatabaseUrl, UrlError};
pub use admin::{AdminStore, PendingDeadLetter};
pub use aggregate::{ActivityTotals, StatsBucket};
pub use api::Store;
pub use audit::{AuditAction, AuditEntry, AuditOutcome, AuditRow, AuditStore};
pub use audit_trail::AuditTrail;
pub use crypto::{Aad, Cipher, CryptoError, KeyId, Keyring, KeyringError};
pub use cursor_control::{CursorPosition, CursorStore, RewindFrom, Rewound, SKIPPED_PREFIX};
pub use error::StoreError;
pub use inbox_rows::{DeadLetter, LoggedEvent};
pub use leader::{LeaderRow, LeaderStore, Lease, OutboxBatch};
pub(crate) use lock::holder_name;
pub use lock::InstanceLock;
pub use model::{
    CleanupCounts, Cursor, FallbackLink, FallbackOutcome, Line, ListenerOverview, ListenerState,
    Origin, RunRecord, StoreOptions, StoredEvent, Summary, Turn, Unfinished,
};
pub use open::open;
pub use outbox::{local_id, OpenStatus, OutboxReply, OutboxStore, LOCAL_ID_PREFIX};
pub use postgres::PgStore;
pub use rotation::{RotatedBatch, RotationStore, SealedTable, WalkFrom};
pub use sqlite::SqliteStore;
pub use statistics::{AggregateReport, ErrorCount, ListenerSummary, RetentionReport, StatsStore};
pub use triage::DeadLetterStore;
pub use triage_model::{
    DeadLetterCause, DeadLetterFilter, DeadLetterStatus, DeadLetterSummary, ErrorClass, Stage,
    UnknownWord,
};
pub use workers::WorkerStore;
