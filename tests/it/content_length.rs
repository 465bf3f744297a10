//! `[data_protection] max_content_length` with `truncate_payloads`: webhooks
//! and exec commands get a long message's content cut to that many
//! characters and marked `content_truncated`, a short one as Zulip sent
//! it; the inbox and the message log keep the whole message (its real
//! length); without `truncate_payloads`, payloads are whole.

use std::time::Duration;

use serde_json::Value;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// 26 characters, some of them two bytes long: a cut by bytes would split one.
const LONG: &str = "héllo wörld, ünd so weiter";
/// The first 10 characters of [`LONG`].
const CUT: &str = "héllo wörl";

/// A per-event command appending the event it got, as one line, to a file.
const RECORDER: &str = r#"
import json, sys
event = json.load(sys.stdin)["event"]
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(event) + "\n")
"#;

/// A daemon with `message_logger`, a webhook to `receiver` and a command
/// recording its events under `dir`, and `data_protection` as its section.
async fn start(
    backend: Backend,
    receiver: &Receiver,
    dir: &tempfile::TempDir,
    data_protection: &str,
) -> TestApp {
    let script = dir.path().join("record.py");
    std::fs::write(&script, RECORDER).unwrap();
    let extra = format!(
        "[data_protection]\n{data_protection}\n\
         [listeners]\nenabled = [\"message_logger\", \"hook\", \"command\"]\n\
         [listeners.hook]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [listeners.command]\nkind = \"exec\"\ncommand = [\"python3\", \"{}\", \"{}\"]\n",
        receiver.url("/hook"),
        script.display(),
        dir.path().join("events").display(),
    );
    let mut app = TestApp::new(backend, FakeOptions::default(), &extra).await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() >= 1 }).await);
    app
}

/// Sends a long and a short message; returns the message events the
/// webhook and the command got, in that order, each by its message id.
async fn deliver_two(
    app: &TestApp,
    receiver: &Receiver,
    dir: &tempfile::TempDir,
) -> (i64, Vec<Value>, Vec<Value>) {
    let long = app
        .fake
        .send_channel_message(10, "a@example.com", "general", "t", LONG);
    app.fake
        .send_channel_message(10, "a@example.com", "general", "t", "short");
    let events = dir.path().join("events");
    let command_events = || -> Vec<Value> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(
        eventually(WAIT, || async {
            receiver.deliveries().len() >= 2 && command_events().len() >= 2
        })
        .await,
        "both messages reach the webhook and the command"
    );
    let hooked = receiver
        .deliveries()
        .iter()
        .map(|d| d.json()["event"].clone())
        .collect();
    (long, hooked, command_events())
}

/// The message of `events` whose id is `id`.
fn message(events: &[Value], id: i64) -> &Value {
    events
        .iter()
        .map(|e| &e["message"])
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("message {id} in {events:?}"))
}

async fn payloads_are_cut_and_marked_while_the_inbox_and_message_log_stay_whole(backend: Backend) {
    let receiver = Receiver::start(|_| Answer::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = start(
        backend,
        &receiver,
        &dir,
        "max_content_length = 10\ntruncate_payloads = true",
    )
    .await;

    let (long, hooked, commanded) = deliver_two(&app, &receiver, &dir).await;

    for (who, events) in [("the webhook", &hooked), ("the command", &commanded)] {
        let cut = message(events, long);
        assert_eq!(cut["content"], CUT, "{who}");
        assert_eq!(cut["content_truncated"], true, "{who}");
        let whole = message(events, long + 1);
        assert_eq!(whole["content"], "short", "{who}");
        assert!(whole.get("content_truncated").is_none(), "{who}: {whole}");
    }
    let db = &app.db;
    assert!(
        eventually(WAIT, || async {
            count(db, "SELECT count(*) FROM event_listeners_messagelog").await >= 2
        })
        .await
    );
    let length = db
        .scalar(&format!(
            "SELECT CAST(content_length AS BIGINT) FROM event_listeners_messagelog WHERE message_id = {long}"
        ))
        .await;
    assert_eq!(length, LONG.chars().count() as i64, "the real length");
    let inbox = db.all_text().await.join("\n");
    assert!(inbox.contains(LONG), "the inbox keeps the whole event");
}

both_backends!(payloads_are_cut_and_marked_while_the_inbox_and_message_log_stay_whole =>
    payloads_are_cut_and_marked_while_the_inbox_and_message_log_stay_whole_on_sqlite,
    payloads_are_cut_and_marked_while_the_inbox_and_message_log_stay_whole_on_postgres);

#[tokio::test]
async fn without_truncate_payloads_webhooks_and_commands_get_the_whole_content() {
    let receiver = Receiver::start(|_| Answer::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = start(Backend::Sqlite, &receiver, &dir, "max_content_length = 10").await;

    let (long, hooked, commanded) = deliver_two(&app, &receiver, &dir).await;

    for events in [&hooked, &commanded] {
        let whole = message(events, long);
        assert_eq!(whole["content"], LONG);
        assert!(whole.get("content_truncated").is_none(), "{whole}");
    }
}
