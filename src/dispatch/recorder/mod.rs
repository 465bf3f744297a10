//! The recorder: finished runs written to the store in group commits with
//! the dispatch watermark (`task.rs`: the loop, and automatic disables;
//! `commit.rs`: one group's write, retried while the database is away, and
//! the report);
//! and, when the database refuses a group, the runs it cannot store found
//! and recorded as failed alone, so their batch-mates are recorded all the
//! same (`isolate.rs`).

mod commit;
mod isolate;
mod task;

pub(crate) use commit::RecorderReport;
pub(crate) use task::{Recorder, Recording};
