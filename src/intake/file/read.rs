//! [`run_file`]: events recorded one per line in the JSON form
//! `GET /events` returns them, fed through the same pipeline as a live
//! queue. A line that is not an event (malformed JSON, not UTF-8, or over
//! [`LINE_LIMIT`]) is reported with its number and skipped; the file goes on.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use super::lines::{FileLine, LineBody, LineReader, LINE_LIMIT};
use crate::event::Event;
use crate::intake::{Pipeline, PipelineError};
use crate::pii::Pii;
use crate::store::Origin;

/// Lines per committed batch.
const BATCH: usize = 500;
/// Bytes of event text per committed batch, as a `GET /events` chunk: with
/// [`LINE_LIMIT`], what a batch holds in memory stays bounded.
const BATCH_BYTES: usize = 4 << 20;
/// Bytes read from the file at a time.
pub(crate) const READ_BUFFER: usize = 64 << 10;

/// What reading a file did.
#[derive(Debug, Default, Clone)]
pub struct FileReport {
    /// Lines read (blank lines excluded).
    pub lines: u64,
    /// Events stored (or described in dry-run).
    pub stored: u64,
    /// Events already in the inbox from an earlier run of the same file.
    pub duplicates: u64,
    /// Heartbeats skipped.
    pub heartbeats: u64,
    /// Lines skipped, in file order.
    pub skipped: Vec<SkippedLine>,
}

/// A line that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// Its number, from 1.
    pub line: u64,
    /// Why it was skipped.
    pub problem: LineProblem,
}

/// Why a line is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// Not a JSON event object with a `type`.
    Malformed(String),
    /// Not UTF-8: the first invalid byte, and where it is.
    NotUtf8 {
        /// The byte.
        byte: u8,
        /// Its offset in the line.
        in_line: u64,
        /// Its offset in the file.
        in_file: u64,
    },
    /// Longer than [`LINE_LIMIT`]: this many bytes.
    TooLong(u64),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::Malformed(e) => f.write_str(e),
            LineProblem::NotUtf8 {
                byte,
                in_line,
                in_file,
            } => write!(
                f,
                "not UTF-8: byte 0x{byte:02X} at byte {in_line} of the line (byte {in_file} of the file)"
            ),
            LineProblem::TooLong(bytes) => write!(
                f,
                "longer than the {} MiB line limit ({bytes} bytes)",
                LINE_LIMIT >> 20
            ),
        }
    }
}

/// Why the file could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Feeds every event in `path` through `pipeline`. Each event is keyed by
/// its line number, so running the same file twice stores nothing twice.
///
/// # Errors
///
/// [`FileError`] when the file cannot be read or the database fails.
pub(crate) async fn run_file(
    path: &Path,
    pipeline: &Pipeline,
    token: &CancellationToken,
) -> Result<FileReport, FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    let origin = Origin::File(path.to_owned());
    let mut lines = LineReader::new(BufReader::with_capacity(READ_BUFFER, file), LINE_LIMIT);
    let mut report = FileReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut batch_bytes = 0usize;
    loop {
        let line = lines.next_line().await.map_err(io)?;
        let done = line.is_none();
        if let Some(line) = line {
            match event_of(&line) {
                Ok(None) => {}
                Ok(Some((e, bytes))) => {
                    report.lines += 1;
                    batch_bytes += bytes;
                    batch.push(e);
                }
                Err(problem) => {
                    report.lines += 1;
                    tracing::warn!(file = %path.display(), line = line.number, error = %Pii(&problem), "Skipping a malformed line");
                    report.skipped.push(SkippedLine {
                        line: line.number,
                        problem,
                    });
                }
            }
        }
        if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES || (done && !batch.is_empty()) {
            batch_bytes = 0;
            let r = pipeline
                .accept(&origin, std::mem::take(&mut batch), None, token)
                .await?;
            report.stored += r.stored as u64;
            report.duplicates += r.duplicates as u64;
            report.heartbeats += r.heartbeats as u64;
        }
        if done || token.is_cancelled() {
            return Ok(report);
        }
    }
}

/// The event on `line` with the length of its text, `None` for a blank
/// line, or why the line is skipped (also how `test EVENTS.jsonl` reads
/// its lines).
pub(crate) fn event_of(line: &FileLine<'_>) -> Result<Option<(Event, usize)>, LineProblem> {
    let bytes = match line.body {
        LineBody::Bytes(b) => b,
        LineBody::TooLong(n) => return Err(LineProblem::TooLong(n)),
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            return Err(LineProblem::NotUtf8 {
                byte: bytes[at],
                in_line: at as u64,
                in_file: line.offset + at as u64,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    match Event::parse_line(text, line.number as i64) {
        Ok(e) => Ok(Some((e, text.len()))),
        Err(e) => Err(LineProblem::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8], offset: u64) -> Result<Option<(Event, usize)>, LineProblem> {
        event_of(&FileLine {
            number: 7,
            offset,
            body: LineBody::Bytes(bytes),
        })
    }

    #[test]
    fn a_line_that_is_not_utf8_is_skipped_naming_the_byte_and_where_it_is() {
        let Err(problem) = parsed(b"{\"type\":\"x\xff\"}", 100) else {
            panic!("not skipped");
        };
        assert_eq!(
            problem,
            LineProblem::NotUtf8 {
                byte: 0xFF,
                in_line: 10,
                in_file: 110
            }
        );
        assert_eq!(
            problem.to_string(),
            "not UTF-8: byte 0xFF at byte 10 of the line (byte 110 of the file)"
        );
    }

    #[test]
    fn an_event_line_is_keyed_by_its_number_and_a_blank_one_is_ignored() {
        let line = br#" {"type":"heartbeat","id":3} "#;
        let Ok(Some((e, len))) = parsed(line, 0) else {
            panic!("not an event");
        };
        assert_eq!((e.id(), len), (7, line.len()));
        assert!(matches!(parsed(b" \r", 0), Ok(None)));
    }

    #[test]
    fn an_over_long_line_says_the_limit_and_its_length() {
        let problem = LineProblem::TooLong(20_000_000);
        assert_eq!(
            problem.to_string(),
            "longer than the 16 MiB line limit (20000000 bytes)"
        );
    }
}
