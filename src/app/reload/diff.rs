//! What a reloaded configuration changes: the live parts
//! ([`live_config`]: `[listeners]`, `[filters]`, `[security]`'s blocked
//! users and per-user rate limit, `[queue]`'s retry policy, `[logging]
//! level`), described for the log ([`live_changes`]), and the settings
//! that need a restart ([`restart_needed`], by key: `database.url`,
//! `zulip` for the organizations, `http.bind`, …), which a reload names
//! and leaves as they run.

use toml::{Table, Value};

use crate::config::Config;

/// The sections a reload applies whole.
const LIVE_SECTIONS: &[&str] = &["listeners", "filters", "queue"];

/// The keys a reload applies in sections it otherwise leaves to a restart.
const LIVE_KEYS: &[(&str, &str)] = &[
    ("logging", "level"),
    ("security", "blocked_users"),
    ("security", "rate_limit_per_user"),
];

/// Whether `section.key` changes live.
fn is_live(section: &str, key: Option<&str>) -> bool {
    LIVE_SECTIONS.contains(&section)
        || key.is_some_and(|k| LIVE_KEYS.iter().any(|(s, lk)| *s == section && *lk == k))
}

/// The configuration to run after a reload: `running` with the live parts
/// of `new`; every setting that needs a restart stays as it runs.
pub(super) fn live_config(running: &Config, new: &Config) -> Config {
    let mut applied = running.clone();
    applied.listeners = new.listeners.clone();
    applied.filters = new.filters.clone();
    applied.queue = new.queue.clone();
    applied.logging.level = new.logging.level.clone();
    applied.security.blocked_users = new.security.blocked_users.clone();
    applied.security.rate_limit_per_user = new.security.rate_limit_per_user;
    applied
}

/// The keys (`section.key`, or `zulip` for the organizations) whose value
/// in `new` differs from `started` (the file the daemon runs with) and
/// that only a restart applies.
pub(super) fn restart_needed(started: &Table, new: &Table) -> Vec<String> {
    let mut names = Vec::new();
    let mut sections: Vec<&String> = started.keys().chain(new.keys()).collect();
    sections.sort();
    sections.dedup();
    for section in sections {
        if is_live(section, None) {
            continue;
        }
        let (old, new) = (started.get(section), new.get(section));
        match (old.and_then(Value::as_table), new.and_then(Value::as_table)) {
            (Some(a), Some(b)) => names.extend(changed_keys(section, a, b)),
            (a, b) if a.is_some() || b.is_some() || old != new => {
                // Added, removed, or an array of tables ([[zulip]]).
                let empty = Table::new();
                let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
                let keys = changed_keys(section, a, b);
                if keys.is_empty() && old != new {
                    names.push(section.clone());
                }
                names.extend(keys);
            }
            _ => {}
        }
    }
    names
}

/// `section.key` for each key of a restart-only `section` that differs.
fn changed_keys(section: &str, a: &Table, b: &Table) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !is_live(section, Some(k)) && a.get(*k) != b.get(*k))
        .map(|k| format!("{section}.{k}"))
        .collect()
}

/// The live changes from `running` to `applied` of one organization (its
/// views), each a sentence for the log: instances added, removed and
/// reconfigured, and the other live settings that differ.
pub(super) fn live_changes(
    running: &Config,
    applied: &Config,
    names: (&[String], &[String]),
) -> Vec<String> {
    let (before, after) = names;
    let mut out = Vec::new();
    let added: Vec<&str> = after
        .iter()
        .filter(|n| !before.contains(n))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = before
        .iter()
        .filter(|n| !after.contains(n))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        out.push(format!("listener instances added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!(
            "listener instances removed: {}",
            removed.join(", ")
        ));
    }
    let changed = reconfigured(running, applied, after);
    if !changed.is_empty() {
        out.push(format!(
            "listener instances reconfigured: {}",
            changed.join(", ")
        ));
    }
    let differs = |f: fn(&Config) -> String| f(running) != f(applied);
    if differs(|c| format!("{:?}", c.filters)) {
        out.push("[filters] changed".to_owned());
    }
    if differs(|c| {
        format!(
            "{:?}{:?}",
            c.security.blocked_users, c.security.rate_limit_per_user
        )
    }) {
        out.push("[security] blocked_users / rate_limit_per_user changed".to_owned());
    }
    if differs(|c| format!("{:?}", c.queue)) {
        out.push("[queue] retry policy changed".to_owned());
    }
    if running.logging.level != applied.logging.level {
        out.push(format!(
            "logging.level {} → {}",
            running.logging.level, applied.logging.level
        ));
    }
    out
}

/// The instances in both sets whose `[listeners.NAME]` table differs:
/// their listener is rebuilt from the new one.
pub(super) fn reconfigured(running: &Config, applied: &Config, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            format!("{:?}", running.listeners.instance(n))
                != format!("{:?}", applied.listeners.instance(n))
        })
        .cloned()
        .collect()
}

/// Whether the filters the dispatcher compiles from the configuration
/// (`[filters]`, `[security]`, the instances' filter keys) differ.
pub(super) fn filters_changed(running: &Config, applied: &Config) -> bool {
    let parts = |c: &Config| {
        let filters: Vec<_> = c
            .listeners
            .instances
            .values()
            .map(|i| format!("{:?}", i.filter))
            .collect();
        format!("{:?}{:?}{filters:?}", c.filters, c.security)
    };
    parts(running) != parts(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_restart_only_key_is_named_and_a_live_one_is_not() {
        let started = table("[database]\nurl = \"a\"\n[logging]\nlevel = \"info\"\n[listeners]\nenabled = [\"x\"]\n");
        let new = table("[database]\nurl = \"b\"\n[logging]\nlevel = \"debug\"\n[listeners]\nenabled = [\"y\"]\n[http]\nbind = \"off\"\n");
        assert_eq!(
            restart_needed(&started, &new),
            vec!["database.url", "http.bind"]
        );
    }

    #[test]
    fn a_changed_organization_list_is_named_zulip() {
        let started = table("[[zulip]]\nname = \"a\"\n[[zulip]]\nname = \"b\"\n");
        let new = table("[[zulip]]\nname = \"a\"\n");
        assert_eq!(restart_needed(&started, &new), vec!["zulip"]);
    }

    #[test]
    fn the_live_configuration_keeps_what_needs_a_restart() {
        let running = Config::parse(
            "[database]\nurl = \"sqlite://a.db\"\n",
            &["message_logger", "user_activity_tracker"],
        )
        .unwrap();
        let new = Config::parse(
            "[database]\nurl = \"sqlite://b.db\"\n[listeners]\nenabled = [\"message_logger\"]\n[logging]\nlevel = \"debug\"\n",
            &["message_logger", "user_activity_tracker"],
        )
        .unwrap();
        let applied = live_config(&running, &new);
        assert_eq!(applied.database.url, running.database.url);
        assert_eq!(applied.listeners.enabled, vec!["message_logger".to_owned()]);
        assert_eq!(applied.logging.level, "debug");
    }
}
