//! Intake: how events get in. The Zulip poll loop (`poller`) and its queue
//! state machine (`queue`: resume, register, release), the commit of a
//! response in chunks as it arrives (`page`), two at a time on PostgreSQL
//! (`flight`), each chunk sorted into events and elements kept in
//! quarantine (`sift`, noted by `quarantine`), the backfill after a lost
//! queue (`backfill`), what each happening logs and counts (`notes`),
//! pacing under Zulip's rate limit (`pacing`), noticing a suspend or clock
//! jump (`wakeup`), memory backpressure, the JSON-lines file source
//! (`file`), and the inbox [`Pipeline`] every source feeds (`inbox`; what a
//! dry run prints instead, `dry_run`).

mod backfill;
pub(crate) mod backpressure;
mod committed;
mod dry_run;
mod file;
mod flight;
mod handoff;
mod inbox;
mod notes;
mod outbox_gate;
pub(crate) mod pacing;
mod page;
mod pipeline_error;
mod poller;
mod quarantine;
mod queue;
mod received;
mod sift;
mod wakeup;

pub(crate) use file::{
    event_of, run_file, FileError, FileReport, LineProblem, LineReader, LINE_LIMIT, READ_BUFFER,
};
pub(crate) use inbox::{Pipeline, PipelineError, PipelineMode};
pub(crate) use outbox_gate::OutboxGate;
pub(crate) use poller::{Intake, IntakeError, IntakeSettings};
