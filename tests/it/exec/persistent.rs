//! `mode = "persistent"`: one Python child for every run of the instance.

use std::collections::HashMap;

use serde_json::Value;

use super::*;

/// A persistent handler: appends its pid to `<dir>/pids` at start and each
/// request's message content to `<dir>/seen`; answers `re: <content>`.
/// Whichever of the messages `first` and `second` comes first is held
/// until the other arrives; then both are answered, the later one first.
/// A message `hold` is never answered by the first child (a restarted one
/// answers it); `garbage` also writes a line that is not
/// JSON and an answer to an unknown id.
const HANDLER: &str = r#"
import json, os, sys
d = sys.argv[1]
with open(os.path.join(d, "pids"), "a") as f:
    f.write(f"{os.getpid()}\n")
with open(os.path.join(d, "pids")) as f:
    restarted = len(f.read().split()) > 1
def answer(r):
    sys.stdout.write(json.dumps({"id": r["id"], "ok": True, "content": "re: " + r["event"]["message"]["content"]}) + "\n")
held = None
for line in sys.stdin:
    r = json.loads(line)
    content = r["event"]["message"]["content"]
    with open(os.path.join(d, "seen"), "a") as f:
        f.write(content + "\n")
    if content in ("first", "second") and held is None:
        held = r
        continue
    if content == "hold" and not restarted:
        continue
    if content == "garbage":
        sys.stdout.write("this is not JSON\n" + json.dumps({"id": 123456789, "ok": True}) + "\n")
    answer(r)
    if content in ("first", "second") and held is not None:
        with open(os.path.join(d, "reordered"), "a") as f:
            f.write("yes\n")
        answer(held)
        held = None
    sys.stdout.flush()
"#;

fn instance(s: &Scripts, name: &str, extra: &str) -> String {
    let command = s.python(
        "handler.py",
        HANDLER,
        &[&s.dir.path().display().to_string()],
    );
    format!(
        "[listeners.{name}]\nkind = \"exec\"\nmode = \"persistent\"\ncommand = {command}\nmax_concurrent = 8\n{extra}"
    )
}

/// `(inbox id, content)` of each reply row, and each inbox event's content.
async fn replies_and_contents(app: &TestApp) -> (Vec<(i64, String)>, HashMap<i64, String>) {
    let replies: Vec<(i64, String)> = app
        .db
        .rows("SELECT inbox_id, content FROM event_listeners_replyoutbox ORDER BY id")
        .await;
    let inbox: Vec<(i64, String)> = app
        .db
        .rows("SELECT id, raw FROM event_listeners_inbox")
        .await;
    let contents = inbox
        .into_iter()
        .map(|(id, raw)| {
            let v: Value = serde_json::from_str(&raw).unwrap();
            (id, v["message"]["content"].as_str().unwrap().to_owned())
        })
        .collect();
    (replies, contents)
}

async fn many_events_share_one_child_answering_out_of_order(backend: Backend) {
    let s = Scripts::new();
    let mut app = start(backend, "bot", &instance(&s, "bot", "")).await;
    // Different topics: the two runs are in flight together.
    app.fake
        .send_channel_message(10, "a@example.com", "general", "one", "first");
    app.fake
        .send_channel_message(11, "b@example.com", "general", "two", "second");
    app.fake
        .send_channel_message(12, "c@example.com", "general", "three", "garbage");
    send(&app.fake, 0..50);
    until_logged(&app, "bot", 53).await;
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'bot' AND success AND attempts = 1")
            .await,
        53
    );
    assert_eq!(
        s.lines("reordered"),
        ["yes"],
        "`first` and `second` were answered out of order"
    );
    let (replies, contents) = replies_and_contents(&app).await;
    assert_eq!(replies.len(), 53);
    for (inbox_id, reply) in &replies {
        assert_eq!(
            *reply,
            format!("re: {}", contents[inbox_id]),
            "each run got its own answer"
        );
    }
    let pids = s.lines("pids");
    assert_eq!(pids.len(), 1, "one child served every event: {pids:?}");
    app.stop().await.expect("clean stop");
    let pid: i32 = pids[0].parse().unwrap();
    assert!(
        until_gone(pid).await,
        "the child {pid} is stopped with the daemon"
    );
}

both_backends!(many_events_share_one_child_answering_out_of_order =>
    persistent_exec_events_share_one_child_answering_out_of_order_on_sqlite,
    persistent_exec_events_share_one_child_answering_out_of_order_on_postgres);

async fn a_killed_child_is_restarted_and_every_event_succeeds_once(backend: Backend) {
    let s = Scripts::new();
    let app = start(
        backend,
        "bot",
        &instance(
            &s,
            "bot",
            "retry.max_attempts = 10\nretry.initial_delay = 0.05\n",
        ),
    )
    .await;
    send(&app.fake, 0..20);
    until_logged(&app, "bot", 20).await;
    app.fake
        .send_channel_message(10, "a@example.com", "elsewhere", "x", "hold");
    assert!(
        eventually(WAIT, || async {
            s.lines("seen").iter().any(|l| l == "hold")
        })
        .await,
        "the child got the request it holds"
    );
    send(&app.fake, 20..40);
    let first: i32 = s.lines("pids")[0].parse().unwrap();
    // SAFETY: signals a process this test's daemon started.
    unsafe {
        libc::kill(first, libc::SIGKILL);
    }
    send(&app.fake, 40..60);
    until_logged(&app, "bot", 61).await;
    let per_event: Vec<(i64, i64)> = app
        .db
        .pairs("SELECT inbox_id, count(*) FROM event_listeners_eventlog WHERE listener_name = 'bot' AND success GROUP BY inbox_id")
        .await;
    assert_eq!(per_event.len(), 61, "every event succeeded");
    assert!(
        per_event.iter().all(|(_, n)| *n == 1),
        "once each: {per_event:?}"
    );
    assert_eq!(
        app.db
            .scalar("SELECT count(*) FROM event_listeners_eventlog WHERE NOT success")
            .await,
        0
    );
    let hold: Vec<(i64, i64)> = app
        .db
        .rows("SELECT CAST(e.attempts AS BIGINT), r.id FROM event_listeners_eventlog e JOIN event_listeners_replyoutbox r ON r.inbox_id = e.inbox_id WHERE r.content = 're: hold'")
        .await;
    assert_eq!(hold.len(), 1);
    assert!(
        hold[0].0 >= 2,
        "the held run failed with its child and was retried"
    );
    assert_eq!(s.lines("pids").len(), 2, "the child was restarted once");
}

both_backends!(a_killed_child_is_restarted_and_every_event_succeeds_once =>
    persistent_exec_killed_child_is_restarted_on_sqlite,
    persistent_exec_killed_child_is_restarted_on_postgres);
