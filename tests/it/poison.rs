//! Poison inputs (issue 13): a NUL in the text of one event must neither
//! crash-loop intake (a NUL in `op`) nor block the recording of its
//! batch-mates for ever (a NUL in a message's topic, on PostgreSQL).

use std::time::Duration;

use serde_json::json;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

both_backends!(a_nul_in_an_event_is_stored_and_its_batch_mates_recorded =>
    a_nul_in_an_event_is_stored_and_its_batch_mates_recorded_on_sqlite,
    a_nul_in_an_event_is_stored_and_its_batch_mates_recorded_on_postgres);

async fn a_nul_in_an_event_is_stored_and_its_batch_mates_recorded(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    fake.send_channel_message(10, "a@example.com", "general", "first", "one");
    fake.send_channel_message(10, "a@example.com", "general", "nul\u{0}topic", "two");
    fake.send_channel_message(10, "a@example.com", "general", "third", "three");
    fake.push_event(json!({"type": "reaction", "op": "add\u{0}", "user_id": 10,
        "message_id": 1, "emoji_name": "tada", "emoji_code": "1f389",
        "reaction_type": "unicode_emoji"}));

    // Every event is stored, every run recorded, every message logged.
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 3
                && count(
                    &db,
                    "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'reaction'",
                )
                .await
                    == 1
        })
        .await,
        "the messages are logged and the reaction stored"
    );
    let topics = db
        .text_pairs("SELECT CAST(message_id AS TEXT), topic FROM event_listeners_messagelog ORDER BY message_id")
        .await;
    assert_eq!(
        topics[1].1.as_deref(),
        Some("nul\u{FFFD}topic"),
        "{topics:?}"
    );
    // The raw event keeps the NUL, escaped, byte for byte.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM event_listeners_inbox WHERE raw LIKE '%add_u0000%'"
        )
        .await,
        1
    );
    assert!(!app.is_finished(), "intake goes on");
    app.stop().await.expect("clean stop");
}

both_backends!(a_run_the_database_refuses_is_dead_lettered_alone =>
    a_run_the_database_refuses_is_dead_lettered_alone_on_sqlite,
    a_run_the_database_refuses_is_dead_lettered_alone_on_postgres);

/// The message log refuses the topic `poison` (a constraint the test adds
/// after migrating), so the message logger's run of the middle message has a
/// row the database will never store; the runs of its batch-mates must be
/// recorded all the same, and that run dead-lettered with the reason.
async fn a_run_the_database_refuses_is_dead_lettered_alone(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    app.db.migrate().await;
    refuse_poison_topics(&app.db).await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    // One page, so that the three runs of each listener share a batch.
    fake.hold_delivery(true);
    fake.send_channel_message(10, "a@example.com", "general", "first", "one");
    fake.send_channel_message(10, "a@example.com", "general", "poison", "two");
    fake.send_channel_message(10, "a@example.com", "general", "third", "three");
    fake.hold_delivery(false);

    // Both listeners' runs of the three events are recorded.
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 6
        })
        .await,
        "every run is recorded"
    );
    let logged = db
        .pairs("SELECT message_id, inbox_id FROM event_listeners_messagelog ORDER BY message_id")
        .await;
    assert_eq!(
        logged.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        [1, 3],
        "the innocent messages are logged"
    );
    let poison = db
        .scalar("SELECT id FROM event_listeners_inbox WHERE raw LIKE '%poison%'")
        .await;
    let failed = db
        .text_pairs(
            "SELECT listener_name, error FROM event_listeners_eventlog \
             WHERE NOT success ORDER BY id",
        )
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "message_logger");
    let reason = failed[0].1.clone().unwrap_or_default();
    assert!(reason.contains("could not be recorded"), "{reason}");
    assert!(
        reason.contains("poison"),
        "the database's own words: {reason}"
    );
    let dead = db
        .text_pairs(&format!(
            "SELECT listener_name, error FROM event_listeners_deadletter WHERE inbox_id = {poison}"
        ))
        .await;
    assert_eq!(dead, [("message_logger".to_owned(), Some(reason))]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter")
            .await,
        1
    );
    let through = db
        .scalar("SELECT dispatched_through FROM event_listeners_dispatched")
        .await;
    let last = db.scalar("SELECT max(id) FROM event_listeners_inbox").await;
    assert_eq!(through, last, "the watermark passes every event");
    assert!(
        eventually(WAIT, || async {
            app.health().await.body["status"] == "healthy"
        })
        .await,
        "{:?}",
        app.health().await
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(
            "zulip_event_listeners_listener_failures_total",
            &[("listener", "message_logger"), ("class", "unrecordable")]
        ),
        Some(1.0)
    );
    app.stop().await.expect("clean stop");

    // Nothing is dispatched again at the next start.
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    fake.send_channel_message(10, "a@example.com", "general", "fourth", "four");
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 3
        })
        .await
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM event_listeners_eventlog WHERE inbox_id <= {last}"
        ))
        .await,
        6,
        "no run of the first three events ran again"
    );
}

/// Makes the message log refuse rows whose topic is `poison`.
async fn refuse_poison_topics(db: &TestDb) {
    match db.backend {
        Backend::Postgres => {
            db.execute(
                "ALTER TABLE event_listeners_messagelog ADD CONSTRAINT no_poison \
                 CHECK (topic IS DISTINCT FROM 'poison')",
            )
            .await
        }
        Backend::Sqlite => {
            db.execute(
                "CREATE TRIGGER no_poison BEFORE INSERT ON event_listeners_messagelog \
                 WHEN NEW.topic = 'poison' BEGIN SELECT RAISE(ABORT, 'no poison topic'); END",
            )
            .await
        }
    }
}
