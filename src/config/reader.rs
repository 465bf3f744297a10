//! The [`Reader`]: collects every problem while the sections are read, and
//! the typed getters (booleans, strings, positive integers, durations) that
//! report a wrong value as a problem instead of stopping.

use std::time::Duration;

use toml::Value;

/// Longest duration a `seconds` value may hold: a year (a typo guard).
pub(super) const MAX_DURATION_SECS: u64 = 31_536_000;

/// How a duration may be written, for the messages that refuse one.
const DURATION_FORMS: &str =
    "a number of seconds or a duration such as \"90s\", \"5m\" or \"1h 30m\"";

/// Whether `name` is a valid instance or organization name.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Collects problems while sections are read.
pub(super) struct Reader<'a> {
    /// One sentence per problem, in the order they were found.
    pub(super) problems: Vec<String>,
    /// The listener names `[listeners]` may use.
    pub(super) listeners: &'a [&'a str],
    /// The section being read, for [`Reader::key`] and [`Reader::unknown_key`].
    section: &'static str,
    /// The keys of that section.
    known: &'static [&'static str],
}

impl<'a> Reader<'a> {
    /// A reader with no problems yet, accepting `listeners` as listener names.
    pub(super) fn new(listeners: &'a [&'a str]) -> Self {
        Reader {
            problems: Vec::new(),
            listeners,
            section: "",
            known: &[],
        }
    }

    /// Starts reading `section`, whose keys are `known`.
    pub(super) fn enter(&mut self, section: &'static str, known: &'static [&'static str]) {
        self.section = section;
        self.known = known;
    }

    /// `section.key`, as problems name it.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.section)
    }

    pub(super) fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    /// Whether a problem about `key` (written `` `key` ``) was already found.
    pub(super) fn has_problem_about(&self, key: &str) -> bool {
        let quoted = format!("`{key}`");
        self.problems.iter().any(|p| p.contains(&quoted))
    }

    /// A key the current section does not have.
    pub(super) fn unknown_key(&mut self, key: &str) {
        let (section, known) = (self.section, self.known);
        self.unknown(section, key, known);
    }

    /// A key `section` does not have; `known` are those it has.
    pub(super) fn unknown(&mut self, section: &str, key: &str, known: &[&str]) {
        self.problem(format!(
            "unknown key `{section}.{key}` (known: {})",
            known.join(", ")
        ));
    }

    pub(super) fn bool(&mut self, key: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Boolean(b) => Some(*b),
            _ => self.wrong(key, v, "true or false"),
        }
    }

    pub(super) fn string(&mut self, key: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => self.wrong(key, v, "a string"),
        }
    }

    /// An instance or organization name: 1 to 64 letters, digits, `-`,
    /// `_` or `.` (a number is taken as its digits).
    pub(super) fn name(&mut self, key: &str, v: &Value) -> Option<String> {
        let name = match v {
            Value::Integer(i) => i.to_string(),
            _ => self.string(key, v)?,
        };
        if is_name(&name) {
            Some(name)
        } else {
            self.problem(format!(
                "`{key}` must be 1 to 64 letters, digits, '-', '_' or '.', got `{name}`"
            ));
            None
        }
    }

    pub(super) fn positive_int(&mut self, key: &str, v: &Value) -> Option<u64> {
        match v {
            Value::Integer(i) if *i > 0 => Some(*i as u64),
            Value::Integer(i) => {
                self.problem(format!("`{key}` must be a positive integer, got {i}"));
                None
            }
            _ => self.wrong(key, v, "a positive integer"),
        }
    }

    /// A duration above 0 and at most a year: seconds as an integer or a
    /// float (`30`, `2.5`), or a string such as `"90s"`, `"5m"` or `"1h 30m"`.
    pub(super) fn seconds(&mut self, key: &str, v: &Value) -> Option<Duration> {
        let secs = match v {
            Value::Integer(i) => *i as f64,
            Value::Float(f) => *f,
            Value::String(s) => self.duration_text(key, s)?.as_secs_f64(),
            _ => return self.wrong(key, v, DURATION_FORMS),
        };
        if secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION_SECS as f64 {
            Some(Duration::from_secs_f64(secs))
        } else {
            self.problem(format!(
                "`{key}` must be a number of seconds above 0 and at most a year, got {secs}"
            ));
            None
        }
    }

    /// A whole number of seconds, at least 1: an integer, or a string such
    /// as `"5m"`. The caller checks the upper bound.
    pub(super) fn whole_seconds(&mut self, key: &str, v: &Value) -> Option<u64> {
        match v {
            Value::String(s) => {
                let d = self.duration_text(key, s)?;
                if d.subsec_nanos() == 0 && d.as_secs() > 0 {
                    Some(d.as_secs())
                } else {
                    self.problem(format!(
                        "`{key}` must be a whole number of seconds, at least 1, got `{s}`"
                    ));
                    None
                }
            }
            Value::Integer(_) => self.positive_int(key, v),
            _ => self.wrong(
                key,
                v,
                "a whole number of seconds or a duration such as \"5m\"",
            ),
        }
    }

    /// A duration written for humans (`"90s"`, `"1h 30m"`), not yet range-checked.
    fn duration_text(&mut self, key: &str, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(format!(
                    "`{key}` must be {DURATION_FORMS}, got `{text}` ({e})"
                ));
                None
            }
        }
    }

    /// A non-empty list of non-empty strings (`what` names them in messages).
    pub(super) fn strings(&mut self, key: &str, v: &Value, what: &str) -> Option<Vec<String>> {
        let Some(items) = v.as_array() else {
            return self.wrong(key, v, &format!("a list of {what}"));
        };
        if items.is_empty() {
            self.problem(format!(
                "`{key}` must list at least one entry; remove the key to accept all {what}"
            ));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.as_str() {
                Some(s) if !s.is_empty() => out.push(s.to_owned()),
                _ => {
                    return self.wrong(key, item, &format!("a list of {what} (non-empty strings)"))
                }
            }
        }
        Some(out)
    }

    pub(super) fn wrong<T>(&mut self, key: &str, v: &Value, expected: &str) -> Option<T> {
        self.problem(format!(
            "`{key}` must be {expected}, got {} `{v}`",
            v.type_str()
        ));
        None
    }
}
