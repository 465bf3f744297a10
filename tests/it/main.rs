//! Integration tests: the real daemon (in-process or as its binary)
//! against the fake Zulip server in `support`, on a real SQLite file and a
//! real PostgreSQL database.

mod admin;
mod cli;
mod dispatch_defects;
mod faults;
mod file_source;
mod live;
mod operations;
mod reliability;
mod resilience;
mod statistics;
mod store_suite;
mod streaming;
mod support;
