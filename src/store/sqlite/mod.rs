//! The SQLite backend, the embedded default: opening the file, the inbox's
//! and the recorder's chunked multi-row writes, the operator's writes, and
//! statistics partly in Rust; and the check, before each append returns,
//! that the database file is still the one opened.

mod admin;
mod changes;
mod connect;
mod identity;
mod inbox;
mod lock;
mod record;
mod stats;

pub use connect::SqliteStore;
