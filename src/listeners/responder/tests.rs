use std::sync::Arc;

use super::*;
use crate::config::{ResponderRule, RuleTrigger};
use crate::listeners::{BotIdentity, ReplyTo};

const BOT: i64 = 100;

fn ctx() -> Context {
    Context {
        org: "o".into(),
        inbox_id: 1,
        bot_user_id: Some(BOT),
        attempt: 1,
        bot: None,
        received_at: None,
        fallback_of: None,
    }
}

fn responder(rules: Vec<(RuleTrigger, &str)>, reply_to_bots: bool, limit: u32) -> Responder {
    let config = ResponderConfig {
        rules: rules
            .into_iter()
            .map(|(trigger, reply)| ResponderRule {
                trigger,
                reply: reply.to_owned(),
            })
            .collect(),
        reply_to_bots,
        rate_limit_per_conversation: limit,
    };
    Responder::new("ops", &config, BotCheck::by_address()).unwrap()
}

fn command(c: &str) -> RuleTrigger {
    RuleTrigger::Command(c.to_owned())
}

fn channel_message(id: i64, sender: i64, email: &str, topic: &str, content: &str) -> Event {
    Event::parse(
        &serde_json::json!({
            "type": "message", "id": id,
            "message": {
                "id": id, "sender_id": sender, "sender_email": email,
                "sender_full_name": "Ada Lovelace", "display_recipient": "ops",
                "stream_id": 3, "subject": topic, "type": "stream",
                "timestamp": 1_790_000_000, "content": content,
            },
        })
        .to_string(),
    )
    .unwrap()
}

async fn reply_of(r: &Responder, e: &Event) -> Option<Reply> {
    let records = r.handle(e, &ctx()).await.unwrap();
    assert!(records.len() <= 1, "{records:?}");
    records.into_iter().next().map(|rec| match rec {
        Record::Reply(reply) => reply,
        other => panic!("{other:?}"),
    })
}

#[tokio::test]
async fn the_first_matching_rule_answers_in_the_same_conversation() {
    let r = responder(
        vec![
            (
                command("!deploy"),
                "Deploying {args} for {sender_full_name} in {channel} > {topic}",
            ),
            (
                RuleTrigger::Match(regex::Regex::new("deploy").unwrap()),
                "second rule",
            ),
        ],
        false,
        5,
    );
    let e = channel_message(1, 7, "ada@example.com", "releases", "!deploy api");
    let reply = reply_of(&r, &e).await.expect("a reply");
    assert_eq!(
        reply.content,
        "Deploying api for Ada Lovelace in ops > releases"
    );
    assert_eq!(
        reply.to,
        ReplyTo::Channel {
            channel: "ops".into(),
            topic: "releases".into()
        }
    );
    let e = channel_message(2, 7, "ada@example.com", "releases", "do not deploy");
    assert_eq!(reply_of(&r, &e).await.unwrap().content, "second rule");
    let e = channel_message(3, 7, "ada@example.com", "releases", "hello");
    assert!(reply_of(&r, &e).await.is_none(), "no rule matches");
}

#[tokio::test]
async fn a_direct_message_is_answered_to_its_participants() {
    let r = responder(vec![(command("!ping"), "pong {sender_id}")], false, 5);
    let e = Event::parse(r#"{"type":"message","id":4,"message":{"id":4,"sender_id":7,"sender_email":"ada@example.com","display_recipient":[{"id":7,"email":"ada@example.com"},{"id":100,"email":"bot@example.com"}],"subject":"","timestamp":1,"content":"!ping"}}"#).unwrap();
    let reply = reply_of(&r, &e).await.unwrap();
    assert_eq!(reply.content, "pong 7");
    assert_eq!(
        reply.to,
        ReplyTo::Direct {
            user_ids: vec![7, 100]
        }
    );
}

#[tokio::test]
async fn the_bots_own_messages_are_never_answered() {
    let r = responder(vec![(command("!ping"), "pong")], true, 5);
    let own = channel_message(1, BOT, "listener-bot@example.com", "t", "!ping");
    assert!(reply_of(&r, &own).await.is_none(), "by bot_user_id");
    let mut c = ctx();
    c.bot_user_id = None;
    c.bot = Some(Arc::new(BotIdentity {
        user_id: BOT,
        email: "listener-bot@example.com".into(),
        full_name: "Listener".into(),
    }));
    assert!(
        r.handle(&own, &c).await.unwrap().is_empty(),
        "by the identity"
    );
}

#[tokio::test]
async fn other_bots_are_answered_only_with_reply_to_bots() {
    let from_bot = channel_message(1, 55, "ci-bot@example.com", "t", "!ping");
    let r = responder(vec![(command("!ping"), "pong")], false, 5);
    assert!(reply_of(&r, &from_bot).await.is_none());
    let r = responder(vec![(command("!ping"), "pong")], true, 5);
    assert!(reply_of(&r, &from_bot).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_conversation_over_its_rate_limit_gets_no_reply_and_the_run_succeeds() {
    let r = responder(vec![(command("!ping"), "pong")], false, 2);
    let mut replies = 0;
    for i in 0..5 {
        let e = channel_message(i, 7, "ada@example.com", "busy", "!ping");
        replies += usize::from(reply_of(&r, &e).await.is_some());
    }
    assert_eq!(replies, 2, "two replies a minute in that topic");
    let other = channel_message(9, 7, "ada@example.com", "quiet", "!ping");
    assert!(
        reply_of(&r, &other).await.is_some(),
        "another topic has its own limit"
    );
    tokio::time::advance(limit::WINDOW).await;
    let e = channel_message(10, 7, "ada@example.com", "busy", "!ping");
    assert!(
        reply_of(&r, &e).await.is_some(),
        "a minute later it answers again"
    );
}

#[test]
fn a_bad_template_fails_the_build_naming_the_instance_rule_and_field() {
    let config = ResponderConfig {
        rules: vec![ResponderRule {
            trigger: command("!ping"),
            reply: "pong {sender_nmae}".to_owned(),
        }],
        reply_to_bots: false,
        rate_limit_per_conversation: 5,
    };
    let e = Responder::new("ops", &config, BotCheck::by_address())
        .err()
        .unwrap();
    assert!(e.contains("rules[0]") && e.contains("{sender_nmae}"), "{e}");
}
