//! Listener runs operators can trust: order per conversation, retries,
//! dead letters and the circuit breaker, on both stores.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

async fn edits_never_overtake_their_message(backend: Backend) {
    let mut app = TestApp::new(
        backend,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"order_probe\"]\n[performance]\nmax_concurrent_handlers = 8\n",
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut registry, _) = registry_with_test_listeners();
    registry
        .register(Arc::new(OrderProbe(seen.clone())))
        .unwrap();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let mut ids = Vec::new();
    for i in 0..60 {
        let topic = format!("t{}", i % 6);
        let id = fake.send_channel_message(10, "a@example.com", "general", &topic, "v1");
        let stream_id = fake
            .messages()
            .iter()
            .find(|m| m["id"] == id)
            .and_then(|m| m["stream_id"].as_i64())
            .unwrap();
        fake.push_event(json!({"type": "update_message", "message_id": id, "message_ids": [id],
            "stream_id": stream_id, "orig_subject": topic, "subject": topic, "content": "v2", "flags": [], "edit_timestamp": 1, "user_id": 10, "rendering_only": false}));
        ids.push(id);
    }
    assert!(
        eventually(WAIT, || async { seen.lock().unwrap().len() == 120 }).await,
        "every message and edit ran"
    );
    app.stop().await.expect("clean stop");
    let seen = seen.lock().unwrap().clone();
    for id in ids {
        let msg = seen
            .iter()
            .position(|(t, m)| t == "message" && *m == id)
            .unwrap();
        let edit = seen
            .iter()
            .position(|(t, m)| t == "update_message" && *m == id)
            .unwrap();
        assert!(
            msg < edit,
            "the edit of {id} ran before its message: {seen:?}"
        );
    }
}

both_backends!(edits_never_overtake_their_message =>
    edits_never_overtake_their_message_on_sqlite,
    edits_never_overtake_their_message_on_postgres);

#[tokio::test]
async fn a_failed_run_is_retried_and_its_final_outcome_logged_once() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "[listeners]\nenabled = [\"flaky\", \"failing\"]\n[queue]\nmax_retries = 2\nretry_delay = 0.05\n").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for i in 0..10 {
        fake.send_channel_message(10, "a@example.com", "general", &format!("t{i}"), "hi");
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 20
        })
        .await,
        "one final row per (event, listener)"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'flaky' AND success AND attempts = 3").await,
        10,
        "flaky succeeds on its third try"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'failing' AND NOT success AND attempts = 3").await,
        10
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = 'failing' AND attempts = 3").await,
        10,
        "the last failure is dead-lettered"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = 'flaky'")
            .await,
        0
    );
}

#[tokio::test]
async fn an_open_circuit_skips_runs_and_keeps_them_for_replay() {
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), "[listeners]\nenabled = [\"failing\", \"message_logger\"]\n[performance]\nmax_concurrent_handlers = 1\n[error_handling]\ncircuit_breaker_threshold = 3\ncircuit_breaker_cooldown = 3600\n").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    db.migrate().await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for _ in 0..12 {
        fake.send_channel_message(10, "a@example.com", "general", "same topic", "hi");
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 24
        })
        .await
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'failing' AND error LIKE 'skipped%'").await,
        9,
        "after three failures in a row the other nine runs are skipped"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = 'failing'"
        )
        .await,
        12
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        12,
        "other listeners are unaffected"
    );
}

#[tokio::test]
async fn three_partitioned_instances_together_handle_each_event_exactly_once() {
    let world = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    let (fake, db) = (world.fake.clone(), world.db.clone());
    db.migrate().await;
    let mut daemons = Vec::new();
    for k in 1..=3 {
        let mut app = world.beside(&format!(
            "[scaling]\ninstance_id = \"{k}\"\ntotal_instances = 3\npartition_strategy = \"hash\"\n"
        ));
        app.start(Registry::builtin(), RunOptions::default()).await;
        daemons.push(app);
    }
    assert!(
        eventually(WAIT, || async { fake.register_count() == 3 }).await,
        "each instance has its own queue"
    );
    for i in 0..300 {
        fake.send_channel_message(
            10 + i % 7,
            "a@example.com",
            "general",
            &format!("topic {}", i % 30),
            "hi",
        );
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'message_logger'").await == 300
        })
        .await,
        "every message is logged by exactly one instance"
    );
    for mut d in daemons {
        d.stop().await.expect("clean stop");
    }
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM (SELECT i.message_id, e.listener_name FROM event_listeners_eventlog e \
             JOIN event_listeners_inbox i ON i.id = e.inbox_id GROUP BY 1, 2 HAVING count(*) <> 1) d"
        )
        .await,
        0,
        "no (message, listener) pair ran on two instances"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        300
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT instance) FROM event_listeners_inbox")
            .await,
        3
    );
    let per_instance = db
        .pairs("SELECT CAST(i.instance AS BIGINT), count(*) FROM event_listeners_eventlog e JOIN event_listeners_inbox i ON i.id = e.inbox_id WHERE e.listener_name = 'message_logger' GROUP BY 1 ORDER BY 1")
        .await;
    assert_eq!(
        per_instance.len(),
        3,
        "the hash spreads the 30 topics over all three: {per_instance:?}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_cursor WHERE queue_id IS NOT NULL")
            .await,
        3,
        "one cursor per instance"
    );
}

/// A webhook receiver on loopback that keeps every JSON body it gets.
async fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::{routing::post, Json, Router};
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test]
async fn an_opened_circuit_and_an_auto_disable_are_notified_and_shown_in_health() {
    let (hook, got) = webhook().await;
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        &format!(
            "[listeners]\nenabled = [\"failing\"]\n[error_handling]\ncircuit_breaker_threshold = 2\ncircuit_breaker_cooldown = 0.2\nauto_disable_threshold = 4\nnotification_webhook = \"{hook}\"\n"
        ),
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    // Two failures open the circuit; the next message is skipped.
    for _ in 0..3 {
        fake.send_channel_message(10, "a@example.com", "general", "t", "hi");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        eventually(WAIT, || async {
            got.lock()
                .unwrap()
                .iter()
                .any(|v| v["event"] == "circuit_opened")
        })
        .await,
        "the webhook hears that the circuit opened"
    );
    let health = app.health().await.body;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["open_circuits"][0]["listener"], "failing",
        "{health}"
    );

    // After the cool-down, failed trials keep failing: the fourth failure in
    // a row disables the listener, which is stored and notified.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        fake.send_channel_message(10, "a@example.com", "general", "t", "hi");
    }
    assert!(
        eventually(WAIT, || async {
            got.lock()
                .unwrap()
                .iter()
                .any(|v| v["event"] == "listener_disabled")
        })
        .await,
        "the webhook hears that the listener was disabled: {:?}",
        got.lock().unwrap()
    );
    assert!(
        eventually(WAIT, || async {
            db.try_scalar("SELECT count(*) FROM event_listeners_listenerstate WHERE listener_name = 'failing' AND NOT enabled").await == Some(1)
        })
        .await,
        "the disable is stored, so it survives a restart"
    );
    let health = app.health().await.body;
    assert_eq!(health["disabled_listeners"][0], "failing", "{health}");
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .any(|v| v["event"] == "dead_lettered" && v["listener"] == "failing"));
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn blocked_users_and_per_listener_filters_keep_runs_away_but_store_the_events() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "[listeners]\nenabled = [\"message_logger\", \"counting\"]\n[listeners.message_logger]\nchannels = [\"support\"]\n[security]\nblocked_users = [66, \"spammer@example.com\"]\n").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let (registry, counter) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for i in 0..10 {
        fake.send_channel_message(10, "a@example.com", "support", "t", &format!("s{i}"));
        fake.send_channel_message(10, "a@example.com", "general", "t", &format!("g{i}"));
        fake.send_channel_message(66, "spammer@example.com", "support", "t", "buy now");
    }
    assert!(
        eventually(WAIT, || async {
            db.try_scalar("SELECT count(*) FROM event_listeners_inbox")
                .await
                == Some(30)
        })
        .await,
        "every event is stored, filtered or not"
    );
    assert!(
        eventually(WAIT, || async { db.try_scalar("SELECT count(*) FROM event_listeners_eventlog").await == Some(30) }).await,
        "10 message_logger runs (support only, not the blocked sender) and 20 counting runs (not the blocked sender)"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(db.scalar("SELECT count(*) FROM event_listeners_messagelog WHERE channel = 'support' AND sender_id = 10").await, 10);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        10
    );
    assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 20);
}
