//! The PostgreSQL backend: connecting (and why it cannot), the inbox's and the recorder's
//! one-statement batch writes, the operator's writes, statistics in SQL, and
//! the wait at start for a killed predecessor's last statements.

mod admin;
mod builtin_rows;
mod changes;
mod connect;
mod copy_in;
mod eventruns;
mod inbox;
mod leader;
mod lock;
mod predecessor;
mod quarantined;
mod record;
mod stats;
mod unreachable;

pub use connect::PgStore;
