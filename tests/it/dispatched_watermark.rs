//! The dispatch watermark's own table (migration 20261204000016):
//! `dispatched_through` and `record_batch` move from
//! `event_listeners_cursor` to `event_listeners_dispatched` with their
//! values, the cursor keeps its queue position, and from then on the
//! recorder writes the watermark there and only there.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use zulip_event_listeners::store::RunRecord;

use crate::support::*;

both_backends!(a_watermark_moves_to_its_own_table_with_its_values_and_moves_on_there =>
    a_watermark_moves_to_its_own_table_with_its_values_and_moves_on_there_on_sqlite,
    a_watermark_moves_to_its_own_table_with_its_values_and_moves_on_there_on_postgres);

fn run(inbox_id: i64) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: Arc::from("message_logger"),
        event_type: Arc::from("message"),
        success: true,
        attempts: 1,
        error: None,
        duration: Duration::from_millis(1),
        finished_at: Utc::now(),
        records: Vec::new(),
        dead_letter: None,
        fallback: Default::default(),
    }
}

async fn a_watermark_moves_to_its_own_table_with_its_values_and_moves_on_there(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.migrate_before(20261204000016).await;
    // Two instances as an earlier release left them: one with a queue and
    // a watermark, one whose recorder wrote a watermark before any queue.
    db.execute(
        "INSERT INTO event_listeners_cursor
           (instance, site, queue_id, last_event_id, last_message_id,
            dispatched_through, record_batch, updated_at)
         VALUES ('default', 'https://zulip.example', 'q-old', 41, 7, 0, 77,
                 '2026-12-01 00:00:00+00:00'),
                ('other', NULL, NULL, NULL, NULL, 9, 0, '2026-12-01 00:00:00+00:00')",
    )
    .await;
    db.migrate().await;
    assert_eq!(
        db.pairs(
            "SELECT dispatched_through, record_batch FROM event_listeners_dispatched
             ORDER BY instance"
        )
        .await,
        vec![(0, 77), (9, 0)],
        "both watermarks and the batch tag moved with their values"
    );
    assert_eq!(
        db.text_pairs(
            "SELECT queue_id, CAST(last_event_id AS TEXT) FROM event_listeners_cursor
             WHERE instance = 'default'"
        )
        .await,
        vec![("q-old".to_owned(), Some("41".to_owned()))],
        "the queue position stays where it was"
    );
    assert!(
        db.try_scalar("SELECT dispatched_through FROM event_listeners_cursor")
            .await
            .is_none(),
        "the old column is gone, so a query reading it there fails"
    );
    let s = db.store().await;
    assert_eq!(s.last_record_batch("default").await.unwrap(), 77);

    // New events above the moved watermark: the recorder moves it in the
    // new table, and what is above it is what recovery dispatches.
    let ids = append_messages(&s, "default", 100, 3).await;
    s.record_batch("default", &[run(ids[0]), run(ids[1])], Some(ids[1]), 5)
        .await
        .unwrap();
    assert_eq!(
        db.pairs(
            "SELECT dispatched_through, record_batch FROM event_listeners_dispatched
             WHERE instance = 'default'"
        )
        .await,
        vec![(ids[1], 5)]
    );
    assert_eq!(s.last_record_batch("default").await.unwrap(), 5);
    let unfinished: Vec<i64> = s
        .unfinished("default")
        .await
        .unwrap()
        .iter()
        .map(|u| u.stored.inbox_id)
        .collect();
    assert_eq!(
        unfinished,
        vec![ids[2]],
        "only the event above the watermark"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_cursor WHERE instance = 'default'")
            .await,
        1,
        "the cursor is still one row per instance"
    );
}
