//! zulip-event-listeners: a daemon that turns a Zulip organization's
//! real-time event stream into reliable work.
//!
//! Components, in the order an event meets them:
//!
//! - [`zulip`]: credentials (`zuliprc`, `ZULIP_*`), the HTTP client and its
//!   typed errors.
//! - [`intake`]: the poll loop and queue state machine; events are written
//!   to the inbox and the cursor advanced in one transaction before Zulip is
//!   told (by the next poll) that they were received.
//! - [`source`]: the other way in, a JSON-lines file of recorded events.
//! - [`event`]: an event's raw JSON kept byte for byte, with typed views.
//! - [`dispatch`]: hands committed events to the listeners that want them,
//!   with bounded concurrency and timeouts, and records every run.
//! - [`listeners`]: the [`listeners::Listener`] trait, the registry and the
//!   built-in listeners.
//! - [`store`]: the [`store::Store`] trait with PostgreSQL and SQLite backends.
//! - [`config`], [`telemetry`], [`app`], [`cli`], [`shutdown`]: the daemon around them.
//! - [`retention`], [`stats_report`]: deleting old statistics while the
//!   daemon runs, and the `stats` command's tables.
//! - [`admin`], [`replay`], [`admin_cli`]: listeners disabled in the
//!   database, dead letters run again, and the operator subcommands.
//! - [`routing`], [`filters`]: ordering keys and the split of events
//!   between instances; the filters that skip events (too old, blocked or
//!   rate-limited users, per-listener filters).
//! - [`memory`]: pausing polling while resident memory is above the threshold.
#![warn(missing_docs)]

pub mod admin;
pub mod admin_cli;
pub mod app;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod event;
pub mod filters;
pub mod health;
pub mod http;
pub mod intake;
pub mod listeners;
pub mod malloc_tuning;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod replay;
pub mod retention;
pub mod routing;
pub mod shutdown;
pub mod source;
pub mod state;
pub mod stats_report;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod zulip;
