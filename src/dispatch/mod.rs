//! Dispatch: committed events → listener runs → recorded outcomes.
//!
//! [`Dispatcher`] starts one run per (event, interested listener) under a
//! global concurrency limit and a per-run timeout; [`Recorder`] writes the
//! finished runs in group commits; [`Progress`] tracks which inbox events
//! still have runs outstanding so that a restart re-dispatches exactly those.

mod breaker;
mod dispatcher;
pub mod filters;
mod lanes;
mod progress;
mod recorder;
pub mod replay;
pub mod routing;

pub use breaker::{Admission, Breaker, BreakerSettings, Transition};
pub use dispatcher::{
    Control, Dispatcher, DispatcherSettings, Notice, RetryPolicy, ADMISSION_FACTOR,
};
pub use lanes::{Lanes, Turn};
pub use progress::Progress;
pub use recorder::{Recorder, RecorderReport};
