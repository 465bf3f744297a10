//! Integration tests: the real daemon (in-process or as its binary)
//! against the fake Zulip server in `support`, on a real SQLite file and a
//! real PostgreSQL database.

mod admin;
mod admin_api;
mod audit;
mod backfilled_rows;
mod backup;
mod cli;
mod content_length;
mod current_servers;
mod cursor;
mod discards;
mod dispatch_defects;
mod encryption;
mod exec;
mod faults;
mod file_source;
mod fuzz_corpus;
mod http_limits;
mod instance_lock;
mod intake;
mod live;
mod log_sanitization;
mod message_log;
mod message_log_store;
mod operations;
mod organizations;
mod poison;
mod poison_pages;
mod ready;
mod reliability;
mod replies;
mod replies_faults;
mod replies_store;
mod resilience;
mod secrets;
mod sqlite_faults;
mod statistics;
mod store_suite;
mod streaming;
mod support;
mod tls;
mod traces;
mod unreachable_db;
mod webhook;
