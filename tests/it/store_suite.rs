//! One suite both stores must pass: de-duplication, cursor, recording,
//! and the recovery of events whose runs were not all recorded. Each test
//! runs once per backend (`sqlite::…` and `postgres::…`).

use std::sync::Arc;
use std::time::Duration;

use zulip_event_listeners::event::{Event, QuarantineReason, Quarantined};
use zulip_event_listeners::listeners::{
    ActivityKind, ActivityRecord, MessageLogRecord, Record, Reply, ReplyTo,
};
use zulip_event_listeners::store::{Cursor, Origin, RunRecord, Store};

use crate::support::*;

both_backends!(mod:
    append_stores_each_event_once_and_moves_the_cursor,
    the_raw_json_comes_back_byte_for_byte,
    nothing_recorded_leaves_every_event_unfinished,
    a_run_below_the_watermark_leaves_its_event_unfinished_with_the_listener_done,
    recording_through_the_last_event_finishes_everything_and_counts_it,
    a_batch_mixing_a_stored_event_with_new_ones_stores_the_new_ones_once,
    a_message_logged_twice_keeps_one_row_and_both_runs,
    listener_data_is_upserted_and_replies_queued_with_their_run,
    listener_data_keeps_the_latest_events_value_whatever_order_runs_finish_in,
    a_batch_repeating_an_event_id_gives_its_row_to_the_first_copy_only,
    quarantined_elements_commit_with_their_batch_bytes_and_all,
);

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
        dead_letter: None,
        fallback: Default::default(),
    }
}

fn queue() -> Origin {
    Origin::Queue("q1".into())
}

fn first_cursor() -> Cursor {
    Cursor {
        site: "https://z/api/v1/".into(),
        queue_id: "q1".into(),
        last_event_id: 1,
        last_message_id: Some(11),
    }
}

/// Stores messages 10 and 11 (events 0 and 1) of queue `q1` with
/// [`first_cursor`]; returns their inbox ids.
async fn store_two(s: &Arc<dyn Store>) -> (i64, i64) {
    let ids = s
        .append(
            "i",
            &queue(),
            &[message(0, 10), message(1, 11)],
            Some(&first_cursor()),
        )
        .await
        .unwrap();
    assert!(ids.iter().all(Option::is_some));
    (ids[0].unwrap(), ids[1].unwrap())
}

/// Records listener `x` on `a` with the watermark below it.
async fn record_x_below(s: &Arc<dyn Store>, a: i64) {
    s.record("i", &[run(a, "x", vec![])], Some(a - 1))
        .await
        .unwrap();
}

/// Records listener `y`, with one message activity each, on `a` and `b`,
/// and the watermark through `b`.
async fn record_y_through(s: &Arc<dyn Store>, a: i64, b: i64) {
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
}

/// Appends events 1 to 3 (event 1 stored already) with the cursor at 3.
async fn append_mixed(s: &Arc<dyn Store>) -> (Vec<Option<i64>>, Cursor) {
    let later = Cursor {
        last_event_id: 3,
        last_message_id: Some(13),
        ..first_cursor()
    };
    let mixed = s
        .append(
            "i",
            &queue(),
            &[message(1, 11), message(2, 12), message(3, 13)],
            Some(&later),
        )
        .await
        .unwrap();
    (mixed, later)
}

async fn append_stores_each_event_once_and_moves_the_cursor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;

    store_two(&s).await;
    assert_eq!(s.load_cursor("i").await.unwrap(), Some(first_cursor()));
    assert_eq!(
        s.load_cursor("other").await.unwrap(),
        None,
        "cursors are per instance"
    );

    // The same events again, and message 11 arriving by backfill: duplicates.
    let again = s
        .append("i", &queue(), &[message(1, 11)], None)
        .await
        .unwrap();
    assert_eq!(again, vec![None]);
    let backfilled = Event::backfilled_message(
        &serde_json::value::RawValue::from_string(r#"{"id":11,"sender_id":3,"display_recipient":"g","subject":"t","timestamp":1,"content":"c"}"#.into()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        s.append("i", &Origin::Backfill, &[backfilled], None)
            .await
            .unwrap(),
        vec![None]
    );
    db.drop_db().await;
}

async fn the_raw_json_comes_back_byte_for_byte(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    store_two(&s).await;

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
    db.drop_db().await;
}

/// `(queue id, kind, reason, raw, raw bytes)` of a quarantine row.
type QuarantineRow = (String, String, String, String, Option<Vec<u8>>);

async fn a_batch_repeating_an_event_id_gives_its_row_to_the_first_copy_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let events = [
        message(0, 10),
        message(1, 11),
        message(1, 12),
        message(2, 13),
    ];
    let ids = s.append("i", &queue(), &events, None).await.unwrap();
    assert!(
        ids[0].is_some() && ids[1].is_some() && ids[3].is_some(),
        "{ids:?}"
    );
    assert_eq!(
        ids[2], None,
        "the second copy was not stored, so it has no row"
    );
    let stored = db
        .pairs("SELECT event_id, message_id FROM event_listeners_inbox ORDER BY id")
        .await;
    assert_eq!(stored, [(0, 10), (1, 11), (2, 13)]);
    db.drop_db().await;
}

async fn quarantined_elements_commit_with_their_batch_bytes_and_all(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let not_utf8 = b"{\"id\":1,\"s\":\"\xff\0\"}".to_vec();
    let quarantined = [
        Quarantined::new(
            QuarantineReason::InvalidUtf8,
            "not UTF-8 \0 at byte 9".into(),
            None,
            &not_utf8,
        ),
        Quarantined::new(
            QuarantineReason::NoId,
            "no id".into(),
            None,
            br#"{"type":"x"}"#,
        ),
    ];
    let cursor = first_cursor();
    let ids = s
        .append_quarantining(
            "i",
            &queue(),
            &[message(0, 10)],
            &quarantined,
            Some(&cursor),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let c = s.load_cursor("i").await.unwrap().unwrap();
    assert_eq!(c.last_event_id, cursor.last_event_id, "with the cursor");
    let rows: Vec<QuarantineRow> = db
        .rows("SELECT queue_id, kind, reason, raw, raw_bytes FROM event_listeners_quarantine ORDER BY id")
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("q1", "invalid_utf8")
    );
    assert_eq!(
        rows[0].2, "not UTF-8 \u{FFFD} at byte 9",
        "NULs are replaced"
    );
    assert_eq!(rows[0].3, "{\"id\":1,\"s\":\"\u{FFFD}\u{FFFD}\"}");
    assert_eq!(rows[0].4.as_deref(), Some(&not_utf8[..]), "the exact bytes");
    assert_eq!((rows[1].1.as_str(), rows[1].4.as_deref()), ("no_id", None));
    assert_eq!(s.quarantined_count().await.unwrap(), 2);
    assert_eq!(s.summary().await.unwrap().quarantined, 2);
    db.drop_db().await;
}

async fn nothing_recorded_leaves_every_event_unfinished(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let before = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (a, b) = store_two(&s).await;

    let unfinished = s.unfinished("i").await.unwrap();
    assert_eq!(
        unfinished
            .iter()
            .map(|u| u.stored.inbox_id)
            .collect::<Vec<_>>(),
        vec![a, b]
    );
    // Each comes back with when it was stored (the webhook and exec
    // envelopes' `received_at`).
    for u in &unfinished {
        let t = u.stored.received_at;
        assert!(t > before && t < chrono::Utc::now(), "{t}");
    }
    db.drop_db().await;
}

async fn a_run_below_the_watermark_leaves_its_event_unfinished_with_the_listener_done(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let (a, _) = store_two(&s).await;

    record_x_below(&s, a).await;
    let unfinished = s.unfinished("i").await.unwrap();
    assert_eq!(unfinished[0].done, vec!["x".to_owned()]);
    assert_eq!(unfinished[0].stored.event.message_id(), Some(10));
    db.drop_db().await;
}

async fn recording_through_the_last_event_finishes_everything_and_counts_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let (a, b) = store_two(&s).await;
    record_x_below(&s, a).await;

    record_y_through(&s, a, b).await;
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
    db.drop_db().await;
}

/// The fast path's unique violation, then the careful retry on PostgreSQL.
async fn a_batch_mixing_a_stored_event_with_new_ones_stores_the_new_ones_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    store_two(&s).await;

    let (mixed, later) = append_mixed(&s).await;
    assert_eq!(mixed[0], None, "{mixed:?}");
    assert!(mixed[1].is_some() && mixed[2].is_some(), "{mixed:?}");
    assert_eq!(s.load_cursor("i").await.unwrap(), Some(later));
    assert_eq!(s.summary().await.unwrap().inbox, 4);
    db.drop_db().await;
}

/// A replay logs a message again: one message log row, both runs recorded.
async fn a_message_logged_twice_keeps_one_row_and_both_runs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let (a, b) = store_two(&s).await;
    record_x_below(&s, a).await;
    record_y_through(&s, a, b).await;
    let (mixed, _) = append_mixed(&s).await;

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
                channel_id: Some(4),
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

/// `Record::Data` is one row per (listener, key), the last value winning
/// even within one batch; `Record::Reply` is one outbox row per reply.
async fn listener_data_is_upserted_and_replies_queued_with_their_run(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let (a, b) = store_two(&s).await;
    let data = |n: i64| Record::Data {
        key: "count".into(),
        value: serde_json::json!({ "n": n, "text": "é\"x" }),
    };
    let reply = |to| {
        Record::Reply(Reply {
            to,
            content: "pong".into(),
        })
    };
    let channel = ReplyTo::Channel {
        channel: "ops".into(),
        topic: "deploys".into(),
    };
    let direct = ReplyTo::Direct {
        user_ids: vec![3, 9],
    };
    s.record(
        "i",
        &[
            run(a, "bot", vec![data(1), reply(channel.clone())]),
            run(b, "bot", vec![data(2), reply(direct), reply(channel)]),
        ],
        Some(b),
    )
    .await
    .unwrap();
    let value = db
        .text_pairs("SELECT key, CAST(value AS TEXT) FROM event_listeners_listenerdata")
        .await;
    assert_eq!(value.len(), 1, "{value:?}");
    let stored: serde_json::Value = serde_json::from_str(value[0].1.as_deref().unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({ "n": 2, "text": "é\"x" }));
    assert_eq!(
        db.text_pairs(
            "SELECT recipient_type, COALESCE(user_ids, channel || '/' || topic)
             FROM event_listeners_replyoutbox ORDER BY inbox_id, seq"
        )
        .await,
        vec![
            ("channel".to_owned(), Some("ops/deploys".to_owned())),
            ("direct".to_owned(), Some("3,9".to_owned())),
            ("channel".to_owned(), Some("ops/deploys".to_owned())),
        ]
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_replyoutbox WHERE status = 'pending' AND instance = 'i'")
            .await,
        3
    );
    db.drop_db().await;
}

/// Runs finish in any order (bounded concurrency, retries): the value of the
/// latest event wins, within one batch and across batches. Regression: the
/// last run recorded used to win, so the example `last_word` listener kept
/// an older message of a channel when an older run committed last (CI).
async fn listener_data_keeps_the_latest_events_value_whatever_order_runs_finish_in(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let (a, b) = store_two(&s).await;
    assert!(a < b);
    let data = |n: i64| Record::Data {
        key: "last".into(),
        value: serde_json::json!({ "n": n }),
    };
    let stored = || async {
        db.text_pairs("SELECT key, CAST(value AS TEXT) FROM event_listeners_listenerdata")
            .await
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_str::<serde_json::Value>(&v.unwrap()).unwrap()["n"].clone()
            })
            .collect::<Vec<_>>()
    };
    // One batch, the newer event's run first.
    s.record(
        "i",
        &[run(b, "bot", vec![data(2)]), run(a, "bot", vec![data(1)])],
        Some(b),
    )
    .await
    .unwrap();
    assert_eq!(stored().await, vec![serde_json::json!(2)]);
    // A later batch holding only the older event's run (a retry).
    s.record("i", &[run(a, "bot", vec![data(1)])], None)
        .await
        .unwrap();
    assert_eq!(stored().await, vec![serde_json::json!(2)]);
    // The same event again (a rewind) still sets its value.
    s.record("i", &[run(b, "bot", vec![data(3)])], None)
        .await
        .unwrap();
    assert_eq!(stored().await, vec![serde_json::json!(3)]);
    db.drop_db().await;
}
