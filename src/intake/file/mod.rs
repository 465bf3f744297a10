//! The file source (`run --events FILE`): `read` feeds the events of a
//! JSON-lines file through the inbox pipeline and reports the lines it
//! skipped; `lines` reads the file's lines as bytes, each bounded by
//! `lines::LINE_LIMIT`.

mod lines;
mod read;

pub(crate) use read::{run_file, FileError, FileReport, LineProblem};
