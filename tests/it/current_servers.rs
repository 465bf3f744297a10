//! Current servers: what `POST /register` declares and asks for follows the
//! server's feature level (learnt with `GET /server_settings`), the queue
//! lifetime granted is exported and warned about, and the event types of
//! servers newer than 10.2 are stored and routed like any other, with an
//! unknown type, op or field never stopping the loop.

use std::time::Duration;

use serde_json::{json, Value};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// A daemon against a fake at `feature_level`, started with `registry`.
async fn started(feature_level: i64, extra: &str, registry: Registry) -> TestApp {
    let fake = FakeOptions {
        feature_level,
        max_idle_queue_timeout: Duration::from_secs(3600),
        ..FakeOptions::default()
    };
    let mut app = TestApp::new(Backend::Sqlite, fake, extra).await;
    app.start(registry, RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app
}

/// The capabilities declared and the lifetime parameters of the first
/// registration.
fn declared(app: &TestApp) -> (Vec<String>, Option<String>, Option<String>) {
    let params = app.fake.registrations().remove(0);
    let caps: Value =
        serde_json::from_str(params["client_capabilities"].as_str().unwrap()).unwrap();
    let names = caps.as_object().unwrap().keys().cloned().collect();
    let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
    (
        names,
        text("idle_queue_timeout"),
        text("queue_lifespan_secs"),
    )
}

#[tokio::test]
async fn registration_follows_the_servers_feature_level() {
    // (feature level, simplified presence declared, idle_queue_timeout
    // asked, lifetime granted). The daemon asks for a day; the fake grants
    // an hour at most from 481.
    for (level, modern_presence, idle, granted) in [
        (372, false, false, 86_400.0),
        (419, true, false, 86_400.0),
        (481, true, true, 3600.0),
    ] {
        let mut app = started(level, "", Registry::builtin()).await;
        let (caps, idle_asked, lifespan_asked) = declared(&app);
        for cap in [
            "notification_settings_null",
            "bulk_message_deletion",
            "user_settings_object",
            "empty_topic_name",
            "archived_channels",
        ] {
            assert!(
                caps.iter().any(|c| c == cap),
                "level {level}: {cap} in {caps:?}"
            );
        }
        assert_eq!(
            caps.iter().any(|c| c == "simplified_presence_events"),
            modern_presence,
            "level {level}: {caps:?}"
        );
        assert_eq!(
            (idle_asked.as_deref(), lifespan_asked.as_deref()),
            match idle {
                true => (Some("86400"), None),
                false => (None, Some("86400")),
            },
            "level {level}: one lifetime parameter, the one the server knows"
        );
        let requests = app.fake.requests();
        let settings = requests.iter().position(|r| r.path == "/server_settings");
        let register = requests.iter().position(|r| r.path == "/register");
        assert!(
            settings < register && settings.is_some(),
            "level {level}: the level is learnt first"
        );
        let metrics = app.metrics().await;
        assert_eq!(
            metrics.first("zulip_event_listeners_queue_lifetime_seconds"),
            Some(granted),
            "level {level}"
        );
        let _ = app.stop().await;
    }
}

/// Events of servers newer than 10.2, and one of a type nobody knows.
fn newer_events() -> Vec<Value> {
    vec![
        json!({"type": "channel_folder", "op": "add", "channel_folder": {"id": 1, "name": "Customer-facing", "description": "", "rendered_description": "", "order": 0, "date_created": 1795771770, "creator_id": 12, "is_archived": false}}),
        json!({"type": "channel_folder", "op": "update", "channel_folder_id": 1, "data": {"name": "Customers"}}),
        json!({"type": "channel_folder", "op": "reorder", "order": [1]}),
        json!({"type": "navigation_view", "op": "add", "navigation_view": {"fragment": "narrow/is/alerted", "is_pinned": true, "name": "Alerts"}}),
        json!({"type": "navigation_view", "op": "update", "fragment": "narrow/is/alerted", "data": {"is_pinned": false}}),
        json!({"type": "navigation_view", "op": "remove", "fragment": "narrow/is/alerted"}),
        json!({"type": "reminders", "op": "add", "reminders": [{"reminder_id": 5, "type": "private", "to": [100], "content": "Check the deploy", "rendered_content": "<p>Check the deploy</p>", "scheduled_delivery_timestamp": 1795775000, "failed": false, "reminder_target_message_id": 1}]}),
        json!({"type": "reminders", "op": "remove", "reminder_id": 5}),
        json!({"type": "device", "op": "add", "device_id": 3}),
        json!({"type": "device", "op": "update", "device_id": 3, "push_key_id": 7}),
        json!({"type": "device", "op": "remove", "device_id": 3}),
        json!({"type": "realm_emoji", "op": "add", "realm_emoji": {"id": "9", "name": "shipit", "source_url": "/user_avatars/2/emoji/shipit.png", "deactivated": false, "author_id": 11}}),
        json!({"type": "realm_emoji", "op": "update_one", "emoji_id": "9", "data": {"deactivated": true}}),
        json!({"type": "stream", "op": "delete", "stream_ids": [7]}),
        json!({"type": "flux_capacitor", "op": "charge", "gigawatts": 1.21, "user_id": "not a number", "message_ids": "nor a list"}),
    ]
}

#[tokio::test]
async fn newer_servers_events_are_stored_and_routed_and_an_unknown_one_stops_nothing() {
    // Arrange: the built-ins and a listener of every type, on a 12.x server.
    let (registry, counter) = registry_with_test_listeners();
    let extra =
        "[listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\", \"counting\"]";
    let mut app = started(481, extra, registry).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let events = newer_events();

    // Act: the new events, a presence update (modern form, declared), then
    // a message.
    for e in &events {
        fake.push_event(e.clone());
    }
    fake.presence(12, "dana@example.com");
    let id = fake.send_channel_message(10, "user10@example.com", "general", "t", "after them");

    // Assert: each stored with its type and op, routed to the listener of
    // every type, and the loop went on to the presence and the message.
    let all = events.len() as i64 + 2;
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'counting'",
            )
            .await
                == all
        })
        .await,
        "every event reached the listener of every type"
    );
    let stored = db
        .text_pairs("SELECT event_type, op FROM event_listeners_inbox ORDER BY id")
        .await;
    let expected: Vec<(String, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["op"].as_str().map(str::to_owned),
            )
        })
        .chain([("presence".to_owned(), None), ("message".to_owned(), None)])
        .collect();
    assert_eq!(stored, expected);
    assert_eq!(
        counter.load(std::sync::atomic::Ordering::SeqCst) as i64,
        all
    );
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                &format!("SELECT count(*) FROM event_listeners_messagelog WHERE message_id = {id}"),
            )
            .await
                == 1
        })
        .await
    );
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT presence_count FROM event_listeners_useractivity WHERE user_id = 12",
            )
            .await
                == 1
        })
        .await,
        "the modern presence form counts for its user"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM event_listeners_eventlog WHERE NOT success"
        )
        .await,
        0
    );
    let _ = app.stop().await;
}
