//! The file source: events recorded one per line in the JSON form
//! `GET /events` returns them, fed through the same pipeline as a live
//! queue. A malformed line is reported with its number and skipped.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::intake::{Pipeline, PipelineError};
use crate::store::Origin;

/// Lines per committed batch.
const BATCH: usize = 500;

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
    /// Malformed lines: (line number, problem).
    pub malformed: Vec<(u64, String)>,
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
    let mut lines = BufReader::new(file).lines();
    let mut report = FileReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut number = 0u64;
    loop {
        let line = lines.next_line().await.map_err(io)?;
        let done = line.is_none();
        if let Some(line) = line {
            number += 1;
            if !line.trim().is_empty() {
                report.lines += 1;
                match Event::parse_line(&line, number as i64) {
                    Ok(e) => batch.push(e),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), line = number, error = %e, "Skipping a malformed line");
                        report.malformed.push((number, e.to_string()));
                    }
                }
            }
        }
        if batch.len() >= BATCH || (done && !batch.is_empty()) {
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
