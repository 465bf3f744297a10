//! The shipped Python examples (`examples/exec/`) run as the README
//! configures them, so they stay valid.

use super::*;

#[tokio::test]
async fn the_shipped_exec_examples_answer_ping() {
    let s = Scripts::new();
    let dir = repo().join("examples/exec");
    let handler = toml_list(&[
        "python3".into(),
        dir.join("handler.py").display().to_string(),
    ]);
    let persistent = toml_list(&[
        "python3".into(),
        dir.join("persistent.py").display().to_string(),
    ]);
    let state = s.path("counts.json");
    let app = start_with(
        Backend::Sqlite,
        &["ping", "bot"],
        &format!(
            "[listeners.ping]\nkind = \"exec\"\ncommand = {handler}\nevent_types = [\"message\"]\nenv = {{ ZEL_STATE_FILE = {:?} }}\n\
             [listeners.bot]\nkind = \"exec\"\nmode = \"persistent\"\ncommand = {persistent}\nmax_concurrent = 16\n",
            state.display().to_string()
        ),
    )
    .await;
    app.fake
        .send_channel_message(10, "alice@example.com", "general", "t", "!ping");
    app.fake
        .send_channel_message(11, "bob@example.com", "general", "t", "!echo hello there");
    app.fake
        .send_channel_message(11, "bob@example.com", "support", "u", "just talking");
    until_logged(&app, "ping", 3).await;
    until_logged(&app, "bot", 3).await;
    let failed = app
        .db
        .text_pairs("SELECT listener_name, error FROM event_listeners_eventlog WHERE NOT success")
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let replies = app
        .db
        .text_pairs("SELECT listener_name, content FROM event_listeners_replyoutbox ORDER BY listener_name, content")
        .await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0].0, "bot");
    assert_eq!(replies[0].1.as_deref(), Some("hello there"));
    assert_eq!(replies[1].1.as_deref(), Some("pong"));
    assert_eq!(replies[2].0, "ping");
    assert!(
        replies[2].1.as_deref().unwrap().starts_with("pong, @**"),
        "{replies:?}"
    );
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(counts["counts"]["general"], 2);
    assert_eq!(counts["counts"]["support"], 1);
}

/// The per-event example counts right when its runs overlap, as they do
/// under `max_concurrent`: 24 runs for one channel at once, each with its
/// own idempotency key, leave a count of 24 (without the lock some read the
/// same state and a count is lost).
#[test]
fn the_per_event_example_counts_every_overlapping_run() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let s = Scripts::new();
    let state = s.path("counts.json");
    let handler = repo().join("examples/exec/handler.py");
    let runs = 24;
    let children: Vec<_> = (0..runs)
        .map(|i| {
            let mut child = Command::new("python3")
                .arg(&handler)
                .env("ZEL_STATE_FILE", &state)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("python3 runs");
            let envelope = serde_json::json!({
                "listener": "ping", "idempotency_key": format!("key-{i}"), "attempt": 1,
                "event": {"type": "message", "id": i, "message": {
                    "type": "stream", "display_recipient": "general",
                    "content": "hello", "sender_full_name": "Alice"}}
            });
            child
                .stdin
                .take()
                .unwrap()
                .write_all(envelope.to_string().as_bytes())
                .unwrap();
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(counts["counts"]["general"], runs);
}
