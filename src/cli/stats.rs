//! The text of the `stats` command: ages such as `24h` on the command line,
//! sparklines of per-bucket volume, and one table per listener.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::ListenerSummary;

/// Sparkline levels, lowest first; a slot without runs shows the lowest.
pub const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Most characters in a sparkline; longer windows merge buckets per character.
pub const SPARK_WIDTH: u64 = 48;

/// Longest accepted age (ten years).
const MAX_AGE_SECS: u64 = 10 * 366 * 86_400;

/// An age that [`parse_age`] does not accept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not an age such as 90s, 30m, 24h, 7d or 2w (a positive whole number and a unit)")]
pub struct AgeError(String);

/// Parses an age such as `90s`, `30m`, `24h`, `7d` or `2w`.
///
/// # Errors
///
/// [`AgeError`] for a missing or unknown unit, a zero or a number above ten years.
pub fn parse_age(text: &str) -> Result<Duration, AgeError> {
    let bad = || AgeError(text.to_owned());
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_secs)
        .filter(|s| (1..=MAX_AGE_SECS).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(bad)
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

/// `90s`, `5m`, `2h`, `1d`: the largest unit that divides `d`.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= secs && s % secs == 0 {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
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
    t.map_or_else(
        || "never".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
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
    out
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
    fn ages_in_each_unit_parse() {
        assert_eq!(parse_age("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_age("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(1_209_600));
    }

    #[test]
    fn ages_without_a_known_unit_or_above_zero_are_refused() {
        for bad in ["", "24", "h", "0h", "-1d", "1.5h", "3y", "999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_age("3y").unwrap_err().to_string().contains("`3y`"));
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

    #[test]
    fn ages_are_written_in_their_largest_whole_unit() {
        assert_eq!(format_age(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_age(Duration::from_secs(1_800)), "30m");
        assert_eq!(format_age(Duration::from_secs(90)), "90s");
    }
}
