//! `format = "zulip_outgoing"`: the payload Zulip itself POSTs to an
//! outgoing-webhook bot (`data`, `message`, `bot_email`, `bot_full_name`,
//! `token`, `trigger`), so bot servers written for Zulip (the official
//! `zulip-botserver` among them) work unchanged.
//!
//! As Zulip does, it is sent only for a message that mentions the bot in a
//! channel (`trigger = "mention"`: the bot's `mentioned` flag, which Zulip
//! sets for an @-mention of the bot or of a group it is in; wildcard
//! mentions such as @**all** do not trigger) or that is a direct message
//! with the bot among its participants (`"direct_message"`), and never for
//! the bot's own messages. `message` is the event's message object as
//! Zulip sent it, `data` its content.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::{Event, Recipient};
use crate::listeners::{Context, ListenerError};

/// Why Zulip would call the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// A direct message with the bot among its participants.
    DirectMessage,
    /// A channel message mentioning the bot.
    Mention,
}

impl Trigger {
    /// The payload's `trigger` value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Trigger::DirectMessage => "direct_message",
            Trigger::Mention => "mention",
        }
    }
}

/// The parts of a message event the payload needs besides the typed view.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    message: &'a RawValue,
    /// The receiving user's flags (the bot's, on its own queue).
    #[serde(default, borrow)]
    flags: Vec<Cow<'a, str>>,
}

/// A message as `GET /messages` returns it carries its flags inside
/// (backfilled messages keep them there).
#[derive(Deserialize)]
struct InnerFlags<'a> {
    #[serde(default, borrow)]
    flags: Vec<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Payload<'a> {
    data: &'a str,
    message: &'a RawValue,
    bot_email: &'a str,
    bot_full_name: &'a str,
    token: &'a str,
    trigger: &'static str,
}

/// The payload for `event`, or `None` when Zulip would not call the bot
/// for it (not a message, the bot's own, neither a mention nor a direct
/// message to the bot).
///
/// # Errors
///
/// Permanent when the bot's identity is unknown (Zulip did not answer
/// `GET /users/me` at start): `bot_email` cannot be filled in.
pub(super) fn payload(
    event: &Event,
    ctx: &Context,
    token: &str,
) -> Result<Option<String>, ListenerError> {
    let Some(message) = event.message() else {
        return Ok(None);
    };
    let Ok(wire) = serde_json::from_str::<Wire<'_>>(event.raw()) else {
        return Ok(None);
    };
    let bot_id = ctx.bot.as_ref().map(|b| b.user_id).or(ctx.bot_user_id);
    if bot_id == Some(message.sender_id) {
        crate::metrics::own_message();
        return Ok(None);
    }
    let Some(trigger) = trigger(message.sender_id, &message.recipient, bot_id, || {
        has_flag(&wire, "mentioned")
    }) else {
        return Ok(None);
    };
    let Some(bot) = &ctx.bot else {
        return Err(ListenerError::permanent(
            "the zulip_outgoing format needs the bot's email and name, which Zulip did not give at start (GET /users/me); restart the daemon once Zulip answers, then replay",
        ));
    };
    let payload = Payload {
        data: &message.content,
        message: wire.message,
        bot_email: &bot.email,
        bot_full_name: &bot.full_name,
        token,
        trigger: trigger.as_str(),
    };
    serde_json::to_string(&payload)
        .map(Some)
        .map_err(|e| ListenerError::permanent(format!("cannot build the payload: {e}")))
}

/// Why Zulip would call the bot `bot_id` (when known) for a message from
/// `sender_id` to `recipient`; `mentioned` tells whether the bot's flags
/// say it is mentioned.
fn trigger(
    sender_id: i64,
    recipient: &Recipient,
    bot_id: Option<i64>,
    mentioned: impl FnOnce() -> bool,
) -> Option<Trigger> {
    if Some(sender_id) == bot_id {
        return None;
    }
    match recipient {
        Recipient::Direct { recipients } => {
            // The bot's queue holds only the direct messages it takes part
            // in; with its id known, check it anyway.
            let to_bot = bot_id.is_none_or(|id| recipients.iter().any(|r| r.id == id));
            to_bot.then_some(Trigger::DirectMessage)
        }
        Recipient::Channel { .. } => mentioned().then_some(Trigger::Mention),
    }
}

fn has_flag(wire: &Wire<'_>, flag: &str) -> bool {
    wire.flags.iter().any(|f| f == flag)
        || serde_json::from_str::<InnerFlags<'_>>(wire.message.get())
            .is_ok_and(|m| m.flags.iter().any(|f| f == flag))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::listeners::BotIdentity;

    fn ctx() -> Context {
        Context {
            org: Arc::from("o"),
            inbox_id: 1,
            bot_user_id: Some(9),
            attempt: 1,
            bot: Some(Arc::new(BotIdentity {
                user_id: 9,
                email: "listener-bot@zulip.com".into(),
                full_name: "Listener Bot".into(),
            })),
            received_at: None,
            fallback_of: None,
        }
    }

    fn channel(sender: i64, flags: &str) -> Event {
        Event::parse(&format!(
            r#"{{"type":"message","message":{{"id":516,"sender_id":{sender},"content":"@**Listener Bot** deploy","display_recipient":"ops","subject":"t","type":"stream","timestamp":1}},"flags":{flags},"id":0}}"#
        ))
        .unwrap()
    }

    /// The fixture's direct message from King Hamlet (7) to the bot (9).
    const DM: &str = r#"{"type": "message", "message": {"id": 519, "sender_id": 7, "content": "ev1 dm to edit", "recipient_id": 10, "timestamp": 1796111632, "client": "python-requests", "subject": "", "topic_links": [], "is_me_message": false, "reactions": [], "submessages": [], "sender_full_name": "King Hamlet", "sender_email": "hamlet@zulip.com", "sender_realm_str": "zulip", "display_recipient": [{"email": "hamlet@zulip.com", "full_name": "King Hamlet", "id": 7, "is_mirror_dummy": false}, {"id": 9, "email": "listener-bot@zulip.com", "full_name": "Listener Bot", "is_mirror_dummy": false}], "type": "private", "avatar_url": "https://secure.gravatar.com/avatar/6d8cad0fd00256e7b40691d27ddfd466?d=identicon&version=1", "content_type": "text/x-markdown"}, "flags": [], "id": 3}"#;

    #[test]
    fn a_direct_message_to_the_bot_is_sent_in_zulips_shape() {
        let event = Event::parse(DM).unwrap();

        let body = payload(&event, &ctx(), "tok").unwrap().unwrap();

        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["trigger"], "direct_message");
        assert_eq!(v["bot_email"], "listener-bot@zulip.com");
        assert_eq!(v["bot_full_name"], "Listener Bot");
        assert_eq!(v["token"], "tok");
        assert_eq!(v["data"], "ev1 dm to edit");
        let original: Value = serde_json::from_str(DM).unwrap();
        assert_eq!(v["message"], original["message"]);
        assert_eq!(v.as_object().unwrap().len(), 6);
    }

    #[test]
    fn a_channel_message_triggers_only_when_the_bot_is_mentioned() {
        let sent = |flags| payload(&channel(7, flags), &ctx(), "").unwrap();
        let v: Value = serde_json::from_str(&sent(r#"["mentioned"]"#).unwrap()).unwrap();
        assert_eq!(v["trigger"], "mention");
        assert_eq!(v["data"], "@**Listener Bot** deploy");
        assert!(sent("[]").is_none());
        assert!(sent(r#"["read","wildcard_mentioned","stream_wildcard_mentioned"]"#).is_none());
    }

    #[test]
    fn a_backfilled_message_keeps_its_flags_inside() {
        let event = Event::parse(r#"{"type":"message","message":{"id":5,"sender_id":7,"content":"hi @**Listener Bot**","display_recipient":"ops","subject":"t","flags":["mentioned"]},"flags":[],"id":5,"backfilled":true}"#).unwrap();
        let v: Value =
            serde_json::from_str(&payload(&event, &ctx(), "").unwrap().unwrap()).unwrap();
        assert_eq!(v["trigger"], "mention");
    }

    #[test]
    fn the_bots_own_messages_and_other_events_are_not_sent() {
        assert!(payload(&channel(9, r#"["mentioned"]"#), &ctx(), "")
            .unwrap()
            .is_none());
        let reaction =
            Event::parse(r#"{"type":"reaction","op":"add","user_id":7,"message_id":5,"id":1}"#)
                .unwrap();
        assert!(payload(&reaction, &ctx(), "").unwrap().is_none());
        // A group DM the bot is not in (only possible with odd queues).
        let dm = Event::parse(r#"{"type":"message","message":{"id":8,"sender_id":7,"display_recipient":[{"id":7,"email":"a@x"},{"id":3,"email":"b@x"}],"content":"x"},"flags":[],"id":2}"#).unwrap();
        assert!(payload(&dm, &ctx(), "").unwrap().is_none());
    }

    #[test]
    fn an_unknown_bot_identity_fails_a_triggering_message_permanently() {
        let mut c = ctx();
        c.bot = None;
        let err = payload(&Event::parse(DM).unwrap(), &c, "").unwrap_err();
        assert_eq!(err.class(), "permanent");
        // A message that would not be sent needs no identity.
        assert!(payload(&channel(7, "[]"), &c, "").unwrap().is_none());
    }
}
