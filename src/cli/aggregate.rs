//! `aggregate [--since AGE]`: recompute the listener statistics buckets
//! from the event log (a progress bar, or log lines, while it works), and
//! say how many were written or left alone.

use std::time::Duration;

use chrono::Utc;

use crate::app;
use crate::cli::age::{ago, format_time};
use crate::cli::exit::Failure;
use crate::cli::progress::Progress;
use crate::config::Config;

/// `aggregate [--since AGE]`.
///
/// # Errors
///
/// A [`Failure`] with exit code 4 when the database fails.
pub(crate) async fn cmd_aggregate(config: &Config, since: Option<Duration>) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let since = match since {
        Some(age) => Some(ago(Utc::now(), age)?),
        None => None,
    };
    let interval = config.statistics.aggregation_interval;
    // One transaction: the bar (or log lines) says it is at work, not how far.
    let mut progress = Progress::new("Recomputing statistics", "steps", 1);
    let report = store.aggregate(interval, since).await;
    progress.inc(1);
    progress.finish();
    let report = report?;
    println!(
        "Wrote {} listener stats bucket(s) of {} s from {} logged run(s){}.",
        report.written,
        interval.as_secs(),
        report.runs,
        since.map_or_else(String::new, |s| format!(" since {}", format_time(s)))
    );
    if report.kept() > 0 {
        println!(
            "Left {} existing bucket(s) unchanged: they hold the oldest event log rows, and older runs of theirs may have been deleted from the event log.",
            report.kept()
        );
    }
    Ok(())
}
