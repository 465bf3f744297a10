//! What a run is asked from the command line ([`RunOptions`]) and what it
//! did ([`RunReport`], summed over the organizations).

use std::path::PathBuf;

use crate::config::Role;
use crate::dispatch::RecorderReport;
use crate::intake::FileReport;
use crate::store::Summary;

/// Run-time choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Describe instead of storing and running.
    pub dry_run: bool,
    /// Run only these listeners instead of `[listeners] enabled`.
    pub listeners: Option<Vec<String>>,
    /// Read events from this JSON-lines file instead of Zulip.
    pub events_file: Option<PathBuf>,
    /// Delete the Zulip queue on exit.
    pub release_queue: bool,
    /// On the first start, backfill messages after this id.
    pub backfill_since: Option<i64>,
    /// The configuration file a SIGHUP re-reads and applies (`None`: a
    /// SIGHUP only reopens the log file).
    pub config_file: Option<PathBuf>,
    /// What this process does in a distributed deployment (`--role`).
    pub role: Role,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// The file source's counts, for `--events`.
    pub file: Option<FileReport>,
    /// Events stored by this run.
    pub stored: u64,
    /// Events that were already stored.
    pub duplicates: u64,
    /// Runs re-dispatched from before a restart.
    pub recovered: usize,
    /// The recorder's counts.
    pub recorder: RecorderReport,
    /// Row counts at the end (not in dry-run).
    pub summary: Option<Summary>,
    /// Where the data went.
    pub location: Option<String>,
}

impl RunReport {
    /// Adds another organization's counts to these.
    pub(super) fn absorb(&mut self, other: RunReport) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.recovered += other.recovered;
        let (mine, theirs) = (&mut self.recorder, other.recorder);
        mine.recorded += theirs.recorded;
        mine.failures += theirs.failures;
        mine.unrecordable += theirs.unrecordable;
        mine.unrecorded += theirs.unrecorded;
        self.file = self.file.take().or(other.file);
        self.location = self.location.take().or(other.location);
    }
}
