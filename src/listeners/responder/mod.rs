//! `kind = "responder"`: ordered rules that answer matching messages with
//! a template, through the reply outbox (so each answer is sent exactly
//! once). The first rule that matches answers; a message is never
//! answered when it is the bot's own, when its sender is another bot
//! (unless `reply_to_bots = true`, see `bots`), or when its conversation
//! already had `rate_limit_per_conversation` answers in the last minute
//! (`limit`): such a run succeeds without a reply. Rules and templates are
//! compiled when the instance is built (`rules`, `template`), so a bad one
//! fails `check-config` and `run` with exit 2.

mod bots;
mod limit;
mod rules;
mod template;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use self::bots::BotCheck;
use self::limit::{Admission, ConversationLimit};
use self::rules::Rule;
use crate::config::{Config, ResponderConfig};
use crate::event::{Conversation, Event, Message, Recipient};
use crate::listeners::{Context, Listener, ListenerError, Record, Reply};
use crate::pii::Pii;

/// The responder instance `name`, its sender lookups made with the
/// account of `config`.
pub(super) fn build(
    name: &str,
    responder: &ResponderConfig,
    config: &Config,
) -> Result<Arc<dyn Listener>, String> {
    Ok(Arc::new(Responder::new(
        name,
        responder,
        BotCheck::asking(config),
    )?))
}

/// A responder instance.
struct Responder {
    name: String,
    rules: Vec<Rule>,
    reply_to_bots: bool,
    limit: ConversationLimit,
    bots: BotCheck,
    over_limit: AtomicU64,
}

impl Responder {
    fn new(name: &str, config: &ResponderConfig, bots: BotCheck) -> Result<Responder, String> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::compile(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Responder {
            name: name.to_owned(),
            rules,
            reply_to_bots: config.reply_to_bots,
            limit: ConversationLimit::new(config.rate_limit_per_conversation),
            bots,
            over_limit: AtomicU64::new(0),
        })
    }

    /// Whether `m` is the bot's own message.
    fn is_own(m: &Message, ctx: &Context) -> bool {
        let id = ctx.bot.as_ref().map(|b| b.user_id).or(ctx.bot_user_id);
        match id {
            Some(id) => m.sender_id == id,
            None => ctx
                .bot
                .as_ref()
                .is_some_and(|b| b.email.eq_ignore_ascii_case(&m.sender_email)),
        }
    }
}

#[async_trait]
impl Listener for Responder {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        "Answers messages that match its rules with a template"
    }

    fn event_types(&self) -> &[&str] {
        &["message"]
    }

    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let m = event.message().ok_or_else(|| {
            ListenerError::permanent("message event without a valid message object")
        })?;
        if Self::is_own(m, ctx) {
            crate::metrics::own_message();
            return Ok(Vec::new());
        }
        let Some((rule, captures)) = self
            .rules
            .iter()
            .find_map(|r| r.matches(&m.content).map(|c| (r, c)))
        else {
            return Ok(Vec::new());
        };
        if !self.reply_to_bots && self.bots.is_bot(m.sender_id, &m.sender_email).await {
            tracing::debug!(listener = %self.name, sender_id = m.sender_id, "Not answering another bot");
            return Ok(Vec::new());
        }
        let conversation = conversation_key(event, m);
        if self.limit.admit(&conversation) == Admission::OverLimit {
            let n = self.over_limit.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(listener = %self.name, inbox_id = ctx.inbox_id, conversation = %Pii(&conversation),
                over_limit_total = n, "Not answering: the conversation had rate_limit_per_conversation replies in the last minute");
            return Ok(Vec::new());
        }
        let fields = MessageFields::of(event, m);
        let content = rule.render(&captures, |k| fields.get(k));
        Ok(Reply::to_event(event, content)
            .map(Record::Reply)
            .into_iter()
            .collect())
    }
}

/// The conversation a message is in, as the rate limit counts it.
fn conversation_key(event: &Event, m: &Message) -> String {
    match event.conversation() {
        Some(Conversation::Channel {
            channel_id, topic, ..
        }) => {
            let channel = match (channel_id, &m.recipient) {
                (Some(id), _) => id.to_string(),
                (None, Recipient::Channel { channel, .. }) => channel.to_lowercase(),
                (None, Recipient::Direct { .. }) => String::new(),
            };
            format!("channel:{channel}:{}", topic.to_lowercase())
        }
        Some(Conversation::Direct(ids)) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            format!("direct:{}", ids.join(","))
        }
        None => format!("message:{}", m.id),
    }
}

/// The message's fields a template may use (`template::MESSAGE_FIELDS`).
struct MessageFields {
    values: Vec<(&'static str, String)>,
}

impl MessageFields {
    fn of(event: &Event, m: &Message) -> MessageFields {
        let full_name = sender_full_name(event).unwrap_or_else(|| m.sender_email.clone());
        let (channel, channel_id, topic) = match &m.recipient {
            Recipient::Channel {
                channel,
                channel_id,
                topic,
            } => (
                channel.clone(),
                channel_id.map(|i| i.to_string()).unwrap_or_default(),
                topic.clone(),
            ),
            Recipient::Direct { .. } => Default::default(),
        };
        MessageFields {
            values: vec![
                (
                    "sender_mention",
                    format!("@**{full_name}|{}**", m.sender_id),
                ),
                ("sender_full_name", full_name),
                ("sender_email", m.sender_email.clone()),
                ("sender_id", m.sender_id.to_string()),
                ("topic", topic),
                ("channel", channel),
                ("channel_id", channel_id),
                ("content", m.content.clone()),
                ("message_id", m.id.to_string()),
                ("timestamp", m.timestamp.to_string()),
            ],
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `message.sender_full_name`, which the typed view does not keep.
fn sender_full_name(event: &Event) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        message: Sender,
    }
    #[derive(serde::Deserialize)]
    struct Sender {
        #[serde(default)]
        sender_full_name: Option<String>,
    }
    serde_json::from_str::<Wrapper>(event.raw())
        .ok()
        .and_then(|w| w.message.sender_full_name)
}

#[cfg(test)]
mod tests;
