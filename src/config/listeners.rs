//! `[listeners]`: which listener instances run (`enabled`), and the
//! `[listeners.NAME]` tables that define them: a `kind` (a built-in or
//! registered listener, `webhook`, `exec`, `responder`), the filter keys
//! every kind shares, the instance's `timeout`, `max_concurrent` and
//! `retry` policy, its `fallback` (checked in `fallback.rs`), and the
//! kind's own keys. A table without `kind` whose name is a registered
//! listener configures that listener.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::{Table, Value};

use super::fallback;
use super::kinds::{self, ListenerKind, CONFIG_KINDS};
use super::listener_filter::{self, ListenerFilterConfig};
use super::reader::Reader;
use super::retry::{self, PartialRetry};

/// The section's name.
pub(super) const SECTION: &str = "listeners";

/// The keys of `[listeners]`.
pub(super) const KNOWN: &[&str] = &["enabled", "[listeners.NAME]"];

/// The keys every `[listeners.NAME]` table may have, whatever its kind.
const COMMON: &[&str] = &["kind", "timeout", "max_concurrent", "retry", "fallback"];

/// The listeners enabled when the configuration does not say.
pub const DEFAULT_LISTENERS: &[&str] = &["message_logger", "user_activity_tracker"];

/// One configured listener instance.
#[derive(Debug, Clone)]
pub struct ListenerInstanceConfig {
    /// The instance's name: in `enabled`, the event log, metrics and `list`.
    pub name: String,
    /// What it is.
    pub kind: ListenerKind,
    /// Which of its events it runs for.
    pub filter: ListenerFilterConfig,
    /// Upper bound of one run (`performance.handler_timeout` when unset).
    pub timeout: Option<Duration>,
    /// Its runs in flight at once, at most (within the daemon's own bound).
    pub max_concurrent: Option<usize>,
    /// The retry keys it sets; the others follow `[queue]`.
    pub retry: Option<PartialRetry>,
    /// The instance its events go to when its run fails for the last time.
    pub fallback: Option<String>,
}

impl ListenerInstanceConfig {
    /// The instance a registered listener is when no table configures it.
    pub fn registered(name: &str) -> ListenerInstanceConfig {
        ListenerInstanceConfig {
            name: name.to_owned(),
            kind: ListenerKind::Registered(name.to_owned()),
            filter: ListenerFilterConfig::default(),
            timeout: None,
            max_concurrent: None,
            retry: None,
            fallback: None,
        }
    }
}

/// `[listeners]`.
#[derive(Debug, Clone)]
pub struct ListenersConfig {
    /// Names of the enabled instances, in configuration order.
    pub enabled: Vec<String>,
    /// `[listeners.NAME]` tables, by instance name.
    pub instances: BTreeMap<String, ListenerInstanceConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            enabled: DEFAULT_LISTENERS.iter().map(|s| (*s).to_owned()).collect(),
            instances: BTreeMap::new(),
        }
    }
}

impl ListenersConfig {
    /// The instance called `name`: its table, or the registered listener of
    /// that name unconfigured. `None` for a name that is neither (the
    /// registry says whether it exists).
    pub fn instance(&self, name: &str) -> ListenerInstanceConfig {
        self.instances
            .get(name)
            .cloned()
            .unwrap_or_else(|| ListenerInstanceConfig::registered(name))
    }

    /// Every instance name a command may use: the tables and the
    /// registered listeners, without repeats.
    pub fn names<'a>(&'a self, registered: &[&'a str]) -> Vec<&'a str> {
        let mut out: Vec<&str> = registered.to_vec();
        for name in self.instances.keys() {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        out
    }
}

impl ListenersConfig {
    /// `names` and every fallback their chains reach, without repeats, in
    /// that order: the instances a daemon running `names` builds.
    pub fn with_fallbacks(&self, names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let mut at = Some(name.clone());
            while let Some(n) = at {
                if out.contains(&n) {
                    break;
                }
                at = self.instances.get(&n).and_then(|ic| ic.fallback.clone());
                out.push(n);
            }
        }
        out
    }
}

/// Reads `[listeners]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut ListenersConfig) {
    let mut enabled = None;
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "enabled" => enabled = Some((key, v)),
            name if v.is_table() => {
                if let Some(t) = v.as_table() {
                    if let Some(instance) = read_instance(r, name, t) {
                        out.instances.insert(name.to_owned(), instance);
                    }
                }
            }
            _ => r.unknown_key(k),
        }
    }
    let links: fallback::Links = (out.instances.iter())
        .map(|(n, i)| (n.as_str(), i.fallback.as_deref()))
        .collect();
    fallback::check(r, &links);
    // Read last: `enabled` may name the instances defined below it.
    if let Some((key, v)) = enabled {
        if let Some(names) = read_enabled(r, &key, v, out) {
            out.enabled = names;
        }
    }
}

/// One `[listeners.NAME]` table; `None` when its kind cannot be known.
fn read_instance(r: &mut Reader, name: &str, t: &Table) -> Option<ListenerInstanceConfig> {
    let prefix = format!("listeners.{name}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        r.problem(format!(
            "[listeners.{name}]: an instance name may hold letters, digits, `_`, `-` and `.` only"
        ));
    }
    let kind_name = match t.get("kind") {
        Some(v) => r.string(&format!("{prefix}.kind"), v)?,
        None if r.listeners.contains(&name) => name.to_owned(),
        None => {
            r.problem(format!(
                "[listeners.{name}] has no `kind` and `{name}` is not a built-in listener: set `kind` to one of {}",
                kind_names(r)
            ));
            return None;
        }
    };
    let (kind, own_keys): (Option<ListenerKind>, &[&str]) = match kind_name.as_str() {
        "webhook" => (
            kinds::read_webhook(r, name, t).map(ListenerKind::Webhook),
            kinds_keys::WEBHOOK,
        ),
        "exec" => (
            kinds::read_exec(r, name, t).map(ListenerKind::Exec),
            kinds_keys::EXEC,
        ),
        "responder" => (
            kinds::read_responder(r, name, t).map(ListenerKind::Responder),
            kinds_keys::RESPONDER,
        ),
        k if r.listeners.contains(&k) => (Some(ListenerKind::Registered(k.to_owned())), &[]),
        k => {
            r.problem(format!(
                "`{prefix}.kind` is `{k}`, which is no listener kind (kinds: {})",
                kind_names(r)
            ));
            return None;
        }
    };
    for k in t.keys() {
        let known = COMMON.contains(&k.as_str())
            || listener_filter::KNOWN.contains(&k.as_str())
            || own_keys.contains(&k.as_str());
        if !known {
            let all: Vec<&str> = COMMON
                .iter()
                .chain(listener_filter::KNOWN)
                .chain(own_keys)
                .copied()
                .collect();
            r.unknown(&prefix, k, &all);
        }
    }
    let filter = listener_filter::read(r, name, t);
    let timeout = t
        .get("timeout")
        .and_then(|v| r.seconds(&format!("{prefix}.timeout"), v));
    let max_concurrent = t
        .get("max_concurrent")
        .and_then(|v| r.positive_int(&format!("{prefix}.max_concurrent"), v))
        .map(|n| n.min(100_000) as usize);
    let retry = t.get("retry").and_then(|v| retry::read(r, name, v));
    let fallback = t
        .get("fallback")
        .and_then(|v| r.string(&format!("{prefix}.fallback"), v));
    Some(ListenerInstanceConfig {
        name: name.to_owned(),
        kind: kind?,
        filter,
        timeout,
        max_concurrent,
        retry,
        fallback,
    })
}

/// The kind-specific keys, by kind.
mod kinds_keys {
    pub(super) use super::super::kinds::keys::{EXEC, RESPONDER, WEBHOOK};
}

/// Every kind a table may name, for messages.
fn kind_names(r: &Reader) -> String {
    let mut all: Vec<&str> = CONFIG_KINDS.to_vec();
    all.extend(r.listeners.iter().copied());
    all.join(", ")
}

/// The known instance names of `enabled`, without repeats; `None` when it
/// is not a list.
fn read_enabled(
    r: &mut Reader,
    key: &str,
    v: &Value,
    out: &ListenersConfig,
) -> Option<Vec<String>> {
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
        if !r.listeners.contains(&name) && !out.instances.contains_key(name) {
            let available = out.names(r.listeners).join(", ");
            r.problem(format!(
                "unknown listener `{name}` in `{key}` (available: {available}; define others in a [listeners.NAME] table with a `kind`)"
            ));
        } else if seen.insert(name) {
            names.push(name.to_owned());
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, ExecMode, ListenerKind, RuleTrigger, WebhookFormat};

    const REGISTERED: &[&str] = &["message_logger", "user_activity_tracker"];

    #[test]
    fn instances_of_every_kind_are_read_with_their_bounds() {
        let text = r#"
[listeners]
enabled = ["support_hook", "pager", "deploy_bot", "script", "dm_log"]

[listeners.support_hook]
kind = "webhook"
url = "https://n8n.example.com/webhook/abc?token=secret"
secret_env = "SUPPORT_HOOK_SECRET"
channels = ["support"]
timeout = "10s"
max_concurrent = 4
retry.max_attempts = 6
retry.initial_delay = "2s"
headers = { "X-Team" = "support" }

[listeners.pager]
kind = "webhook"
url = "http://127.0.0.1:9000/bot"
format = "zulip_outgoing"

[listeners.deploy_bot]
kind = "responder"
channels = ["ops"]
rules = [
  { command = "!deploy", reply = "Deploying {args}" },
  { match = '(?i)status of (\w+)', reply = "{1} is fine" },
]

[listeners.script]
kind = "exec"
command = ["/usr/bin/python3", "handler.py"]
mode = "persistent"
event_types = ["reaction"]

[listeners.dm_log]
kind = "message_logger"
"#;
        let cfg = Config::parse(text, REGISTERED).unwrap();
        assert_eq!(cfg.listeners.enabled.len(), 5);
        let hook = &cfg.listeners.instances["support_hook"];
        let ListenerKind::Webhook(w) = &hook.kind else {
            panic!("{hook:?}")
        };
        assert_eq!(w.format, WebhookFormat::Event);
        assert_eq!(w.headers, vec![("X-Team".to_owned(), "support".to_owned())]);
        assert!(
            !hook.kind.target().contains("secret"),
            "{}",
            hook.kind.target()
        );
        assert_eq!(hook.timeout, Some(Duration::from_secs(10)));
        assert_eq!(hook.max_concurrent, Some(4));
        let retry = hook
            .retry
            .unwrap()
            .over(crate::config::RetryConfig::from_queue(&cfg.queue));
        assert_eq!(retry.max_attempts, 6);
        assert_eq!(retry.initial_delay, Duration::from_secs(2));
        assert_eq!(retry.max_delay, Duration::from_secs(600));
        let ListenerKind::Responder(r) = &cfg.listeners.instances["deploy_bot"].kind else {
            panic!()
        };
        assert!(matches!(&r.rules[0].trigger, RuleTrigger::Command(c) if c == "!deploy"));
        assert!(matches!(&r.rules[1].trigger, RuleTrigger::Match(_)));
        let ListenerKind::Exec(e) = &cfg.listeners.instances["script"].kind else {
            panic!()
        };
        assert_eq!(e.mode, ExecMode::Persistent);
        assert!(matches!(
            &cfg.listeners.instances["dm_log"].kind,
            ListenerKind::Registered(k) if k == "message_logger"
        ));
    }

    #[test]
    fn every_problem_of_every_instance_is_listed_at_once() {
        let text = r#"
[listeners]
enabled = ["a", "b", "c", "d", "nope"]

[listeners.a]
kind = "webhook"
secret = "hunter2"
format = "xml"

[listeners.b]
kind = "exec"
command = "python3 handler.py"
retry.max_delay = "1s"
retry.initial_delay = "5s"

[listeners.c]
kind = "responder"
rules = [{ match = "(unclosed", reply = "x" }, { reply = "no trigger" }]
colour = "red"

[listeners.d]
kind = "carrier_pigeon"
"#;
        let err = Config::parse(text, REGISTERED).unwrap_err();
        let all = err.to_string();
        for expected in [
            "`listeners.a.url` is missing",
            "`listeners.a.secret` would put a secret in the config file",
            "`listeners.a.format` must be",
            "`listeners.b.command` must be a list",
            "`listeners.b.retry.max_delay` (1 s) is shorter than `initial_delay`",
            "`listeners.c.rules[0].match` is not a valid regular expression",
            "`listeners.c.rules[1]` needs `match`",
            "unknown key `listeners.c.colour`",
            "`listeners.d.kind` is `carrier_pigeon`",
            "unknown listener `nope`",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn a_table_named_after_a_builtin_configures_it_without_a_kind() {
        let cfg = Config::parse(
            "[listeners.message_logger]\nchannels = [\"general\"]\ntimeout = 3\n",
            REGISTERED,
        )
        .unwrap();
        let i = cfg.listeners.instance("message_logger");
        assert!(matches!(i.kind, ListenerKind::Registered(ref k) if k == "message_logger"));
        assert_eq!(i.timeout, Some(Duration::from_secs(3)));
        assert!(cfg
            .listeners
            .instance("user_activity_tracker")
            .timeout
            .is_none());
    }
}
