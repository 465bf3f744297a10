//! `[data_protection] log_sanitization`: the binary at trace level, through
//! messages, a reaction, typing, an event without an id, a webhook whose
//! error answer echoes the event, exec children writing the content to
//! stderr and a responder over its rate limit, logs no message content,
//! topic, email or full name while it is on (the default), and does log
//! them with it off: both are asserted, so the test shows it looks in the
//! right places. With it off, `max_content_length` still cuts each text
//! logged.

use std::time::Duration;

use serde_json::json;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// What people wrote and who they are, distinctive enough to grep for.
const CONTENT: &str = "zqx-content-7731";
const TOPIC: &str = "zqx-topic-5519";
/// The sender's email; the fake gives them its local part as full name.
const EMAIL: &str = "zqx.person.2204@pii.example";
const FULL_NAME: &str = "zqx.person.2204";
const BOT_EMAIL: &str = "zqx-bot-9047@pii.example";
/// Another user, seen only in the event that comes without an id.
const NO_ID_EMAIL: &str = "zqx-noid-3390@pii.example";

/// A persistent child writing each message's content to stderr, answering
/// every request without a reply.
const PERSISTENT: &str = r#"
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    m = r["event"].get("message") or {}
    sys.stderr.write("child saw " + m.get("content", "") + "\n")
    sys.stderr.flush()
    sys.stdout.write(json.dumps({"id": r["id"], "ok": True}) + "\n")
    sys.stdout.flush()
"#;

/// A per-event command that fails, quoting the content on stderr.
const PER_EVENT: &str = r#"
import json, sys
m = json.load(sys.stdin)["event"].get("message") or {}
sys.stderr.write("cannot take " + m.get("content", "") + " from " + m.get("sender_email", ""))
sys.exit(1)
"#;

fn forbidden() -> [&'static str; 6] {
    [CONTENT, TOPIC, EMAIL, FULL_NAME, BOT_EMAIL, NO_ID_EMAIL]
}

/// Runs the daemon binary at trace level, with `data_protection` as its
/// section, through every kind of event and failure that could log what
/// people wrote; returns its stderr.
async fn run_daemon(backend: Backend, data_protection: &str) -> String {
    let fake = FakeZulip::start(FakeOptions {
        email: BOT_EMAIL.to_owned(),
        ..FakeOptions::default()
    })
    .await;
    // The answer quotes the whole delivery: content, topic, email, name.
    let receiver = Receiver::start(|d| Answer::text(500, &String::from_utf8_lossy(&d.body))).await;
    let db = TestDb::new(backend).await;
    db.migrate().await;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        format!("[\"python3\", \"{}\"]", path.display())
    };
    let extra = format!(
        "[logging]\nlevel = \"trace\"\n[network]\nbackoff_cap = 0.05\n\
         [data_protection]\n{data_protection}\n\
         [listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\", \"hook\", \"child\", \"command\", \"ops\"]\n\
         [listeners.hook]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [listeners.child]\nkind = \"exec\"\nmode = \"persistent\"\ncommand = {}\n\
         [listeners.command]\nkind = \"exec\"\ncommand = {}\n\
         [listeners.ops]\nkind = \"responder\"\nrate_limit_per_conversation = 1\n\
         rules = [{{ match = \"zqx\", reply = \"seen\" }}]\n",
        receiver.url("/hook"),
        script("child.py", PERSISTENT),
        script("command.py", PER_EVENT),
    );
    let s = setup(Some(&fake), &db.url, &extra);
    let log = s.dir.path().join("stderr.log");
    let mut child = daemon_command(&s.config_path)
        .env("RUST_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn the daemon");
    assert!(eventually(WAIT, || async { fake.register_count() >= 1 }).await);

    fake.hold_delivery(true);
    fake.push_event_without_id(json!({
        "type": "typing", "op": "start", "message_type": "direct",
        "sender": {"user_id": 31, "email": NO_ID_EMAIL}, "recipients": [],
        "note": CONTENT,
    }));
    let first = fake.send_channel_message(30, EMAIL, "general", TOPIC, CONTENT);
    fake.send_channel_message(30, EMAIL, "general", TOPIC, &format!("again {CONTENT}"));
    fake.push_event(json!({
        "type": "reaction", "op": "add", "user_id": 30, "message_id": first,
        "user": {"user_id": 30, "email": EMAIL, "full_name": FULL_NAME},
        "emoji_name": "octopus", "emoji_code": "1f419", "reaction_type": "unicode_emoji",
    }));
    fake.push_event(json!({
        "type": "typing", "op": "start", "message_type": "stream",
        "sender": {"user_id": 30, "email": EMAIL}, "stream_id": 10, "topic": TOPIC,
    }));
    fake.hold_delivery(false);

    let ran = |listener: &'static str, runs: i64| {
        let db = &db;
        async move {
            let sql = format!(
                "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = '{listener}'"
            );
            count(db, &sql).await >= runs
        }
    };
    let text = || stderr_of(&log);
    assert!(
        eventually(WAIT, || async {
            ran("hook", 2).await
                && ran("child", 2).await
                && ran("command", 2).await
                && ran("ops", 2).await
                && ran("user_activity_tracker", 2).await
                && !fake.sent_messages().is_empty()
                && text()
                    .matches("The persistent exec child wrote to stderr")
                    .count()
                    >= 2
        })
        .await,
        "every listener ran: {}",
        std::fs::copy(&log, "/tmp/pii-debug.log")
            .map(|_| "/tmp/pii-debug.log")
            .unwrap_or("")
    );
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, WAIT).await.expect("SIGTERM stops it");
    assert!(status.success(), "{}", text());
    text()
}

/// The lines of `log` holding `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

async fn by_default_no_log_line_carries_content_topics_emails_or_full_names(backend: Backend) {
    let log = run_daemon(backend, "").await;

    assert!(log.contains("TRACE"), "the capture is at trace level");
    for expected in [
        "Connected as a bot",
        "Zulip sent an element that is no event as it came",
        "The persistent exec child wrote to stderr",
        "Listener failed",
        "Not answering: the conversation had",
    ] {
        assert!(log.contains(expected), "{expected} is logged: {log}");
    }
    for needle in forbidden() {
        let lines = lines_with(&log, needle);
        assert!(lines.is_empty(), "{needle} is logged: {lines:#?}");
    }
    assert!(log.contains("[redacted: "), "{log}");
}

// On both backends: sqlx logs every statement at debug level.
both_backends!(by_default_no_log_line_carries_content_topics_emails_or_full_names =>
    by_default_no_log_line_carries_content_topics_emails_or_full_names_on_sqlite,
    by_default_no_log_line_carries_content_topics_emails_or_full_names_on_postgres);

#[tokio::test]
async fn with_log_sanitization_off_the_same_run_logs_them() {
    let log = run_daemon(Backend::Sqlite, "log_sanitization = false").await;

    for needle in forbidden() {
        assert!(
            !lines_with(&log, needle).is_empty(),
            "{needle} is logged: {log}"
        );
    }
    assert!(!log.contains("[redacted: "), "{log}");
}

#[tokio::test]
async fn with_log_sanitization_off_max_content_length_cuts_what_is_logged() {
    let log = run_daemon(
        Backend::Sqlite,
        "log_sanitization = false\nmax_content_length = 8",
    )
    .await;

    assert!(
        log.contains("zqx-bot-… [truncated: 24 characters]"),
        "{log}"
    );
    for needle in forbidden() {
        let lines = lines_with(&log, needle);
        assert!(lines.is_empty(), "{needle} is logged whole: {lines:#?}");
    }
}
