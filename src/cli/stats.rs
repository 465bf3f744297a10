//! `stats [--listener NAME] [--since AGE]`: per-listener statistics read
//! from the store, and their text: sparklines of per-bucket volume and one
//! table per listener, then how many elements are in quarantine.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app;
use crate::cli::age::{ago, format_age, format_time};
use crate::cli::exit::Failure;
use crate::config::Config;
use crate::store::ListenerSummary;

/// Sparkline levels, lowest first; a slot without runs shows the lowest.
pub const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Most characters in a sparkline; longer windows merge buckets per character.
pub const SPARK_WIDTH: u64 = 48;

/// `stats [--listener NAME] [--since AGE]`.
///
/// # Errors
///
/// A [`Failure`] with exit code 4 when the database fails.
pub(crate) async fn cmd_stats(
    config: &Config,
    listener: Option<&str>,
    since: Duration,
) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let now = Utc::now();
    let from = ago(now, since)?;
    let summaries = store.listener_stats(listener, from).await?;
    if summaries.is_empty() {
        match listener {
            Some(name) => println!("No runs of listener `{name}` since {}.", format_time(from)),
            None => println!("No listener runs since {}.", format_time(from)),
        }
    } else {
        let interval = config.statistics.aggregation_interval;
        print!("{}", render(&summaries, from, now, interval));
    }
    if let Some(note) = quarantine_note(store.quarantined_count().await?) {
        println!("{note}");
    }
    Ok(())
}

/// The line that says what is in quarantine, when anything is.
fn quarantine_note(n: i64) -> Option<String> {
    (n > 0).then(|| {
        format!(
            "{n} element(s) Zulip sent are no event as they came (not UTF-8, a repeated id with other content, no id): kept in event_listeners_quarantine, see the README."
        )
    })
}

/// One character per value, scaled to the largest: zero is `▁`, any
/// positive value at least `▂`, the largest `█`.
pub fn sparkline(values: &[u64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| {
            let level = if v == 0 || max == 0 {
                0
            } else {
                // ceil(v * 7 / max), in 1..=7, without overflow.
                let scaled = (u128::from(v) * 7).div_ceil(u128::from(max));
                scaled.clamp(1, 7) as usize
            };
            SPARK_LEVELS[level]
        })
        .collect()
}

/// Spreads per-bucket counts over at most [`SPARK_WIDTH`] slots covering
/// `since..now`; each slot is a whole number of `interval`-wide buckets.
/// Returns the slots, oldest first, and the time each covers.
pub fn volume_slots(
    volume: &[(DateTime<Utc>, i64)],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    interval: Duration,
) -> (Vec<u64>, Duration) {
    let width = interval.as_secs().max(1);
    let start = since.timestamp().div_euclid(width as i64) * width as i64;
    let span = u64::try_from(now.timestamp() - start).unwrap_or(0).max(1);
    let buckets = span.div_ceil(width);
    let per_slot = buckets.div_ceil(SPARK_WIDTH).max(1);
    let slot_secs = per_slot * width;
    let mut slots = vec![0u64; span.div_ceil(slot_secs) as usize];
    let last = slots.len() - 1;
    for (bucket, count) in volume {
        let offset = u64::try_from(bucket.timestamp() - start).unwrap_or(0);
        let i = ((offset / slot_secs) as usize).min(last);
        slots[i] += u64::try_from(*count).unwrap_or(0);
    }
    (slots, Duration::from_secs(slot_secs))
}

/// Milliseconds with three significant digits or more: `0.0123 ms`, `4.56 ms`, `1234 ms`.
fn millis(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".to_owned();
    };
    let ms = d.as_secs_f64() * 1000.0;
    let decimals = match ms {
        m if m >= 100.0 => 0,
        m if m >= 10.0 => 1,
        m if m >= 1.0 => 2,
        m if m >= 0.1 => 3,
        _ => 4,
    };
    format!("{ms:.decimals$} ms")
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "never".to_owned(), format_time)
}

/// The `stats` report: a header, then a table per listener.
pub fn render(
    summaries: &[ListenerSummary],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    interval: Duration,
) -> String {
    let mut out = String::new();
    let window = Duration::from_secs(u64::try_from((now - since).num_seconds()).unwrap_or(0));
    let _ = writeln!(
        out,
        "Listener runs in the last {} (since {}):",
        format_age(window),
        time(Some(since))
    );
    for s in summaries {
        render_listener(&mut out, s, since, now, interval);
    }
    out
}

/// One listener's table in the `stats` report.
fn render_listener(
    out: &mut String,
    s: &ListenerSummary,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    interval: Duration,
) {
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", s.listener);
    let rate = s
        .success_rate
        .map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let _ = writeln!(
        out,
        "  {:<14}{} ({} succeeded, {} failed)",
        "processed", s.processed, s.successes, s.failures
    );
    let _ = writeln!(out, "  {:<14}{rate}", "success rate");
    let _ = writeln!(
        out,
        "  {:<14}p50 {}, p95 {}",
        "duration",
        millis(s.p50),
        millis(s.p95)
    );
    let _ = writeln!(out, "  {:<14}{}", "last success", time(s.last_success));
    let (slots, slot) = volume_slots(&s.volume, since, now, interval);
    let _ = writeln!(
        out,
        "  {:<14}{} (max {} per {}, oldest first)",
        "volume",
        sparkline(&slots),
        slots.iter().max().copied().unwrap_or(0),
        format_age(slot)
    );
    if s.errors.is_empty() {
        let _ = writeln!(out, "  {:<14}none", "failures");
    } else {
        let _ = writeln!(out, "  {:<14}count  error", "failures");
        for e in &s.errors {
            let text = e.error.as_deref().unwrap_or("(no error message)");
            let _ = writeln!(out, "  {:<14}{:>5}  {}", "", e.count, one_line(text));
        }
    }
}

/// The first line of an error, at most 100 characters.
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() > 100 {
        let cut: String = first.chars().take(99).collect();
        format!("{cut}…")
    } else {
        first.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantine_is_mentioned_only_when_it_holds_something() {
        assert_eq!(quarantine_note(0), None);
        let note = quarantine_note(3).unwrap();
        assert!(note.starts_with("3 element(s)"), "{note}");
        assert!(note.contains("event_listeners_quarantine"), "{note}");
    }

    #[test]
    fn a_sparkline_scales_to_its_largest_value() {
        assert_eq!(sparkline(&[0, 1, 4, 7]), "▁▂▅█");
        assert_eq!(sparkline(&[1, 100]), "▂█", "any run shows above zero");
        assert_eq!(sparkline(&[0, 0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn a_day_of_five_minute_buckets_fits_in_the_sparkline_width() {
        let now = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap();
        let since = now - chrono::Duration::hours(24);
        let volume = vec![(since, 3), (now - chrono::Duration::seconds(10), 5)];
        let (slots, slot) = volume_slots(&volume, since, now, Duration::from_secs(300));
        assert!(slots.len() as u64 <= SPARK_WIDTH, "{}", slots.len());
        assert_eq!(slot.as_secs() % 300, 0, "slots hold whole buckets");
        assert_eq!(slots.iter().sum::<u64>(), 8);
        assert_eq!(slots[0], 3);
        assert_eq!(*slots.last().unwrap(), 5);
    }

    #[test]
    fn durations_keep_three_significant_digits_in_milliseconds() {
        assert_eq!(millis(Some(Duration::from_micros(12))), "0.0120 ms");
        assert_eq!(millis(Some(Duration::from_micros(4_560))), "4.56 ms");
        assert_eq!(millis(Some(Duration::from_millis(1_234))), "1234 ms");
        assert_eq!(millis(None), "-");
    }
}
