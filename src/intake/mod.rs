//! Intake: the Zulip poll loop and its queue state machine, the backoff
//! between failed polls, and the [`Pipeline`] every source feeds.

mod backoff;
pub mod backpressure;
mod file;
mod inbox;
mod poller;

pub use backoff::Backoff;
pub use file::{run_file, FileError, FileReport};
pub use inbox::{AcceptReport, Pipeline, PipelineError, PipelineMode};
pub use poller::{Intake, IntakeError, IntakeSettings};
