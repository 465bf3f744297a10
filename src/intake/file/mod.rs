//! The file source (`run --events FILE`): `read` feeds the events of a
//! JSON-lines file through the inbox pipeline and reports the lines it
//! skipped; `lines` reads the file's lines as bytes, each bounded by
//! `lines::LINE_LIMIT`. `test EVENTS.jsonl` reads its file the same way
//! (`LineReader`, `event_of`).

mod lines;
mod read;

pub(crate) use lines::{LineReader, LINE_LIMIT};
pub(crate) use read::{event_of, run_file, FileError, FileReport, LineProblem, READ_BUFFER};
