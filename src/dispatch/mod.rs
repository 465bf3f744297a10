//! Dispatch: committed events → listener runs → recorded outcomes.
//!
//! [`Dispatcher`] starts one run per (event, interested listener) under a
//! global concurrency limit, each through the one run guard (`run.rs`:
//! timeout, panics caught) that replay uses too; [`Recorder`] writes the
//! finished runs in group commits, and automatic disables; [`Progress`]
//! tracks which inbox events still have runs outstanding so that a restart
//! re-dispatches exactly those. [`ordering`] and [`partition`] say which
//! runs keep their order and which events this instance owns; [`filters`]
//! which runs are skipped.

mod breaker;
mod control;
mod dispatcher;
pub mod filters;
mod lanes;
mod notice;
pub mod ordering;
pub mod partition;
mod progress;
mod recorder;
pub mod replay;
mod run;
mod settings;

pub use breaker::{Admission, Breaker, BreakerSettings, Transition};
pub use control::Control;
pub use dispatcher::{Dispatcher, ADMISSION_FACTOR};
pub use lanes::{Lanes, Turn};
pub use notice::Notice;
pub use progress::Progress;
pub use recorder::{Recorder, RecorderReport, Recording};
pub use settings::{DispatcherSettings, RetryPolicy};
