//! The filter keys of `[listeners.NAME]`: which of its events one listener instance runs for (event
//! types, channels, topics, senders, a content regex), compiled once when
//! the file is read.

use toml::{Table, Value};

use super::reader::Reader;
use super::users::{read_users, UserRef};

/// The keys of a `[listeners.NAME]` table.
pub(super) const KNOWN: &[&str] = &[
    "event_types",
    "channels",
    "topics",
    "senders",
    "content_regex",
];

/// `[listeners.NAME]`: which of its events a listener runs for. `None`
/// means no filter on that field; a given list is never empty.
#[derive(Debug, Clone, Default)]
pub struct ListenerFilterConfig {
    /// Only these event types (among those the listener declares).
    pub event_types: Option<Vec<String>>,
    /// Only messages to these channels (names, compared case-insensitively).
    pub channels: Option<Vec<String>>,
    /// Only messages with these topics (compared case-insensitively).
    pub topics: Option<Vec<String>>,
    /// Only events from these users: messages by their sender, other
    /// events by the user they name (events naming no user pass).
    pub senders: Option<Vec<UserRef>>,
    /// Only messages whose content matches; compiled when the file is read.
    pub content_regex: Option<regex::Regex>,
}

/// Reads the filter keys of one `[listeners.NAME]` table; the other keys
/// are the instance's reader's to check.
pub(super) fn read(r: &mut Reader, name: &str, t: &Table) -> ListenerFilterConfig {
    let mut out = ListenerFilterConfig::default();
    for (k, v) in t {
        let key = format!("listeners.{name}.{k}");
        match k.as_str() {
            "event_types" => out.event_types = r.strings(&key, v, "event types"),
            "channels" => out.channels = r.strings(&key, v, "channel names"),
            "topics" => out.topics = r.strings(&key, v, "topics"),
            "senders" => out.senders = read_users(r, &key, v, false),
            "content_regex" => out.content_regex = read_regex(r, &key, v),
            _ => {}
        }
    }
    out
}

fn read_regex(r: &mut Reader, key: &str, v: &Value) -> Option<regex::Regex> {
    let pattern = r.string(key, v)?;
    match regex::Regex::new(&pattern) {
        Ok(re) => Some(re),
        Err(e) => {
            // The error's last line says what is wrong; the others repeat
            // the pattern with a caret.
            let text = e.to_string();
            let why = text.lines().last().unwrap_or_default();
            let why = why.trim().trim_start_matches("error: ");
            r.problem(format!(
                "`{key}` is not a valid regular expression (`{pattern}`): {why}"
            ));
            None
        }
    }
}
