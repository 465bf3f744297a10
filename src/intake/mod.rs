//! Intake: the Zulip poll loop and its queue state machine, the backoff
//! between failed polls, and the [`Pipeline`] every source feeds.

mod backoff;
mod pipeline;
mod poller;

pub use backoff::Backoff;
pub use pipeline::{AcceptReport, Pipeline, PipelineError, PipelineMode};
pub use poller::{Intake, IntakeError, IntakeSettings};
