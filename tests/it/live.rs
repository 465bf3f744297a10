//! The daemon against the fake Zulip server: every event stored once,
//! every interested listener run and logged once, restarts resume.

use std::time::Duration;

use serde_json::json;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// Sends a mix of traffic; returns (messages, other tracked events).
fn send_traffic(fake: &FakeZulip, messages: usize) -> (i64, i64) {
    let mut others = 0;
    for i in 0..messages {
        let sender = 10 + (i % 5) as i64;
        let email = format!("user{sender}@example.com");
        if i % 4 == 0 {
            fake.send_direct_message(sender, &email, &[20, 21], &format!("dm {i}"));
        } else {
            fake.send_channel_message(
                sender,
                &email,
                "general",
                &format!("topic {}", i % 7),
                &format!("hello {i}"),
            );
        }
        if i % 10 == 0 {
            fake.push_event(json!({"type": "reaction", "op": "add", "user_id": sender, "message_id": 1, "emoji_name": "tada", "emoji_code": "1f389", "reaction_type": "unicode_emoji"}));
            fake.push_event(json!({"type": "typing", "op": "start", "message_type": "direct", "sender": {"user_id": sender, "email": email}, "recipients": []}));
            others += 2;
        }
    }
    (messages as i64, others)
}

async fn every_event_is_stored_once_and_logged_per_listener(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );

    let (messages, others) = send_traffic(&fake, 400);
    let total = messages + others;
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await
                == messages * 2 + others
        })
        .await,
        "every run is logged"
    );
    let queue = fake.queue_ids().pop().expect("one queue");
    assert!(
        eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await,
        "every event is acknowledged to Zulip after it is stored"
    );
    let report = app.stop().await.expect("clean stop");

    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        total
    );
    assert_eq!(report.stored as i64, total);
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) > 1) d").await,
        0,
        "no listener ran twice on an event"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        messages
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM event_listeners_messagelog WHERE recipient_type = 'direct'"
        )
        .await,
        messages / 4
    );
    assert_eq!(
        db.scalar("SELECT CAST(sum(message_count) AS BIGINT) FROM event_listeners_useractivity")
            .await,
        messages
    );
    assert_eq!(
        db.scalar("SELECT CAST(sum(total_events) AS BIGINT) FROM event_listeners_listenerstats")
            .await,
        messages * 2 + others
    );
    assert_eq!(
        fake.queue_ids(),
        vec![queue],
        "the queue is kept at shutdown"
    );
}

both_backends!(every_event_is_stored_once_and_logged_per_listener =>
    every_event_is_stored_once_and_logged_per_listener_on_sqlite,
    every_event_is_stored_once_and_logged_per_listener_on_postgres);

#[tokio::test]
async fn a_restart_resumes_the_stored_queue_without_a_gap() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send_traffic(&fake, 30);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await >= 30
        })
        .await
    );
    app.stop().await.expect("clean stop");

    // Messages that arrive while the daemon is down wait in Zulip's queue.
    send_traffic(&fake, 30);
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 60
        })
        .await,
        "all messages from both runs are logged"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        fake.register_count(),
        1,
        "the second run resumed the first run's queue"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled")
            .await,
        0
    );
}

both_backends!(failing_panicking_and_hanging_listeners_are_recorded =>
    failing_panicking_and_hanging_listeners_are_recorded_and_never_stop_the_daemon_on_sqlite,
    failing_panicking_and_hanging_listeners_are_recorded_and_never_stop_the_daemon_on_postgres);

async fn failing_panicking_and_hanging_listeners_are_recorded(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "[listeners]\nenabled = [\"failing\", \"panicking\", \"hanging\", \"counting\", \"message_logger\"]\n[performance]\nhandler_timeout = 0.3\nmax_concurrent_handlers = 8\n").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let (registry, counter) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send_traffic(&fake, 20);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 20 * 5 + 4
        })
        .await,
        "every run is logged, failed ones included"
    );
    let report = app.stop().await.expect("the daemon survives its listeners");
    assert!(report.recorder.failures >= 60);

    let errors = db
        .text_pairs("SELECT listener_name, min(error) FROM event_listeners_eventlog WHERE NOT success GROUP BY listener_name ORDER BY 1")
        .await;
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0]
            .1
            .as_deref()
            .unwrap()
            .contains("downstream service is down"),
        "{errors:?}"
    );
    assert!(
        errors[1].1.as_deref().unwrap().contains("timed out"),
        "{errors:?}"
    );
    assert!(
        errors[2]
            .1
            .as_deref()
            .unwrap()
            .contains("panicked: listener bug"),
        "{errors:?}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        20
    );
    assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 24);
}

#[tokio::test]
async fn dry_run_stores_nothing_runs_nothing_and_releases_its_queue() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"counting\"]\n",
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let (registry, counter) = registry_with_test_listeners();
    app.start(
        registry,
        RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send_traffic(&fake, 10);
    assert!(
        eventually(WAIT, || async {
            fake.queue_ids().first().and_then(|q| fake.pending(q)) == Some(0)
        })
        .await,
        "dry-run acknowledges what it received"
    );
    let report = app.stop().await.expect("clean stop");
    assert_eq!(report.stored, 12);
    assert_eq!(
        counter.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no listener ran"
    );
    assert!(fake.queue_ids().is_empty(), "the queue was deleted on exit");
    assert!(
        !std::path::Path::new(db.url.trim_start_matches("sqlite://")).exists(),
        "no database file was created"
    );
}

#[tokio::test]
async fn run_refuses_a_postgres_database_with_pending_migrations() {
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    let err = app
        .try_start(Registry::builtin(), RunOptions::default())
        .await
        .expect_err("pending migrations refuse to run");
    assert!(
        err.to_string().contains("zulip-event-listeners migrate"),
        "{err}"
    );
}

/// Events no built-in listener wants: a subscription change, a flag
/// change and a user change.
fn push_unwanted_events(fake: &FakeZulip) {
    fake.push_event(json!({"type": "subscription", "op": "update", "property": "color", "value": "#ff0000", "stream_id": 1}));
    fake.push_event(json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "read", "messages": [1], "all": false}));
    fake.push_event(json!({"type": "realm_user", "op": "update", "person": {"user_id": 10, "full_name": "Renamed"}}));
}

/// Starts the daemon, then sends the events no listener wants and a message.
async fn start_and_send_mixed_events(app: &mut TestApp) {
    let fake = app.fake.clone();
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    push_unwanted_events(&fake);
    fake.send_channel_message(10, "user10@example.com", "general", "t", "after");
}

#[tokio::test]
async fn every_event_type_is_registered_and_stored_by_default() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let db = app.db.clone();
    start_and_send_mixed_events(&mut app).await;
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await == 4
        })
        .await,
        "the subscription, flag and user changes are stored with the message (inbox: {})",
        count(&db, "SELECT count(*) FROM event_listeners_inbox").await
    );
    let _ = app.stop().await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM event_listeners_inbox WHERE event_type IN ('subscription', 'update_message_flags', 'realm_user')"
        )
        .await,
        3
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await,
        2,
        "only the message runs listeners (message_logger and user_activity_tracker)"
    );
}

#[tokio::test]
async fn zulip_event_types_narrows_what_is_registered() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    // `[zulip] event_types = ["message", "realm_user"]` (the test config
    // has its own [zulip] table; the key's reading is a unit test).
    app.setup.config.zulip.event_types = Some(vec!["message".into(), "realm_user".into()]);
    let db = app.db.clone();
    start_and_send_mixed_events(&mut app).await;
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'message'",
            )
            .await
                == 1
        })
        .await,
        "the message is stored"
    );
    let _ = app.stop().await;
    assert_eq!(
        db.text_pairs("SELECT event_type, op FROM event_listeners_inbox ORDER BY id")
            .await,
        vec![
            ("realm_user".to_owned(), Some("update".to_owned())),
            ("message".to_owned(), None)
        ],
        "only the types asked for reach the inbox"
    );
}
