//! `[filters]`: events that run no listener at all, such as those older
//! than `max_event_age`.

use std::time::Duration;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "filters";

/// The keys of `[filters]`.
pub(super) const KNOWN: &[&str] = &["max_event_age"];

/// `[filters]`.
#[derive(Debug, Clone, Default)]
pub struct FiltersConfig {
    /// Events older than this, by their own timestamp, run no listener.
    pub max_event_age: Option<Duration>,
}

/// Reads `[filters]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut FiltersConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "max_event_age" => out.max_event_age = r.seconds(&key, v),
            "default_realm_filter" => r.problem(format!(
                "`{key}` only made sense for the Python plugin inside a Zulip server hosting several organizations; this daemon is an API client of one organization (the bot's), so every event is already from it: remove the key"
            )),
            _ => r.unknown_key(k),
        }
    }
}
