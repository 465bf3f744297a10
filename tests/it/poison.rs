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
