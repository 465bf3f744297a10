//! A responder's rules, compiled: each trigger (`match`, a regex searched
//! in the content; `command`, the content's first word) with its checked
//! template, and the fields a match gives the template on top of the
//! message's: `{0}` (the whole match), `{1}`, `{2}`… and named groups for
//! a regex; `{command}` and `{args}` (the rest of the content, trimmed)
//! for a command.

use regex::Regex;

use super::template::{Template, MESSAGE_FIELDS};
use crate::config::{ResponderRule, RuleTrigger};

/// A rule ready to answer.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    trigger: Trigger,
    template: Template,
}

#[derive(Debug, Clone)]
enum Trigger {
    Match(Regex),
    Command(String),
}

/// The fields a matching rule adds to the message's.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Captures {
    fields: Vec<(String, String)>,
}

impl Captures {
    /// The value of field `key`, if the match gave it.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Rule {
    /// Compiles `rule`, the `index`th of its responder.
    ///
    /// # Errors
    ///
    /// Which rule's template does not render, and why.
    pub(super) fn compile(index: usize, rule: &ResponderRule) -> Result<Rule, String> {
        let trigger = match &rule.trigger {
            RuleTrigger::Match(re) => Trigger::Match(re.clone()),
            RuleTrigger::Command(c) => Trigger::Command(c.clone()),
        };
        let known = |key: &str| MESSAGE_FIELDS.contains(&key) || trigger.fills(key);
        let template = Template::compile(&rule.reply, &known)
            .map_err(|e| format!("rules[{index}].reply: {e}"))?;
        Ok(Rule { trigger, template })
    }

    /// The fields of this rule's match in `content`, or `None`.
    pub(super) fn matches(&self, content: &str) -> Option<Captures> {
        match &self.trigger {
            Trigger::Match(re) => {
                let caps = re.captures(content)?;
                let mut fields = Vec::new();
                for (i, name) in re.capture_names().enumerate() {
                    let value = caps.get(i).map_or("", |m| m.as_str()).to_owned();
                    if let Some(name) = name {
                        fields.push((name.to_owned(), value.clone()));
                    }
                    fields.push((i.to_string(), value));
                }
                Some(Captures { fields })
            }
            Trigger::Command(command) => {
                let trimmed = content.trim_start();
                let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
                if &trimmed[..end] != command {
                    return None;
                }
                Some(Captures {
                    fields: vec![
                        ("command".to_owned(), command.clone()),
                        ("args".to_owned(), trimmed[end..].trim().to_owned()),
                    ],
                })
            }
        }
    }

    /// Its reply to a message, with `message` giving the message's fields.
    pub(super) fn render<'a>(
        &self,
        captures: &'a Captures,
        message: impl Fn(&str) -> Option<&'a str>,
    ) -> String {
        // A rule's own fields (a named group called `topic`, say) win.
        self.template
            .render(|key| captures.get(key).or_else(|| message(key)))
    }
}

impl Trigger {
    /// Whether this trigger gives field `key`.
    fn fills(&self, key: &str) -> bool {
        match self {
            Trigger::Match(re) => {
                key.parse::<usize>().is_ok_and(|i| i < re.captures_len())
                    || re.capture_names().flatten().any(|n| n == key)
            }
            Trigger::Command(_) => key == "args" || key == "command",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: RuleTrigger, reply: &str) -> Result<Rule, String> {
        Rule::compile(
            0,
            &ResponderRule {
                trigger,
                reply: reply.to_owned(),
            },
        )
    }

    #[test]
    fn a_regex_rule_gives_numbered_and_named_captures() {
        let re = Regex::new(r"(?i)deploy (\w+) to (?P<env>\w+)").unwrap();
        let r = rule(
            RuleTrigger::Match(re),
            "{1} → {env} ({2}) for {sender_full_name}",
        )
        .unwrap();
        let caps = r.matches("please Deploy api to prod now").unwrap();
        let out = r.render(&caps, |k| (k == "sender_full_name").then_some("Ada"));
        assert_eq!(out, "api → prod (prod) for Ada");
        assert!(r.matches("nothing here").is_none());
    }

    #[test]
    fn a_command_rule_matches_the_first_word_only_and_gives_the_rest_as_args() {
        let r = rule(
            RuleTrigger::Command("!deploy".into()),
            "deploying {args} ({command})",
        )
        .unwrap();
        let caps = r.matches("  !deploy  web  status ").unwrap();
        assert_eq!(r.render(&caps, |_| None), "deploying web  status (!deploy)");
        assert!(r.matches("!deployed web").is_none(), "the whole first word");
        assert!(
            r.matches("please !deploy web").is_none(),
            "the first word only"
        );
        assert_eq!(
            r.render(&r.matches("!deploy").unwrap(), |_| None),
            "deploying  (!deploy)"
        );
    }

    #[test]
    fn a_template_naming_a_field_its_rule_does_not_fill_is_refused() {
        let e = rule(RuleTrigger::Command("!ping".into()), "pong {2}").unwrap_err();
        assert!(e.contains("rules[0].reply") && e.contains("{2}"), "{e}");
        let re = Regex::new(r"hi (\w+)").unwrap();
        assert!(rule(RuleTrigger::Match(re.clone()), "{1}").is_ok());
        assert!(rule(RuleTrigger::Match(re), "{args}").is_err());
    }
}
