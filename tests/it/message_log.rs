//! The message log follows the conversation, through the whole daemon:
//! the events a real Zulip 10.2 server sent (`tests/fixtures`), and the
//! fake's edits, moves (`change_later`, `change_all`, to another channel)
//! and deletions (bulk, single, a retention policy's), each reflected in
//! `event_listeners_messagelog` on both backends.

use std::time::Duration;

use serde_json::{json, Value};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::message_log_store::{rows, Row};
use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

both_backends!(the_real_servers_edits_moves_and_deletions_reach_the_message_log =>
    the_real_servers_edits_moves_and_deletions_reach_the_message_log_on_sqlite,
    the_real_servers_edits_moves_and_deletions_reach_the_message_log_on_postgres);

both_backends!(moves_follow_every_moved_message_and_deletions_mark_each =>
    moves_follow_every_moved_message_and_deletions_mark_each_on_sqlite,
    moves_follow_every_moved_message_and_deletions_mark_each_on_postgres);

/// The bot's queue of the real server's capture (lines 1-49), without ids.
fn bot_queue_fixture() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/real-zulip-10.2-events.jsonl"))
        .expect("the fixture");
    text.lines()
        .take(49)
        .map(|l| {
            let mut e: Value = serde_json::from_str(l).expect("a JSON event");
            e.as_object_mut().expect("an object").remove("id");
            e
        })
        .collect()
}

/// A test daemon on `backend`, migrated, started, with its queue registered.
async fn started(backend: Backend, fake: FakeOptions) -> TestApp {
    let mut app = TestApp::new(backend, fake, "").await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app
}

/// Waits until message_logger has logged `n` runs.
async fn logger_runs(db: &TestDb, n: i64) {
    let sql = "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'message_logger' AND success";
    assert!(
        eventually(WAIT, || async { count(db, sql).await == n }).await,
        "message_logger ran {} of {n} times",
        count(db, sql).await
    );
}

fn find(rows: &[Row], id: i64) -> &Row {
    rows.iter()
        .find(|r| r.0 == id)
        .unwrap_or_else(|| panic!("message {id} is logged: {rows:?}"))
}

async fn the_real_servers_edits_moves_and_deletions_reach_the_message_log(backend: Backend) {
    // Arrange: the daemon polling; the capture, delivered as one page so
    // that each message, its edits, its move and its deletion arrive
    // together (the hardest case for their order).
    let mut app = started(backend, FakeOptions::default()).await;
    let events = bot_queue_fixture();
    let followed = events
        .iter()
        .filter(|e| {
            ["message", "update_message", "delete_message"].contains(&e["type"].as_str().unwrap())
        })
        .count() as i64;

    // Act
    app.fake.hold_delivery(true);
    for e in &events {
        app.fake.push_event(e.clone());
    }
    app.fake.hold_delivery(false);

    // Assert
    logger_runs(&app.db, followed).await;
    let log = rows(&app.db).await;
    for (edited, moved, deleted, dm, round) in
        [(516, 517, 518, 519, "ev1"), (1027, 1028, 1029, 1030, "ev2")]
    {
        let stamp = if round == "ev1" {
            1_796_111_633
        } else {
            1_796_111_823
        };
        let e = find(&log, edited);
        assert_eq!(
            (e.1, e.2.as_deref(), e.5, e.6, e.7),
            (
                18,
                Some(format!("{round}-edits").as_str()),
                Some(stamp),
                None,
                None
            ),
            "{round}: the content edit sets the length and edited_at"
        );
        let m = find(&log, moved);
        assert_eq!(
            (m.2.as_deref(), m.3.as_deref(), m.4, m.5, m.6),
            (
                Some(format!("{round}-moved").as_str()),
                Some("test-a"),
                Some(4),
                None,
                Some(stamp)
            ),
            "{round}: the topic move"
        );
        assert!(
            find(&log, deleted).7.is_some(),
            "{round}: the deletion is marked"
        );
        let d = find(&log, dm);
        assert_eq!(
            (d.1, d.5),
            (13, Some(stamp)),
            "{round}: the direct message's edit"
        );
    }
    assert_eq!(
        app.db
            .scalar("SELECT edit_count FROM event_listeners_useractivity WHERE user_id = 7")
            .await,
        6,
        "King Hamlet's six edits and moves count as his activity"
    );
    let _ = app.stop().await;
}

async fn moves_follow_every_moved_message_and_deletions_mark_each(backend: Backend) {
    // Arrange: four messages in general > plans, one in random, where
    // retention later deletes, and a direct message.
    let fake_opts = FakeOptions {
        feature_level: 452,
        ..FakeOptions::default()
    };
    let mut app = started(backend, fake_opts).await;
    let fake = app.fake.clone();
    let (hamlet, email) = (7, "hamlet@example.com");
    let plans: Vec<i64> = (1..=4)
        .map(|i| fake.send_channel_message(hamlet, email, "general", "plans", &format!("plan {i}")))
        .collect();
    let random = fake.send_channel_message(hamlet, email, "random", "x", "hello");
    let old: Vec<i64> = (0..3)
        .map(|i| fake.send_channel_message(hamlet, email, "random", "old", &format!("old {i}")))
        .collect();
    let dm = fake.send_direct_message(hamlet, email, &[fake.user_id()], "psst");
    logger_runs(&app.db, 9).await;

    // Act: moves, as one page with an edit; then deletions.
    fake.hold_delivery(true);
    let later = fake.move_messages(plans[1], hamlet, "change_later", Some("later"), None);
    let first = fake.move_messages(plans[0], hamlet, "change_all", None, Some("random"));
    let all = fake.move_messages(plans[2], hamlet, "change_all", None, Some("brand-new"));
    fake.edit_message(random, hamlet, "hello, edited");
    fake.hold_delivery(false);
    fake.delete_messages(&old);
    // The form a server sends a client without bulk_message_deletion.
    fake.push_event(json!({"type": "delete_message", "message_type": "private", "message_id": dm}));
    logger_runs(&app.db, 9 + 4 + 2).await;

    // Assert
    assert_eq!((later.len(), first.len(), all.len()), (3, 1, 3));
    let log = rows(&app.db).await;
    let place = |id| {
        let r = find(&log, id);
        (r.2.clone(), r.3.clone(), r.6.is_some())
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(place(plans[0]), (some("plans"), some("random"), true));
    for &id in &plans[1..] {
        // Moved to topic "later", then with it to a channel nothing is
        // logged in: its name is unknown, its id is kept.
        assert_eq!(place(id), (some("later"), None, true), "message {id}");
        assert_ne!(find(&log, id).4, find(&log, random).4, "a new channel id");
    }
    assert_eq!(find(&log, random).1, 13, "the edit's new length");
    for id in old.iter().chain([&dm]) {
        assert!(
            find(&log, *id).7.is_some(),
            "message {id} is marked deleted"
        );
    }
    assert!(find(&log, random).7.is_none());
    let _ = app.stop().await;
}
