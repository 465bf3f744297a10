//! zulip-event-listeners: a daemon that turns a Zulip organization's
//! real-time event stream into reliable work.
//!
//! One folder per component, in the order an event meets them
//! (`ARCHITECTURE.md` is the full map):
//!
//! - [`config`]: the TOML file read into a validated [`config::Config`].
//! - `zulip`: credentials (`zuliprc`, `ZULIP_*`), the HTTP client and its
//!   typed errors.
//! - `intake`: the poll loop and queue state machine, the backfill, the
//!   inbox writer every source feeds (events are committed to the inbox with
//!   the cursor before Zulip is told, by the next poll, that they arrived),
//!   the file source and memory backpressure.
//! - [`event`]: an event's raw JSON kept byte for byte, with typed views.
//! - [`dispatch`]: filters, ordering and partitioning, bounded concurrency,
//!   the run guard, retries, breakers, the recorder and replay.
//! - [`listeners`]: the [`listeners::Listener`] trait, the registry and the
//!   built-in listeners.
//! - [`store`]: the [`store::Store`] trait with PostgreSQL and SQLite
//!   backends, and statistics retention.
//! - `replies`: the reply sender, which posts the reply outbox to Zulip
//!   exactly once (confirmed by the echo of each reply's `local_id`).
//! - `http`: `/health` and `/metrics`.
//! - [`app`]: the daemon assembled, run until stopped, drained.
//! - [`cli`]: the subcommands and their exit codes; [`cli::main`] is the
//!   whole binary.
//! - `state`, `metrics`, `backoff`, `clock`, `telemetry`, `pii`, `notify`,
//!   `systemd`, `shutdown`, `tap`: what every component shares.
//!
//! The public API is what a custom listener and an embedding binary need:
//! [`listeners`], [`event`], [`config`], [`app`], [`cli`], the [`store`]
//! (for tools and tests) and [`dispatch::replay`]; everything else is
//! internal to the crate. (`fuzzing`, hidden, is not API: the entry
//! points of the fuzz targets in `fuzz/`.)
#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod app;
pub(crate) mod backoff;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod dispatch;
pub(crate) mod distributed;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub(crate) mod intake;
pub mod listeners;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod pii;
pub(crate) mod replies;
pub(crate) mod shutdown;
pub(crate) mod state;
pub mod store;
pub(crate) mod systemd;
pub(crate) mod tap;
pub(crate) mod telemetry;
pub(crate) mod zulip;
