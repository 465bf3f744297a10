//! The daemon assembled: [`Application::build`] checks the credentials,
//! opens the store and starts the HTTP server; [`Application::run_until_stopped`]
//! starts the recorder and the dispatcher, re-dispatches what a crash left
//! unfinished, consumes its [`Source`] (the Zulip queue or a file) until it
//! ends or shutdown is asked for, then drains under a deadline.
//!
//! - `application`: build and run.
//! - `run`: the [`RunOptions`] and the [`RunReport`].
//! - `organization`: one organization's part (its client, intake,
//!   dispatcher, recorder and reply sender), several per process.
//! - `connect`: the outside world (Zulip client, identity check, store).
//! - `source`: where events come from.
//! - `http`: the HTTP server and admin API assembled.
//! - `services`: every background task, under one tracker and one token.
//! - `dead_letter_gauge`: the pending dead letters per listener, read from the store.
//! - `drain`: the shutdown deadline.
//! - `reload`: SIGHUP re-reads, checks and applies the configuration.
//! - `ingest_role`, `worker_role`: an organization run as `--role ingest`
//!   (lead or stand by, store, publish) or `--role worker` (consume, run, record).

#[cfg(target_os = "linux")]
mod allocator;
mod application;
mod connect;
mod dead_letter_gauge;
mod drain;
mod engine;
mod error;
mod http;
mod ingest_role;
pub mod malloc_tuning;
mod organization;
mod reload;
mod run;
mod services;
mod source;
mod worker_role;

pub use crate::clock::{Clock, SystemClock};
pub use application::{run, Application};
pub(crate) use connect::check_credentials;
pub use connect::{cipher, open_store, open_store_with, store_options, zulip_client};
pub use error::AppError;
#[cfg(test)]
pub(crate) use reload::build_each;
pub(crate) use reload::{validate, Validated};
pub use run::{RunOptions, RunReport};
pub use source::Source;

/// How many operator notifications wait for the webhook before more are
/// dropped (a slow webhook never slows dispatch).
pub use crate::notify::NOTICE_QUEUE;
