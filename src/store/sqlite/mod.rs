//! The SQLite backend, the embedded default: opening the file, the inbox's
//! and the recorder's chunked multi-row writes, the operator's writes, and
//! statistics partly in Rust.

mod admin;
mod connect;
mod inbox;
mod lock;
mod record;
mod stats;

pub use connect::SqliteStore;
