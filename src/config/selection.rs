//! The settings that decide which events run where: `[filters]`,
//! `[security]`, the per-listener filters of `[listeners.NAME]`, and how
//! `[scaling]` splits events between instances. `config.rs` calls these
//! readers; they report every problem through its `Reader`, like the rest.

use std::time::Duration;

use toml::{Table, Value};

use super::{Reader, ScalingConfig};

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

/// A user named in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserRef {
    /// A Zulip user id.
    Id(i64),
    /// An email address, lower-cased (Zulip compares them case-insensitively).
    Email(String),
}

/// `[filters]`.
#[derive(Debug, Clone, Default)]
pub struct FiltersConfig {
    /// Events older than this, by their own timestamp, run no listener.
    pub max_event_age: Option<Duration>,
}

/// `[security]`.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// Events from these users run no listener.
    pub blocked_users: Vec<UserRef>,
    /// Events per minute from one user beyond which that user's events are
    /// skipped until the minute is over.
    pub rate_limit_per_user: Option<u32>,
}

/// How instances split the events (`[scaling] partition_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionStrategy {
    /// By a stable hash of the ordering key: a conversation stays on one
    /// instance, in order.
    #[default]
    Hash,
    /// By a per-event number modulo the instance count: an even spread, but
    /// a conversation's events may run on different instances.
    RoundRobin,
}

/// Most instances one deployment may split events between (a typo guard).
const MAX_INSTANCES: u64 = 1024;
/// Highest `rate_limit_per_user` (a typo guard).
const MAX_RATE_LIMIT: u64 = 1_000_000;

pub(super) fn read_filters(r: &mut Reader, t: &Table, out: &mut FiltersConfig) {
    for (k, v) in t {
        let key = format!("filters.{k}");
        match k.as_str() {
            "max_event_age" => out.max_event_age = r.seconds(&key, v),
            "default_realm_filter" => r.problem(format!(
                "`{key}` only made sense for the Python plugin inside a Zulip server hosting several organizations; this daemon is an API client of one organization (the bot's), so every event is already from it: remove the key"
            )),
            _ => r.unknown("filters", k, &["max_event_age"]),
        }
    }
}

pub(super) fn read_security(r: &mut Reader, t: &Table, out: &mut SecurityConfig) {
    for (k, v) in t {
        let key = format!("security.{k}");
        match k.as_str() {
            "blocked_users" => {
                if let Some(users) = read_users(r, &key, v, true) {
                    out.blocked_users = users;
                }
            }
            "rate_limit_per_user" => match r.positive_int(&key, v) {
                Some(n) if n <= MAX_RATE_LIMIT => out.rate_limit_per_user = Some(n as u32),
                Some(n) => r.problem(format!(
                    "`{key}` is a number of events per minute up to {MAX_RATE_LIMIT}, got {n}"
                )),
                None => {}
            },
            "allowed_realms" => r.problem(format!(
                "`{key}` only made sense for the Python plugin inside a Zulip server hosting several organizations; this daemon is an API client of one organization (the bot's): remove the key"
            )),
            "require_authentication" => r.problem(format!(
                "`{key}` only made sense for the Python plugin; every request this daemon makes is authenticated with the bot's API key, and there is nothing to turn off: remove the key"
            )),
            _ => r.unknown("security", k, &["blocked_users", "rate_limit_per_user"]),
        }
    }
}

/// Reads one `[listeners.NAME]` table (the listener is known).
pub(super) fn read_listener_filter(r: &mut Reader, name: &str, t: &Table) -> ListenerFilterConfig {
    let mut out = ListenerFilterConfig::default();
    for (k, v) in t {
        let key = format!("listeners.{name}.{k}");
        match k.as_str() {
            "event_types" => out.event_types = read_strings(r, &key, v, "event types"),
            "channels" => out.channels = read_strings(r, &key, v, "channel names"),
            "topics" => out.topics = read_strings(r, &key, v, "topics"),
            "senders" => out.senders = read_users(r, &key, v, false),
            "content_regex" => {
                if let Some(pattern) = r.string(&key, v) {
                    match regex::Regex::new(&pattern) {
                        Ok(re) => out.content_regex = Some(re),
                        Err(e) => {
                            // The error's last line says what is wrong; the
                            // others repeat the pattern with a caret.
                            let text = e.to_string();
                            let why = text.lines().last().unwrap_or_default();
                            let why = why.trim().trim_start_matches("error: ");
                            r.problem(format!(
                                "`{key}` is not a valid regular expression (`{pattern}`): {why}"
                            ));
                        }
                    }
                }
            }
            _ => r.unknown(
                &format!("listeners.{name}"),
                k,
                &[
                    "event_types",
                    "channels",
                    "topics",
                    "senders",
                    "content_regex",
                ],
            ),
        }
    }
    out
}

/// Reads `scaling.total_instances` or `scaling.partition_strategy`.
pub(super) fn read_partition_key(r: &mut Reader, key: &str, v: &Value, out: &mut ScalingConfig) {
    if key.ends_with("total_instances") {
        match r.positive_int(key, v) {
            Some(n) if n <= MAX_INSTANCES => out.total_instances = n as u32,
            Some(n) => r.problem(format!("`{key}` is at most {MAX_INSTANCES}, got {n}")),
            None => {}
        }
    } else {
        match r.string(key, v).as_deref() {
            Some("hash") => out.partition_strategy = PartitionStrategy::Hash,
            Some("round_robin") => out.partition_strategy = PartitionStrategy::RoundRobin,
            Some(other) => r.problem(format!(
                "`{key}` must be \"hash\" or \"round_robin\", got `{other}`"
            )),
            None => {}
        }
    }
}

/// With several instances, `instance_id` must say which one this is.
pub(super) fn check_instance(r: &mut Reader, out: &mut ScalingConfig) {
    out.instance_index = 0;
    let total = out.total_instances;
    if total <= 1 {
        return;
    }
    match out.instance_id.parse::<u32>() {
        Ok(n) if (1..=total).contains(&n) => out.instance_index = n - 1,
        _ if r.problems.iter().any(|p| p.contains("`scaling.instance_id`")) => {}
        _ => r.problem(format!(
            "`scaling.instance_id` must be this instance's number, 1 to {total}, when `scaling.total_instances` is {total} (each instance runs its share of the events), got `{}`",
            out.instance_id
        )),
    }
}

/// A non-empty list of non-empty strings.
fn read_strings(r: &mut Reader, key: &str, v: &Value, what: &str) -> Option<Vec<String>> {
    let Some(items) = v.as_array() else {
        return r.wrong(key, v, &format!("a list of {what}"));
    };
    if items.is_empty() {
        r.problem(format!(
            "`{key}` must list at least one entry; remove the key to accept all {what}"
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_owned()),
            _ => return r.wrong(key, item, &format!("a list of {what} (non-empty strings)")),
        }
    }
    Some(out)
}

/// A list of user ids (integers, or digits in a string) and emails.
fn read_users(r: &mut Reader, key: &str, v: &Value, may_be_empty: bool) -> Option<Vec<UserRef>> {
    let Some(items) = v.as_array() else {
        return r.wrong(key, v, "a list of user ids and emails");
    };
    if items.is_empty() && !may_be_empty {
        r.problem(format!(
            "`{key}` must list at least one user; remove the key to accept all users"
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        match item {
            Value::Integer(i) if *i > 0 => out.push(UserRef::Id(*i)),
            Value::String(s) if s.contains('@') => {
                out.push(UserRef::Email(s.trim().to_lowercase()));
            }
            Value::String(s) if s.parse::<i64>().is_ok_and(|i| i > 0) => {
                out.push(UserRef::Id(s.parse().unwrap_or_default()));
            }
            _ => {
                r.problem(format!(
                    "`{key}` entries must be user ids (positive integers) or email addresses, got `{item}`"
                ));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const KNOWN: &[&str] = &["message_logger", "user_activity_tracker"];

    #[test]
    fn every_new_key_parses_into_its_value() {
        let cfg = Config::parse(
            r#"
            [filters]
            max_event_age = 3600
            [security]
            blocked_users = [42, "Spam@Example.com", "43"]
            rate_limit_per_user = 100
            [scaling]
            instance_id = 2
            total_instances = 3
            partition_strategy = "round_robin"
            [listeners.message_logger]
            event_types = ["message"]
            channels = ["general", "support"]
            topics = ["lunch"]
            senders = [10, "alice@example.com"]
            content_regex = "(?i)deploy"
            "#,
            KNOWN,
        )
        .unwrap();
        assert_eq!(cfg.filters.max_event_age, Some(Duration::from_secs(3600)));
        assert_eq!(
            cfg.security.blocked_users,
            vec![
                UserRef::Id(42),
                UserRef::Email("spam@example.com".into()),
                UserRef::Id(43)
            ]
        );
        assert_eq!(cfg.security.rate_limit_per_user, Some(100));
        assert_eq!(cfg.scaling.total_instances, 3);
        assert_eq!(cfg.scaling.instance_index, 1);
        assert_eq!(
            cfg.scaling.partition_strategy,
            PartitionStrategy::RoundRobin
        );
        let f = &cfg.listeners.filters["message_logger"];
        assert_eq!(f.event_types.as_deref(), Some(&["message".to_owned()][..]));
        assert_eq!(f.channels.as_ref().map(Vec::len), Some(2));
        assert_eq!(f.topics.as_deref(), Some(&["lunch".to_owned()][..]));
        assert_eq!(
            f.senders.as_deref(),
            Some(&[UserRef::Id(10), UserRef::Email("alice@example.com".into())][..])
        );
        assert!(f.content_regex.as_ref().unwrap().is_match("DEPLOY now"));
    }

    #[test]
    fn the_defaults_split_nothing_and_filter_nothing() {
        let cfg = Config::parse("", KNOWN).unwrap();
        assert_eq!(cfg.scaling.total_instances, 1);
        assert_eq!(cfg.scaling.instance_index, 0);
        assert_eq!(cfg.scaling.partition_strategy, PartitionStrategy::Hash);
        assert!(cfg.filters.max_event_age.is_none());
        assert!(cfg.security.blocked_users.is_empty());
        assert!(cfg.security.rate_limit_per_user.is_none());
        assert!(cfg.listeners.filters.is_empty());
    }

    #[test]
    fn one_instance_keeps_any_instance_name() {
        let cfg = Config::parse("[scaling]\ninstance_id = \"eu-1\"\n", KNOWN).unwrap();
        assert_eq!(cfg.scaling.instance_index, 0);
    }

    #[test]
    fn every_bad_value_and_an_invalid_regex_are_reported_at_once() {
        let err = Config::parse(
            r#"
            [filters]
            max_event_age = -1
            default_realm_filter = 1
            [security]
            blocked_users = [0, "nobody"]
            rate_limit_per_user = 0
            allowed_realms = [1, 2]
            require_authentication = true
            [scaling]
            total_instances = 3
            partition_strategy = "random"
            [listeners.message_logger]
            channels = []
            topics = "lunch"
            content_regex = "(unclosed"
            colour = "red"
            "#,
            KNOWN,
        )
        .unwrap_err();
        let text = err.to_string();
        for key in [
            "filters.max_event_age",
            "filters.default_realm_filter",
            "security.blocked_users` entries must be user ids (positive integers) or email addresses, got `0`",
            "got `\"nobody\"`",
            "security.rate_limit_per_user",
            "security.allowed_realms",
            "security.require_authentication",
            "scaling.partition_strategy",
            "scaling.instance_id` must be this instance's number, 1 to 3",
            "listeners.message_logger.channels",
            "listeners.message_logger.topics",
            "listeners.message_logger.content_regex` is not a valid regular expression (`(unclosed`)",
            "listeners.message_logger.colour",
        ] {
            assert!(text.contains(key), "missing {key}: {text}");
        }
        assert_eq!(err.problems.len(), 13, "{text}");
    }

    #[test]
    fn realm_settings_are_refused_with_a_reason() {
        let err = Config::parse("[security]\nallowed_realms = [1]\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("one organization"), "{err}");
    }

    #[test]
    fn an_instance_number_outside_the_total_is_refused() {
        for id in ["0", "4", "\"web\""] {
            let text = format!("[scaling]\ninstance_id = {id}\ntotal_instances = 3\n");
            let err = Config::parse(&text, KNOWN).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert!(err.problems[0].contains("1 to 3"), "{err}");
        }
    }

    #[test]
    fn filters_of_an_unknown_listener_are_still_refused() {
        let err =
            Config::parse("[listeners.spam_filter]\nchannels = [\"x\"]\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("unknown listener"), "{err}");
    }
}
