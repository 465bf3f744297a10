//! Regression tests for dispatch defects: an automatic disable must be
//! stored by the dispatch path itself, not only by the notifier, whose
//! queue drops what does not fit.

use zulip_event_listeners::app::RunOptions;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

/// A notification webhook that accepts connections and never answers, so
/// the notifier is stuck on its first notice and its queue fills up.
async fn silent_webhook() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/hook")
}

/// Channel messages `1..=n`, one JSON object a line, all in one topic so
/// that one listener's runs go one after another. The file source keys
/// events by line number: a longer file repeats the shorter one's events
/// (stored once) and adds new ones.
fn messages_file(dir: &std::path::Path, name: &str, n: i64) -> std::path::PathBuf {
    let lines: Vec<String> = (1..=n)
        .map(|id| {
            format!(
                r#"{{"type":"message","message":{{"id":{id},"sender_id":10,"sender_email":"a@example.com","display_recipient":"general","stream_id":1,"subject":"t","timestamp":1790000000,"content":"hi"}},"flags":[],"id":{id}}}"#
            )
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

async fn run_file(app: &mut TestApp, file: std::path::PathBuf) {
    let (registry, _) = registry_with_test_listeners();
    let opts = RunOptions {
        events_file: Some(file),
        ..RunOptions::default()
    };
    app.start(registry, opts).await;
    app.wait().await.expect("the file run succeeds");
}

#[tokio::test]
async fn an_auto_disable_is_stored_even_when_the_notice_queue_is_full_and_survives_a_restart() {
    let hook = silent_webhook().await;
    // More dead-letter notices than the notifier's queue holds come before
    // the failure that disables the listener, so its notice is dropped.
    let threshold = zulip_event_listeners::app::NOTICE_QUEUE as i64 + 20;
    let extra = format!(
        "[listeners]\nenabled = [\"failing\"]\n[error_handling]\ncircuit_breaker_threshold = 0\nauto_disable_threshold = {threshold}\nnotification_webhook = \"{hook}\"\n"
    );
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), &extra).await;
    let db = app.db.clone();
    let first = messages_file(app.setup.dir.path(), "first.jsonl", threshold + 5);
    run_file(&mut app, first).await;
    assert_eq!(
        db.text_pairs(
            "SELECT listener_name, reason FROM event_listeners_listenerstate WHERE NOT enabled"
        )
        .await,
        vec![(
            "failing".to_owned(),
            Some(format!(
                "{threshold} consecutive failures (auto_disable_threshold = {threshold})"
            ))
        )],
        "the disable is stored although its notice was dropped"
    );

    // A restart keeps the listener disabled: its runs are skipped and kept
    // as dead letters for replay.
    let second = messages_file(app.setup.dir.path(), "second.jsonl", threshold + 5 + 3);
    run_file(&mut app, second).await;
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'failing' AND error LIKE 'skipped: the listener is disabled%'"
        )
        .await,
        3 + 5,
        "after the restart, as after the disable, the listener's runs are skipped"
    );
}
