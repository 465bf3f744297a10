//! Ages and times as the command line reads and writes them: `--since 24h`,
//! `--since 2026-11-27T09:00:00Z`, and the compact `90s`/`5m`/`1d` shown in
//! reports. Ages are parsed by `humantime`, within a range check.

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

/// Longest accepted age (ten years).
const MAX_AGE_SECS: u64 = 10 * 366 * 86_400;

/// Units `humantime` accepts that have no fixed length, refused in ages.
const CALENDAR_UNITS: &[&str] = &["M", "month", "months", "y", "yr", "yrs", "year", "years"];

/// An age that [`parse_age`] does not accept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{text}` is not an age from 1s to 10 years such as 90s, 30m, 24h, 7d or 1h 30m: {why}")]
pub struct AgeError {
    text: String,
    why: String,
}

/// Parses an age such as `90s`, `30m`, `24h`, `7d`, `2w` or `1h 30m`.
///
/// # Errors
///
/// [`AgeError`] for a missing or unknown unit, a fraction, months or years
/// (which have no fixed length), or an age below 1s or above ten years.
pub fn parse_age(text: &str) -> Result<Duration, AgeError> {
    let bad = |why: &str| AgeError {
        text: text.to_owned(),
        why: why.to_owned(),
    };
    let t = text.trim();
    if t.contains('.') {
        return Err(bad("write whole numbers, such as 90m rather than 1.5h"));
    }
    let mut units = t.split(|c: char| !c.is_alphabetic());
    if units.any(|u| CALENDAR_UNITS.contains(&u)) {
        return Err(bad(
            "months and years have no fixed length; use days or weeks",
        ));
    }
    let age = humantime::parse_duration(t).map_err(|e| bad(&e.to_string()))?;
    if (Duration::from_secs(1)..=Duration::from_secs(MAX_AGE_SECS)).contains(&age) {
        Ok(age)
    } else {
        Err(bad("out of range"))
    }
}

/// The time `age` before `now`.
///
/// # Errors
///
/// [`AgeError`] when the age does not fit a date (never, for a parsed age).
pub(super) fn ago(now: DateTime<Utc>, age: Duration) -> Result<DateTime<Utc>, AgeError> {
    ChronoDuration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| AgeError {
            text: format_age(age),
            why: "out of range".to_owned(),
        })
}

/// A `--since` value that is neither an age nor a time.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{0}` is neither an age such as 24h or 7d nor an RFC 3339 time such as 2026-11-27T09:00:00Z"
)]
pub struct SinceError(String);

/// Parses `--since`: an age (`90s`, `30m`, `24h`, `7d`, `2w`, `1h 30m`)
/// back from now, or an RFC 3339 timestamp.
///
/// # Errors
///
/// [`SinceError`] when it is neither.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, SinceError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    parse_age(text)
        .ok()
        .and_then(|age| ago(Utc::now(), age).ok())
        .ok_or_else(|| SinceError(text.to_owned()))
}

/// `90s`, `5m`, `2h`, `1d`: the largest unit that divides `d`. It reads
/// back with [`parse_age`]; humantime's own `format_duration` would write
/// `1day` and `1m 30s` instead.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= secs && s % secs == 0 {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

/// A time as every report writes it: `2026-11-27 09:00:00 UTC`.
pub(super) fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn ages_in_each_unit_parse() {
        assert_eq!(parse_age("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_age("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(1_209_600));
    }

    #[test]
    fn ages_may_combine_units_and_spell_them_out() {
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_age("1h 30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_age("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_age("2 days").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_age(" 1week ").unwrap(), Duration::from_secs(604_800));
    }

    #[test]
    fn ages_without_a_known_unit_or_above_zero_are_refused() {
        for bad in ["", "24", "h", "0h", "-1d", "1.5h", "3y", "999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_age("3y").unwrap_err().to_string().contains("`3y`"));
    }

    #[test]
    fn zero_sub_second_and_out_of_range_ages_are_refused_naming_the_range() {
        for bad in ["0s", "500ms", "11years", "3661d", "600w", "2months"] {
            let err = parse_age(bad).unwrap_err().to_string();
            assert!(err.contains("from 1s to 10 years"), "{bad}: {err}");
        }
        assert!(parse_age("3660d").is_ok(), "ten years of 366 days fit");
        assert!(parse_age("1s").is_ok());
    }

    #[test]
    fn written_ages_read_back_as_the_same_age() {
        for secs in [1, 90, 300, 3_600, 5_400, 86_400, 604_800, 1_209_600] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_age(&format_age(d)).unwrap(), d, "{}", format_age(d));
        }
    }

    #[test]
    fn ages_are_written_in_their_largest_whole_unit() {
        assert_eq!(format_age(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_age(Duration::from_secs(1_800)), "30m");
        assert_eq!(format_age(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn since_accepts_ages_and_rfc3339_times() {
        let t = parse_since("2026-11-27T09:00:00+01:00").unwrap();
        assert_eq!(t, at(1_795_766_400));
        let day_ago = parse_since("24h").unwrap();
        let expected = Utc::now() - ChronoDuration::hours(24);
        assert!((day_ago - expected).num_seconds().abs() <= 2);
        let err = parse_since("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("`yesterday`") && err.contains("RFC 3339"),
            "{err}"
        );
    }

    #[test]
    fn an_age_before_now_is_that_long_ago() {
        let now = at(1_790_000_000);
        assert_eq!(
            ago(now, Duration::from_secs(60)).unwrap(),
            at(1_789_999_940)
        );
        assert!(ago(now, Duration::MAX).is_err());
    }
}
