//! Large batches of runs on PostgreSQL (the recorder commits up to 2,048
//! runs at once): a batch of 300 runs must log the same rows, column for
//! column, as the same runs in batches of 10, with the batch's other
//! writes (message log, watermark) in the same commit.

use std::time::Duration;

use chrono::TimeZone;
use zulip_event_listeners::event::Event;
use zulip_event_listeners::listeners::{MessageLogRecord, Record};

use zulip_event_listeners::store::RunRecord;

use crate::support::{Backend, TestDb};

/// Events per half of the test; two listeners each, so 300 runs a half.
const EVENTS: i64 = 150;

fn message(event_id: i64) -> Event {
    Event::parse(&format!(
        r#"{{"type":"message","id":{event_id},"message":{{"id":{},"sender_id":3,"sender_email":"s@x","display_recipient":"general","subject":"t","timestamp":1790000000,"content":"hi"}},"flags":[]}}"#,
        event_id + 10_000
    ))
    .expect("an event")
}

/// The two runs of inbox id `id`: a success of `message_logger` that logs
/// the message, and a failure of `hook` after 3 attempts with an error text.
fn runs_of(id: i64, k: i64, message_id: i64) -> Vec<RunRecord> {
    let at = chrono::Utc
        .timestamp_micros(1_790_000_000_123_456 + k)
        .single()
        .expect("a time");
    let logged = MessageLogRecord {
        message_id,
        sender_id: 3,
        sender_email: "s@x".into(),
        recipient_type: "channel",
        channel: Some("general".into()),
        channel_id: Some(4),
        topic: Some("t".into()),
        dm_recipients: None,
        content_length: 2,
        sent_at: at,
    };
    vec![
        RunRecord {
            inbox_id: id,
            listener: "message_logger".into(),
            event_type: "message".into(),
            success: true,
            attempts: 1,
            error: None,
            duration: Duration::from_micros(1_250),
            finished_at: at,
            records: vec![Record::MessageLog(logged)],
            dead_letter: None,
            fallback: Default::default(),
        },
        RunRecord {
            inbox_id: id,
            listener: "hook".into(),
            event_type: "message".into(),
            success: false,
            attempts: 3,
            error: Some(format!("HTTP 503 — «{k}»")),
            duration: Duration::from_millis(40),
            finished_at: at,
            records: Vec::new(),
            dead_letter: None,
            fallback: Default::default(),
        },
    ]
}

type Row = (String, i64, String, bool, i64, Option<String>, String, i64);

const ROWS: &str = "SELECT listener_name, inbox_id, event_type, success, attempts::int8, error,
       duration::text, (extract(epoch FROM timestamp) * 1000000)::int8
     FROM event_listeners_eventlog ORDER BY inbox_id, listener_name DESC";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_of_runs_logs_the_same_rows_as_small_ones_with_its_other_writes() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate().await;
    let store = db.store().await;
    let events: Vec<Event> = (0..2 * EVENTS).map(message).collect();
    let ids = crate::support::append_events(&store, "default", &events).await;
    let half = EVENTS as usize;
    let runs: Vec<Vec<RunRecord>> = ids
        .iter()
        .zip(&events)
        .enumerate()
        .map(|(i, (id, _))| runs_of(*id, (i % half) as i64, i as i64 + 10_000))
        .collect();
    // The first half in one batch of 300 runs, with the watermark.
    let big: Vec<RunRecord> = runs[..half].iter().flatten().cloned().collect();
    store
        .record("default", &big, Some(ids[half - 1]))
        .await
        .expect("the large batch");
    // The second half in batches of 10 runs.
    let small: Vec<RunRecord> = runs[half..].iter().flatten().cloned().collect();
    for chunk in small.chunks(10) {
        store
            .record("default", chunk, None)
            .await
            .expect("a small batch");
    }
    let rows: Vec<Row> = db.rows(ROWS).await;
    assert_eq!(rows.len(), 4 * half, "every run logged once");
    let (large, small_rows) = rows.split_at(2 * half);
    // Column for column, the inbox ids aside (the second half's are others).
    let offset = ids[half] - ids[0];
    for (a, b) in large.iter().zip(small_rows) {
        let mut shifted = b.clone();
        shifted.1 -= offset;
        assert_eq!(a, &shifted, "a row of the large batch and its twin");
    }
    // And against the runs themselves, in their order.
    for (row, run) in large.iter().zip(&big) {
        let expected: Row = (
            run.listener.to_string(),
            run.inbox_id,
            "message".to_owned(),
            run.success,
            i64::from(run.attempts),
            run.error.clone(),
            run.duration.as_secs_f64().to_string(),
            run.finished_at.timestamp_micros(),
        );
        assert_eq!(row, &expected);
    }
    // The large batch's other writes committed with it.
    let logged = db
        .scalar("SELECT count(*) FROM event_listeners_messagelog")
        .await;
    assert_eq!(logged, 2 * EVENTS, "both halves' messages logged");
    let unfinished = store.unfinished("default").await.expect("unfinished");
    assert!(
        unfinished.iter().all(|u| u.stored.inbox_id > ids[half - 1]),
        "the large batch's watermark committed with it"
    );
}
