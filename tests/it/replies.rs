//! `kind = "responder"` and the reply sender through the whole daemon and
//! the fake Zulip: one reply per command in the right conversation, rate
//! limits on sends honoured, a permanent refusal recorded, other bots left
//! alone, and a POST whose answer was lost confirmed by its echo instead of
//! being sent again.

use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{FakeOptions, FakeZulip, SendFault, SentMessage};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);
const USER: i64 = 7;
const USER_EMAIL: &str = "ada@example.com";

/// A responder `ops` answering `!ping` and `echo N`, and nothing else enabled.
pub(crate) const RESPONDER: &str = r#"
[listeners]
enabled = ["ops"]

[listeners.ops]
kind = "responder"
rate_limit_per_conversation = 100000
rules = [
  { command = "!ping", reply = "pong {sender_full_name} ({topic}) {args}" },
  { match = "^echo (?P<n>\\d+)$", reply = "echo {n}" },
]
"#;

/// A daemon with [`RESPONDER`] and `extra`, started and polling.
async fn responder_app(backend: Backend, extra: &str) -> TestApp {
    let mut app = TestApp::new(
        backend,
        FakeOptions::default(),
        &format!("{RESPONDER}{extra}"),
    )
    .await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    app
}

fn ping(fake: &FakeZulip, channel: &str, topic: &str, args: &str) -> i64 {
    fake.send_channel_message(USER, USER_EMAIL, channel, topic, &format!("!ping {args}"))
}

/// Waits until the responder has a logged run for `runs` messages (its
/// own replies' echoes included), so that nothing more can come.
async fn responder_ran(db: &TestDb, runs: i64) -> bool {
    eventually(WAIT, || async {
        count(
            db,
            "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'ops'",
        )
        .await
            >= runs
    })
    .await
}

async fn sent_count(fake: &FakeZulip, n: usize) -> bool {
    eventually(WAIT, || async { fake.sent_messages().len() >= n }).await
}

async fn a_command_gets_exactly_one_reply_in_its_channel_and_topic(backend: Backend) {
    let mut app = responder_app(backend, "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let queue = fake.queue_ids().pop().expect("the daemon's queue");

    ping(&fake, "ops", "deploys", "now");
    assert!(sent_count(&fake, 1).await, "the command is answered");
    // The command and the reply's own echo both ran: nothing more will come.
    assert!(responder_ran(&db, 2).await, "the echo is stored and run");
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 1, "exactly one reply: {sent:?}");
    let reply = &sent[0];
    assert_eq!(reply.channel.as_deref(), Some("ops"));
    assert_eq!(reply.topic.as_deref(), Some("deploys"));
    assert_eq!(reply.content, "pong ada (deploys) now");
    assert_eq!(reply.queue_id.as_deref(), Some(queue.as_str()));
    let rows = db
        .pairs("SELECT id, message_id FROM event_listeners_replyoutbox WHERE status = 'sent'")
        .await;
    assert_eq!(
        rows,
        vec![(rows[0].0, reply.id)],
        "the row is sent as that message"
    );
    assert_eq!(reply.local_id, Some(format!("zel-{}", rows[0].0)));

    let metrics = app.metrics().await;
    let replies = |outcome| {
        metrics.sample(
            "zulip_event_listeners_replies_total",
            &[("listener", "ops"), ("outcome", outcome)],
        )
    };
    assert_eq!(replies("sent"), Some(1.0));
    assert_eq!(replies("deduplicated"), None);
    assert!(
        eventually(WAIT, || async {
            app.metrics()
                .await
                .first("zulip_event_listeners_reply_outbox_open")
                == Some(0.0)
        })
        .await,
        "no reply is left open"
    );
    app.stop().await.expect("a clean stop");
}

both_backends!(a_command_gets_exactly_one_reply_in_its_channel_and_topic =>
    a_command_gets_exactly_one_reply_in_its_channel_and_topic_on_sqlite,
    a_command_gets_exactly_one_reply_in_its_channel_and_topic_on_postgres);

#[tokio::test]
async fn a_direct_message_command_is_answered_to_its_participants() {
    let mut app = responder_app(Backend::Sqlite, "").await;
    let fake = app.fake.clone();
    let bot = fake.user_id();
    fake.send_direct_message(USER, USER_EMAIL, &[bot], "echo 42");
    assert!(sent_count(&fake, 1).await, "the command is answered");
    let sent = fake.sent_messages();
    assert_eq!(sent[0].content, "echo 42");
    assert_eq!(sent[0].channel, None);
    assert_eq!(
        sent[0].user_ids,
        Some(vec![USER, bot]),
        "to the participants"
    );
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_rate_limited_reply_waits_as_asked_and_is_sent_once() {
    let mut app = responder_app(Backend::Sqlite, "").await;
    let fake = app.fake.clone();
    fake.fail_next_sends(2, SendFault::RateLimit { retry_after: 0.3 });
    ping(&fake, "ops", "t", "");
    assert!(sent_count(&fake, 1).await, "sent after the rate limits");
    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/messages")
        .collect();
    let statuses: Vec<u16> = posts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200], "two refusals, then the send");
    for pair in posts.windows(2) {
        let waited = pair[1].at.duration_since(pair[0].at);
        assert!(
            waited >= Duration::from_millis(300),
            "a send came {waited:?} after a 429 asking for 0.3 s"
        );
    }
    let metrics = app.metrics().await;
    let replies = |outcome| {
        metrics.sample(
            "zulip_event_listeners_replies_total",
            &[("listener", "ops"), ("outcome", outcome)],
        )
    };
    assert_eq!(replies("retried"), Some(2.0));
    assert_eq!(replies("sent"), Some(1.0));
    assert_eq!(fake.sent_messages().len(), 1);
    app.stop().await.expect("a clean stop");
}

async fn a_reply_to_a_channel_that_is_gone_fails_with_its_reason(backend: Backend) {
    let mut app = responder_app(backend, "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    fake.delete_channel("gone");
    ping(&fake, "gone", "t", "");
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_replyoutbox WHERE status = 'failed'",
            )
            .await
                == 1
        })
        .await,
        "the reply is dead-lettered"
    );
    let reasons = db
        .text_pairs("SELECT status, error FROM event_listeners_replyoutbox")
        .await;
    let reason = reasons[0].1.clone().unwrap_or_default();
    assert!(
        reason.contains("STREAM_DOES_NOT_EXIST") && reason.contains("gone"),
        "the reason is kept: {reason}"
    );
    assert!(fake.sent_messages().is_empty());
    // The sender goes on with the next reply.
    ping(&fake, "ops", "t", "");
    assert!(sent_count(&fake, 1).await, "the next reply is sent");
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(
            "zulip_event_listeners_replies_total",
            &[("listener", "ops"), ("outcome", "dead_lettered")],
        ),
        Some(1.0)
    );
    app.stop().await.expect("a clean stop");
}

both_backends!(a_reply_to_a_channel_that_is_gone_fails_with_its_reason =>
    a_reply_to_a_channel_that_is_gone_fails_with_its_reason_on_sqlite,
    a_reply_to_a_channel_that_is_gone_fails_with_its_reason_on_postgres);

#[tokio::test]
async fn other_bots_are_answered_only_with_reply_to_bots() {
    let mut app = responder_app(Backend::Sqlite, "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    // Not a `-bot` address: only Zulip's answer to GET /users/55 tells.
    fake.add_bot(55, "ci@example.com");
    fake.send_channel_message(55, "ci@example.com", "ops", "t", "!ping from a bot");
    ping(&fake, "ops", "t", "from a person");
    assert!(sent_count(&fake, 1).await);
    // Both commands and the reply's echo ran.
    assert!(responder_ran(&db, 3).await);
    let sent: Vec<String> = fake
        .sent_messages()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(sent, vec!["pong ada (t) from a person".to_owned()]);
    app.stop().await.expect("a clean stop");

    let mut app = app.beside(&RESPONDER.replace(
        "rate_limit_per_conversation",
        "reply_to_bots = true\nrate_limit_per_conversation",
    ));
    app.start(Registry::builtin(), RunOptions::default()).await;
    fake.send_channel_message(55, "ci@example.com", "ops", "t", "!ping again");
    assert!(
        sent_count(&fake, 2).await,
        "with reply_to_bots the bot is answered"
    );
    app.stop().await.expect("a clean stop");
}

async fn a_lost_answer_is_confirmed_by_its_echo_and_not_sent_again(backend: Backend) {
    let mut app = responder_app(backend, "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    fake.fail_next_sends(1, SendFault::ProcessThenDrop);
    ping(&fake, "ops", "t", "");
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_replyoutbox WHERE status = 'sent'",
            )
            .await
                == 1
        })
        .await,
        "the reply is confirmed"
    );
    assert!(responder_ran(&db, 2).await);
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 1, "sent once, never again: {sent:?}");
    let rows = db
        .pairs("SELECT CAST(attempts AS BIGINT), message_id FROM event_listeners_replyoutbox")
        .await;
    assert_eq!(
        rows,
        vec![(1, sent[0].id)],
        "one POST, confirmed as that message"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(
            "zulip_event_listeners_replies_total",
            &[("listener", "ops"), ("outcome", "deduplicated")],
        ),
        Some(1.0)
    );
    app.stop().await.expect("a clean stop");
}

both_backends!(a_lost_answer_is_confirmed_by_its_echo_and_not_sent_again =>
    a_lost_answer_is_confirmed_by_its_echo_and_not_sent_again_on_sqlite,
    a_lost_answer_is_confirmed_by_its_echo_and_not_sent_again_on_postgres);

/// The replies `sent` holds per content.
pub(crate) fn copies(sent: &[SentMessage], content: &str) -> usize {
    sent.iter().filter(|m| m.content == content).count()
}

#[test]
fn check_config_builds_the_responder_and_names_a_template_that_cannot_render() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let zulip = zulip_section(dir.path());
    std::fs::write(&path, format!("{zulip}{RESPONDER}")).unwrap();
    let out = zel(&["--config", &path.display().to_string(), "check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &path,
        format!("{zulip}{}", RESPONDER.replace("echo {n}", "echo {m}")),
    )
    .unwrap();
    let out = zel(&["--config", &path.display().to_string(), "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in ["ops", "rules[1].reply", "{m}"] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
}
