//! `[listeners]`: which listeners run (`enabled`), and the
//! `[listeners.NAME]` tables of per-listener filters. Names are checked
//! against the registry's, which the [`Reader`] carries.

use std::collections::{BTreeMap, BTreeSet};

use toml::{Table, Value};

use super::listener_filter::{self, ListenerFilterConfig};
use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "listeners";

/// The keys of `[listeners]`.
pub(super) const KNOWN: &[&str] = &["enabled", "[listeners.NAME]"];

/// The listeners enabled when the configuration does not say.
pub const DEFAULT_LISTENERS: &[&str] = &["message_logger", "user_activity_tracker"];

/// `[listeners]`.
#[derive(Debug, Clone)]
pub struct ListenersConfig {
    /// Names of the enabled listeners, in configuration order.
    pub enabled: Vec<String>,
    /// `[listeners.NAME]` tables: per-listener filters, by listener name.
    pub filters: BTreeMap<String, ListenerFilterConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            enabled: DEFAULT_LISTENERS.iter().map(|s| (*s).to_owned()).collect(),
            filters: BTreeMap::new(),
        }
    }
}

/// Reads `[listeners]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut ListenersConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "enabled" => {
                if let Some(names) = read_enabled(r, &key, v) {
                    out.enabled = names;
                }
            }
            // `[listeners.NAME]` tables hold per-listener settings.
            name if v.is_table() => {
                if !r.listeners.contains(&name) {
                    r.problem(format!(
                        "[listeners.{name}] configures an unknown listener (available: {})",
                        r.listeners.join(", ")
                    ));
                } else if let Some(t) = v.as_table() {
                    let filter = listener_filter::read(r, name, t);
                    out.filters.insert(name.to_owned(), filter);
                }
            }
            _ => r.unknown_key(k),
        }
    }
}

/// The known names of `enabled`, without repeats; `None` when it is not a list.
fn read_enabled(r: &mut Reader, key: &str, v: &Value) -> Option<Vec<String>> {
    let Some(items) = v.as_array() else {
        return r.wrong(key, v, "a list of listener names");
    };
    let mut names = Vec::new();
    let mut seen = BTreeSet::new();
    for item in items {
        let Some(name) = item.as_str() else {
            r.wrong::<()>(key, item, "a list of listener names");
            continue;
        };
        if !r.listeners.contains(&name) {
            r.problem(format!(
                "unknown listener `{name}` in `{key}` (available: {})",
                r.listeners.join(", ")
            ));
        } else if seen.insert(name) {
            names.push(name.to_owned());
        }
    }
    Some(names)
}
