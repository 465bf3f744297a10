//! One suite both stores must pass: de-duplication, cursor, recording,
//! and the recovery of events whose runs were not all recorded.

use std::sync::Arc;
use std::time::Duration;

use zulip_event_listeners::event::Event;
use zulip_event_listeners::listeners::{ActivityKind, ActivityRecord, MessageLogRecord, Record};
use zulip_event_listeners::store::{self, Cursor, RunRecord, Store};

use crate::support::*;

async fn store_for(db: &TestDb) -> Arc<dyn Store> {
    let s = store::open(&db.url, &Default::default())
        .await
        .expect("open");
    s.migrate().await.expect("migrate");
    s
}

fn message(event_id: i64, message_id: i64) -> Event {
    Event::parse(&format!(
        r#"{{"type":"message","id":{event_id},"message":{{"id":{message_id},"sender_id":3,"sender_email":"s@x","display_recipient":"general","subject":"t","timestamp":1790000000,"content":"hi"}},"flags":[]}}"#
    ))
    .unwrap()
}

fn run(inbox_id: i64, listener: &str, records: Vec<Record>) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: listener.into(),
        event_type: "message".into(),
        success: true,
        attempts: 1,
        error: None,
        duration: Duration::from_millis(3),
        finished_at: chrono::Utc::now(),
        records,
        dead_letter: false,
    }
}

async fn suite(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = store_for(&db).await;
    let cursor = Cursor {
        site: "https://z/api/v1/".into(),
        queue_id: "q1".into(),
        last_event_id: 1,
        last_message_id: Some(11),
    };

    // Append stores each event once and moves the cursor with it.
    let ids = s
        .append("i", "q1", &[message(0, 10), message(1, 11)], Some(&cursor))
        .await
        .unwrap();
    assert!(ids.iter().all(Option::is_some));
    assert_eq!(s.load_cursor("i").await.unwrap(), Some(cursor.clone()));
    assert_eq!(
        s.load_cursor("other").await.unwrap(),
        None,
        "cursors are per instance"
    );

    // The same events again, and message 11 arriving by backfill: duplicates.
    let again = s.append("i", "q1", &[message(1, 11)], None).await.unwrap();
    assert_eq!(again, vec![None]);
    let backfilled = Event::backfilled_message(
        &serde_json::value::RawValue::from_string(r#"{"id":11,"sender_id":3,"display_recipient":"g","subject":"t","timestamp":1,"content":"c"}"#.into()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        s.append("i", "backfill", &[backfilled], None)
            .await
            .unwrap(),
        vec![None]
    );

    // The raw JSON comes back byte for byte.
    let raw = message(0, 10).raw().to_owned();
    let stored: String = match backend {
        Backend::Sqlite => db
            .text_pairs("SELECT raw, NULL FROM event_listeners_inbox ORDER BY id LIMIT 1")
            .await[0]
            .0
            .clone(),
        Backend::Postgres => db
            .text_pairs("SELECT raw::text, NULL FROM event_listeners_inbox ORDER BY id LIMIT 1")
            .await[0]
            .0
            .clone(),
    };
    assert_eq!(stored, raw);

    // Nothing recorded yet: both events are unfinished.
    let (a, b) = (ids[0].unwrap(), ids[1].unwrap());
    let unfinished = s.unfinished("i").await.unwrap();
    assert_eq!(
        unfinished
            .iter()
            .map(|u| u.stored.inbox_id)
            .collect::<Vec<_>>(),
        vec![a, b]
    );

    // One listener finished event a; the watermark stays below a.
    s.record("i", &[run(a, "x", vec![])], Some(a - 1))
        .await
        .unwrap();
    let unfinished = s.unfinished("i").await.unwrap();
    assert_eq!(unfinished[0].done, vec!["x".to_owned()]);
    assert_eq!(unfinished[0].stored.event.message_id(), Some(10));

    // Everything recorded through b: nothing is unfinished.
    let act = Record::Activity(ActivityRecord {
        user_id: 3,
        email: Some("s@x".into()),
        seen_at: chrono::Utc::now(),
        kind: ActivityKind::Message,
    });
    s.record(
        "i",
        &[run(a, "y", vec![act.clone()]), run(b, "y", vec![act])],
        Some(b),
    )
    .await
    .unwrap();
    assert!(s.unfinished("i").await.unwrap().is_empty());
    assert_eq!(
        db.scalar("SELECT message_count FROM event_listeners_useractivity WHERE user_id = 3")
            .await,
        2
    );
    assert_eq!(
        db.scalar("SELECT CAST(sum(total_events) AS BIGINT) FROM event_listeners_listenerstats")
            .await,
        3
    );

    // An older watermark never moves it back.
    s.record("i", &[], Some(0)).await.unwrap();
    assert!(s.unfinished("i").await.unwrap().is_empty());

    let summary = s.summary().await.unwrap();
    assert_eq!((summary.inbox, summary.eventlog, summary.users), (2, 3, 1));

    // A batch mixing a stored event with new ones (the fast path's unique
    // violation, then the careful retry on PostgreSQL): the new ones are
    // stored once, the stored one is a duplicate, and the cursor moves.
    let later = Cursor {
        last_event_id: 3,
        last_message_id: Some(13),
        ..cursor.clone()
    };
    let mixed = s
        .append(
            "i",
            "q1",
            &[message(1, 11), message(2, 12), message(3, 13)],
            Some(&later),
        )
        .await
        .unwrap();
    assert_eq!(mixed[0], None, "{mixed:?}");
    assert!(mixed[1].is_some() && mixed[2].is_some(), "{mixed:?}");
    assert_eq!(s.load_cursor("i").await.unwrap(), Some(later));
    assert_eq!(s.summary().await.unwrap().inbox, 4);

    // A message logged twice (a replay) keeps one row; the second run is
    // still recorded.
    let log = |inbox_id| {
        run(
            inbox_id,
            "message_logger",
            vec![Record::MessageLog(MessageLogRecord {
                message_id: 12,
                sender_id: 3,
                sender_email: "s@x".into(),
                recipient_type: "channel",
                channel: Some("general".into()),
                topic: Some("t".into()),
                dm_recipients: None,
                content_length: 2,
                sent_at: chrono::Utc::now(),
            })],
        )
    };
    let c = mixed[1].unwrap();
    s.record("i", &[log(c)], None).await.unwrap();
    s.record("i", &[log(c), run(c, "z", vec![])], None)
        .await
        .unwrap();
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        1
    );
    assert_eq!(s.summary().await.unwrap().eventlog, 6);
    db.drop_db().await;
}

#[tokio::test]
async fn the_sqlite_store_passes_the_store_suite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_postgres_store_passes_the_store_suite() {
    suite(Backend::Postgres).await;
}
