//! `kind = "responder"`: ordered `rules` (`match` a regex or `command` a
//! leading word, and the `reply` template), `reply_to_bots`, and
//! `rate_limit_per_conversation`. Templates are checked by the responder
//! when it is built; here only their presence.

use toml::{Table, Value};

use super::super::reader::Reader;

/// The keys of a responder instance, besides those every kind has.
pub(in crate::config) const KNOWN: &[&str] =
    &["rules", "reply_to_bots", "rate_limit_per_conversation"];

/// The keys of one rule.
const RULE_KEYS: &[&str] = &["match", "command", "reply"];

/// Replies a minute per conversation when the config does not say.
pub(crate) const DEFAULT_RATE_LIMIT_PER_CONVERSATION: u32 = 5;

/// What makes a rule answer.
#[derive(Debug, Clone)]
pub enum RuleTrigger {
    /// The message's content matches; captures are `{1}`, `{2}`… and named ones.
    Match(regex::Regex),
    /// The content's first word is this command (such as `!deploy`); the
    /// rest of the content is `{args}`.
    Command(String),
}

/// One rule: a trigger and its reply template.
#[derive(Debug, Clone)]
pub struct ResponderRule {
    /// When it answers.
    pub trigger: RuleTrigger,
    /// The reply's template text.
    pub reply: String,
}

/// A responder instance's settings.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// Rules in order; the first that matches answers.
    pub rules: Vec<ResponderRule>,
    /// Whether messages from other bots are answered.
    pub reply_to_bots: bool,
    /// Replies a minute per conversation, at most.
    pub rate_limit_per_conversation: u32,
}

/// Reads a responder instance's own keys of table `t`.
pub(in crate::config) fn read(r: &mut Reader, name: &str, t: &Table) -> Option<ResponderConfig> {
    let prefix = format!("listeners.{name}");
    let rules = match t.get("rules") {
        None => {
            r.problem(format!(
                "`{prefix}.rules` is missing: a responder needs at least one rule, such as {{ command = \"!ping\", reply = \"pong\" }}"
            ));
            None
        }
        Some(v) => read_rules(r, &prefix, v),
    };
    let reply_to_bots = t
        .get("reply_to_bots")
        .and_then(|v| r.bool(&format!("{prefix}.reply_to_bots"), v))
        .unwrap_or(false);
    let rate_limit_per_conversation = t
        .get("rate_limit_per_conversation")
        .and_then(|v| r.positive_int(&format!("{prefix}.rate_limit_per_conversation"), v))
        .map(|n| n.min(u64::from(u32::MAX)) as u32)
        .unwrap_or(DEFAULT_RATE_LIMIT_PER_CONVERSATION);
    Some(ResponderConfig {
        rules: rules?,
        reply_to_bots,
        rate_limit_per_conversation,
    })
}

fn read_rules(r: &mut Reader, prefix: &str, v: &Value) -> Option<Vec<ResponderRule>> {
    let key = format!("{prefix}.rules");
    let Some(items) = v.as_array() else {
        return r.wrong(&key, v, "a list of rules");
    };
    if items.is_empty() {
        r.problem(format!("`{key}` must list at least one rule"));
        return None;
    }
    let mut rules = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Some(t) = item.as_table() else {
            r.wrong::<()>(
                &at,
                item,
                "a table such as { command = \"!ping\", reply = \"pong\" }",
            );
            ok = false;
            continue;
        };
        match read_rule(r, &at, t) {
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(rules)
}

fn read_rule(r: &mut Reader, at: &str, t: &Table) -> Option<ResponderRule> {
    for k in t.keys() {
        if !RULE_KEYS.contains(&k.as_str()) {
            r.unknown(at, k, RULE_KEYS);
        }
    }
    let pattern = t
        .get("match")
        .and_then(|v| r.string(&format!("{at}.match"), v));
    let command = t
        .get("command")
        .and_then(|v| r.string(&format!("{at}.command"), v));
    let reply = match t.get("reply") {
        Some(v) => r.string(&format!("{at}.reply"), v),
        None => {
            r.problem(format!("`{at}.reply` is missing: what the rule answers"));
            None
        }
    };
    let trigger = match (pattern, command) {
        (Some(_), Some(_)) => {
            r.problem(format!("`{at}` sets both `match` and `command`: keep one"));
            None
        }
        (None, None) => {
            r.problem(format!(
                "`{at}` needs `match` (a regex) or `command` (such as \"!deploy\")"
            ));
            None
        }
        (Some(p), None) => match regex::Regex::new(&p) {
            Ok(re) => Some(RuleTrigger::Match(re)),
            Err(e) => {
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default().trim();
                r.problem(format!(
                    "`{at}.match` is not a valid regular expression (`{p}`): {why}"
                ));
                None
            }
        },
        (None, Some(c)) if c.trim().is_empty() || c.contains(char::is_whitespace) => {
            r.problem(format!(
                "`{at}.command` must be one word such as \"!deploy\", got `{c}`"
            ));
            None
        }
        (None, Some(c)) => Some(RuleTrigger::Command(c)),
    };
    Some(ResponderRule {
        trigger: trigger?,
        reply: reply?,
    })
}
