//! The PostgreSQL backend: connecting, the inbox's and the recorder's
//! one-statement batch writes, the operator's writes, and statistics in SQL.

mod admin;
mod connect;
mod inbox;
mod record;
mod stats;

pub use connect::PgStore;
