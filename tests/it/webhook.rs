//! `kind = "webhook"` through the whole daemon: the fake Zulip feeds it,
//! a local [`Receiver`] answers as each test scripts it, and the database
//! shows the runs, dead letters and queued replies.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "whsec-integration-test";

/// A file holding `secret`, in a directory kept while the test runs.
fn secret_file(secret: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("secret");
    write_secret(&path, &format!("{secret}\n"));
    (dir, path)
}

/// A started daemon running the instances of `listeners` (TOML).
async fn start(backend: Backend, enabled: &[&str], listeners: &str) -> TestApp {
    let names: Vec<String> = enabled.iter().map(|n| format!("\"{n}\"")).collect();
    let extra = format!("[listeners]\nenabled = [{}]\n{listeners}", names.join(", "));
    let mut app = TestApp::new(backend, FakeOptions::default(), &extra).await;
    if backend == Backend::Postgres {
        app.db.migrate().await;
    }
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    app
}

async fn runs(db: &TestDb, listener: &str) -> i64 {
    db.try_scalar(&format!(
        "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = '{listener}'"
    ))
    .await
    .unwrap_or(0)
}

async fn dead_letters(db: &TestDb, listener: &str) -> i64 {
    db.try_scalar(&format!(
        "SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = '{listener}'"
    ))
    .await
    .unwrap_or(0)
}

async fn every_event_reaches_a_signed_webhook_once_per_key(backend: Backend) {
    // The first attempt of every event is refused with a 503.
    let receiver = Receiver::start(|d| match d.earlier {
        0 => Answer::text(503, "warming up"),
        _ => Answer::ok(),
    })
    .await;
    let (_dir, secret) = secret_file(SECRET);
    let mut app = start(
        backend,
        &["hook"],
        &format!(
            r#"
[listeners.hook]
kind = "webhook"
url = "{}"
secret_file = "{}"
headers = {{ "X-Team" = "ops" }}
retry.max_attempts = 3
retry.initial_delay = 0.01
"#,
            receiver.url("/events"),
            secret.display()
        ),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    for i in 0..6 {
        fake.send_channel_message(
            10 + i,
            &format!("u{i}@example.com"),
            "general",
            &format!("t{}", i % 2),
            &format!("hello {i}"),
        );
    }
    fake.send_direct_message(11, "u1@example.com", &[fake.user_id()], "a direct message");
    fake.send_direct_message(
        12,
        "u2@example.com",
        &[fake.user_id(), 13],
        "a group message",
    );
    fake.push_event(json!({"type": "reaction", "op": "add", "user_id": 10, "message_id": 1, "emoji_name": "tada", "emoji_code": "1f389", "reaction_type": "unicode_emoji"}));
    let events = 9;
    assert!(
        eventually(WAIT, || async { runs(&db, "hook").await == events }).await,
        "every event has its run recorded"
    );
    app.stop().await.expect("clean stop");

    let deliveries = receiver.deliveries();
    assert_eq!(
        receiver.delivered_keys().len(),
        events as usize,
        "every event is delivered"
    );
    assert_eq!(
        deliveries.len(),
        2 * events as usize,
        "one refused and one accepted attempt each"
    );
    let raws: Vec<(i64, String)> = db.rows("SELECT id, raw FROM event_listeners_inbox").await;
    for d in &deliveries {
        let header = d
            .headers
            .get("x-zulip-event-listeners-signature")
            .expect("signed");
        assert!(
            verify_signature(SECRET, header, &d.body, 300),
            "the signature verifies: {header}"
        );
        assert!(!verify_signature("another secret", header, &d.body, 300));
        let body = d.json();
        assert_eq!(
            d.key(),
            body["idempotency_key"],
            "the header is the body's key"
        );
        assert_eq!(body["attempt"], d.earlier as i64 + 1);
        assert_eq!(body["listener"], "hook");
        assert_eq!(d.headers["content-type"], "application/json");
        assert_eq!(d.headers["x-team"], "ops");
        let received_at = body["received_at"].as_str().expect("received_at");
        chrono::DateTime::parse_from_rfc3339(received_at).expect("an RFC 3339 time");
        // The event is the inbox row's raw JSON, byte for byte.
        let inbox_id = body["inbox_id"].as_i64().expect("inbox_id");
        let raw = &raws
            .iter()
            .find(|(id, _)| *id == inbox_id)
            .expect("its inbox row")
            .1;
        let text = std::str::from_utf8(&d.body).expect("UTF-8");
        assert!(text.ends_with(&format!(",\"event\":{raw}}}")), "{text}");
    }
    // The key of a message is the message's; both attempts carry the same.
    let first = deliveries
        .iter()
        .find(|d| d.json()["event"]["type"] == "message")
        .expect("a message");
    let message_id = first.json()["event"]["message"]["id"]
        .as_i64()
        .expect("a message id");
    assert_eq!(first.key(), format!("default:message:{message_id}"));
    assert_eq!(
        deliveries.iter().filter(|d| d.key() == first.key()).count(),
        2
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'hook' AND success AND attempts = 2").await,
        events,
        "one success per event, on its second attempt"
    );
    assert_eq!(dead_letters(&db, "hook").await, 0);
}

both_backends!(every_event_reaches_a_signed_webhook_once_per_key =>
    every_event_reaches_a_signed_webhook_once_per_key_on_sqlite,
    every_event_reaches_a_signed_webhook_once_per_key_on_postgres);

#[tokio::test]
async fn a_4xx_is_dead_lettered_at_once_with_the_status_and_the_body() {
    let receiver =
        Receiver::start(|_| Answer::json(400, json!({"error": "unknown field `event`"}))).await;
    let mut app = start(
        Backend::Sqlite,
        &["hook"],
        &format!(
            "[listeners.hook]\nkind = \"webhook\"\nurl = \"{}\"\nretry.max_attempts = 5\nretry.initial_delay = 0.01\n",
            receiver.url("/")
        ),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    fake.send_channel_message(10, "a@example.com", "general", "t", "one");
    fake.send_channel_message(10, "a@example.com", "general", "t", "two");
    assert!(eventually(WAIT, || async { dead_letters(&db, "hook").await == 2 }).await);
    app.stop().await.expect("clean stop");

    assert_eq!(
        receiver.deliveries().len(),
        2,
        "a permanent refusal is not retried"
    );
    let letters: Vec<(i64, String)> = db
        .rows("SELECT CAST(attempts AS BIGINT), error FROM event_listeners_deadletter")
        .await;
    for (attempts, error) in letters {
        assert_eq!(attempts, 1);
        assert!(error.contains("answered 400 Bad Request"), "{error}");
        assert!(error.contains("unknown field `event`"), "{error}");
        assert!(error.contains(&receiver.url("/")), "{error}");
    }
}

#[tokio::test]
async fn retry_after_holds_the_next_attempt_back() {
    let receiver = Receiver::start(|d| match (d.path.as_str(), d.earlier) {
        // Asks for an hour: no second attempt while the test runs.
        ("/patient", _) => Answer::status(429).header("retry-after", "3600"),
        // A short wait, then accepted.
        ("/brief", 0) => Answer::status(429).header("retry-after", "0.2"),
        ("/brief", _) => Answer::ok(),
        // No Retry-After: the policy's 10 ms delays apply.
        _ => Answer::status(429),
    })
    .await;
    let instance = |name: &str| {
        format!(
            "[listeners.{name}]\nkind = \"webhook\"\nurl = \"{}\"\nretry.max_attempts = 3\nretry.initial_delay = 0.01\n",
            receiver.url(name)
        )
    };
    let mut app = start(
        Backend::Sqlite,
        &["patient", "brief", "control"],
        &[instance("patient"), instance("brief"), instance("control")].join("\n"),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    fake.send_channel_message(10, "a@example.com", "general", "t", "rate me");
    assert!(
        eventually(WAIT, || async {
            dead_letters(&db, "control").await == 1
                && runs(&db, "brief").await == 1
                && !receiver.deliveries_to("patient").is_empty()
        })
        .await,
        "the control exhausts its tries, the brief wait succeeds"
    );

    assert_eq!(
        receiver.deliveries_to("control").len(),
        3,
        "429 without Retry-After: every try"
    );
    assert_eq!(
        receiver.deliveries_to("patient").len(),
        1,
        "429 with Retry-After: 3600: no retry after the policy's 10 ms"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'brief' AND success AND attempts = 2").await,
        1
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        runs(&db, "patient").await,
        0,
        "a run waiting to retry is not recorded at shutdown"
    );
}

#[tokio::test]
async fn a_receiver_that_hangs_or_is_down_is_retried() {
    // `slow` hangs on the first attempt of each key (past the instance's
    // timeout), then answers; `down` is a closed port.
    let receiver = Receiver::start(|d| match d.earlier {
        0 => Answer::ok().after(Duration::from_secs(30)),
        _ => Answer::ok(),
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!("http://{}/hook", closed.local_addr().expect("address"));
    drop(closed);
    let mut app = start(
        Backend::Sqlite,
        &["slow", "down"],
        &format!(
            r#"
[listeners.slow]
kind = "webhook"
url = "{}"
timeout = 0.3
retry.max_attempts = 2
retry.initial_delay = 0.01
[listeners.down]
kind = "webhook"
url = "{down}"
retry.max_attempts = 2
retry.initial_delay = 0.01
"#,
            receiver.url("slow")
        ),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    fake.send_channel_message(10, "a@example.com", "general", "t", "anyone there?");
    assert!(
        eventually(WAIT, || async {
            runs(&db, "slow").await == 1 && dead_letters(&db, "down").await == 1
        })
        .await
    );
    app.stop().await.expect("clean stop");

    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'slow' AND success AND attempts = 2").await,
        1,
        "a timed-out try is transient"
    );
    let (attempts, error): (i64, String) = db
        .rows("SELECT CAST(attempts AS BIGINT), error FROM event_listeners_deadletter WHERE listener_name = 'down'")
        .await
        .pop()
        .expect("a dead letter");
    assert_eq!(attempts, 2, "a refused connection is transient");
    assert!(error.contains("cannot POST to"), "{error}");
}

/// `(recipient_type, channel, topic, user_ids, content)` of a reply outbox row.
type OutboxRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

async fn a_reply_body_is_queued_in_the_reply_outbox(backend: Backend) {
    let receiver = Receiver::start(|_| Answer::json(200, json!({"content": "pong"}))).await;
    let mut app = start(
        backend,
        &["hook"],
        &format!(
            "[listeners.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
            receiver.url("/")
        ),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let bot = fake.user_id();
    // The replies the sender posts reach no queue: no runs of their own.
    fake.lose_echoes(true);

    fake.send_channel_message(10, "a@example.com", "ops", "deploys", "ping");
    fake.send_direct_message(11, "b@example.com", &[bot], "ping");
    // The bot's own message: answering it would loop.
    fake.send_channel_message(bot, fake.email(), "ops", "deploys", "pong");
    // Not a message: there is no conversation to answer in.
    fake.push_event(json!({"type": "presence", "user_id": 10, "email": "a@example.com", "server_timestamp": 1790000000.0, "presence": {}}));
    assert!(eventually(WAIT, || async { runs(&db, "hook").await == 4 }).await);
    app.stop().await.expect("clean stop");

    assert_eq!(receiver.deliveries().len(), 4);
    let replies: Vec<OutboxRow> = db
        .rows("SELECT recipient_type, channel, topic, user_ids, content FROM event_listeners_replyoutbox WHERE listener_name = 'hook' ORDER BY id")
        .await;
    assert_eq!(replies.len(), 2, "{replies:?}");
    let channel = replies
        .iter()
        .find(|r| r.1.is_some())
        .expect("the channel reply");
    assert_eq!(
        (
            channel.1.as_deref(),
            channel.2.as_deref(),
            channel.4.as_str()
        ),
        (Some("ops"), Some("deploys"), "pong")
    );
    let direct = replies
        .iter()
        .find(|r| r.3.is_some())
        .expect("the direct reply");
    let user_ids = direct.3.as_deref().unwrap_or_default();
    assert!(user_ids.contains("11"), "{user_ids}");
    assert_eq!(direct.4, "pong");
}

both_backends!(a_reply_body_is_queued_in_the_reply_outbox =>
    a_reply_body_is_queued_in_the_reply_outbox_on_sqlite,
    a_reply_body_is_queued_in_the_reply_outbox_on_postgres);

#[tokio::test]
async fn zulip_outgoing_calls_the_bot_as_zulip_does() {
    let receiver = Receiver::start(|d| {
        if d.json()["trigger"] == "direct_message" {
            Answer::json(200, json!({"content": "hi back"}))
        } else {
            Answer::json(200, json!({"response_not_required": true}))
        }
    })
    .await;
    let (_dir, token) = secret_file("outgoing-token-123");
    let mut app = start(
        Backend::Sqlite,
        &["bot"],
        &format!(
            "[listeners.bot]\nkind = \"webhook\"\nformat = \"zulip_outgoing\"\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            receiver.url("/"),
            token.display()
        ),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let bot = fake.user_id();
    // The replies the sender posts reach no queue: no runs of their own.
    fake.lose_echoes(true);

    let mention = fake.send_channel_message(
        10,
        "a@example.com",
        "ops",
        "deploys",
        "@**Listener Bot** status",
    );
    let dm = fake.send_direct_message(11, "b@example.com", &[bot], "help");
    fake.send_channel_message(12, "c@example.com", "ops", "deploys", "unrelated");
    fake.send_channel_message(13, "d@example.com", "ops", "lunch", "@**all** lunch?");
    fake.send_channel_message(
        bot,
        fake.email(),
        "ops",
        "deploys",
        "@**Listener Bot** talking to myself",
    );
    fake.push_event(json!({"type": "reaction", "op": "add", "user_id": 10, "message_id": mention, "emoji_name": "tada", "emoji_code": "1f389", "reaction_type": "unicode_emoji"}));
    assert!(
        eventually(WAIT, || async { runs(&db, "bot").await == 5 }).await,
        "a run for each message, none for the reaction"
    );
    app.stop().await.expect("clean stop");

    let deliveries = receiver.deliveries();
    assert_eq!(
        deliveries.len(),
        2,
        "only the mention and the direct message call the bot"
    );
    let by_trigger = |t: &str| {
        deliveries
            .iter()
            .find(|d| d.json()["trigger"] == t)
            .unwrap_or_else(|| panic!("a {t} request"))
            .json()
    };
    let m = by_trigger("mention");
    assert_eq!(m["message"]["id"], mention);
    assert_eq!(m["data"], "@**Listener Bot** status");
    assert_eq!(m["message"]["content"], "@**Listener Bot** status");
    assert_eq!(m["message"]["display_recipient"], "ops");
    assert_eq!(m["bot_email"], fake.email());
    assert_eq!(m["bot_full_name"], "Listener Bot");
    assert_eq!(m["token"], "outgoing-token-123");
    let keys: Vec<&String> = m.as_object().expect("an object").keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    let d = by_trigger("direct_message");
    assert_eq!(d["message"]["id"], dm);
    assert_eq!(d["data"], "help");
    assert!(deliveries
        .iter()
        .all(|d| d.key().starts_with("default:message:")));
    assert!(
        deliveries
            .iter()
            .all(|d| !d.headers.contains_key("x-zulip-event-listeners-signature")),
        "unsigned without a secret"
    );
    let replies: Vec<(String, String)> = db
        .rows("SELECT recipient_type, content FROM event_listeners_replyoutbox")
        .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].1, "hi back");
}
