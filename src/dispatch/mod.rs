//! Dispatch: committed events → listener runs → recorded outcomes. Its
//! one public part is [`replay`]; the rest is internal to the crate.
//!
//! `Dispatcher` starts one run per (event, interested listener) under a
//! global concurrency limit, each through the one run guard (`run.rs`:
//! timeout, panics caught) that replay uses too; `Recorder` writes the
//! finished runs in group commits, and automatic disables; `Progress`
//! tracks which inbox events still have runs outstanding so that a restart
//! re-dispatches exactly those. `ordering` and `partition` say which
//! runs keep their order and which events this instance owns; `filters`
//! which runs are skipped; `tapped` what the tap shows of an event
//! entering dispatch and of each run's outcome.

mod breaker;
mod control;
mod dispatcher;
mod failure;
mod fallback;
pub(crate) mod filters;
mod lanes;
mod notice;
pub(crate) mod ordering;
pub(crate) mod partition;
mod progress;
mod recorder;
pub mod replay;
mod route;
mod run;
mod settings;
mod tapped;

pub(crate) use breaker::BreakerSettings;
pub(crate) use control::{Control, Replacement};
pub(crate) use dispatcher::Dispatcher;
pub(crate) use failure::guard;
pub(crate) use notice::Notice;
pub(crate) use progress::Progress;
pub(crate) use recorder::{Recorder, RecorderReport};
pub(crate) use route::route;
pub(crate) use settings::{DispatcherSettings, RetryPolicy};
