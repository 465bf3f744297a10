//! PostgreSQL's compact event log (migrations 20261203000013 and
//! 20261203000014): successful runs one row per recorder batch in
//! `event_listeners_eventruns`, the others a row each in
//! `event_listeners_eventlog_rows`, and `event_listeners_eventlog` the view
//! of both in the guide's shape. An event log in either earlier shape
//! upgrades with its rows; cleanup and retention count runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zulip_event_listeners::store::RunRecord;

use crate::support::*;

fn run(inbox_id: i64, listener: &str, error: Option<&str>, at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: Arc::from(listener),
        event_type: Arc::from("message"),
        success: error.is_none(),
        attempts: if error.is_some() { 3 } else { 1 },
        error: error.map(str::to_owned),
        duration: Duration::from_micros(1_500),
        finished_at: at,
        records: Vec::new(),
        dead_letter: None,
        fallback: Default::default(),
    }
}

/// `(listener, inbox id, success, attempts, error)` of every run, in order.
type Run = (String, i64, bool, i64, Option<String>);
const RUNS: &str = "SELECT listener_name, inbox_id, success, attempts::int8, error
     FROM event_listeners_eventlog ORDER BY inbox_id, listener_name";

#[tokio::test]
async fn an_event_log_with_rows_upgrades_and_new_runs_are_compact() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate_before(20261203000013).await;
    db.execute(
        "INSERT INTO event_listeners_eventlog
           (listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp)
         VALUES ('a', 1001, 'message', TRUE, 1, NULL, 0.5, now() - interval '30 days'),
                ('b', 1001, 'message', FALSE, 2, 'boom', 0.25, now() - interval '30 days'),
                ('a', 1002, 'message', TRUE, 1, NULL, 0.5, now())",
    )
    .await;
    db.migrate().await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 10, 2).await;
    let now = Utc::now();
    s.record(
        "default",
        &[
            run(ids[0], "a", None, now),
            run(ids[1], "a", None, now),
            run(ids[0], "b", None, now),
            run(ids[1], "b", Some("HTTP 503"), now),
        ],
        None,
    )
    .await
    .unwrap();

    let runs: Vec<Run> = db.rows(RUNS).await;
    let mut expected: Vec<Run> = vec![
        ("a".into(), 1001, true, 1, None),
        ("b".into(), 1001, false, 2, Some("boom".into())),
        ("a".into(), 1002, true, 1, None),
        ("a".into(), ids[0], true, 1, None),
        ("b".into(), ids[0], true, 1, None),
        ("a".into(), ids[1], true, 1, None),
        ("b".into(), ids[1], false, 3, Some("HTTP 503".into())),
    ];
    expected.sort_by(|x, y| (x.1, &x.0).cmp(&(y.1, &y.0)));
    assert_eq!(runs, expected, "the old rows and the new runs, one view");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventruns")
            .await,
        1,
        "the new successes: one row for the batch"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog_rows")
            .await,
        4,
        "the three old rows and the new failure"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE NOT success")
            .await,
        2
    );
    assert_eq!(
        db.scalar(
            "SELECT count(DISTINCT id) FROM event_listeners_eventlog
             WHERE id > (SELECT max(id) FROM event_listeners_eventlog WHERE inbox_id = 1002)"
        )
        .await,
        2,
        "ids keep growing across the upgrade, a compact row's runs sharing one"
    );
    assert_eq!(s.summary().await.unwrap().eventlog, 7);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM event_listeners_eventlog
             WHERE timestamp = '{}'::timestamptz",
            now.format("%Y-%m-%d %H:%M:%S%.6f+00")
        ))
        .await,
        4,
        "each run's own finish, to the microsecond"
    );

    // An INSERT into the view (an operator's, `cursor skip`'s) is a row.
    db.execute(
        "INSERT INTO event_listeners_eventlog (listener_name, inbox_id, event_type, success, attempts, error, duration)
         VALUES ('c', 1002, 'message', TRUE, 0, 'skipped by ops', 0)",
    )
    .await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog_rows WHERE listener_name = 'c' AND attempts = 0")
            .await,
        1
    );

    // Cleanup counts runs, from both tables.
    let cut = s.cleanup(now - chrono::Duration::days(7)).await.unwrap();
    assert_eq!(cut.eventlog, 2, "the two 30-day-old rows");
    let cut = s.cleanup(now + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(
        cut.eventlog, 6,
        "every other run, compact ones counted one by one"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        0
    );
    db.drop_db().await;
}

#[tokio::test]
async fn retention_counts_compact_runs_and_keeps_undispatched_ones() {
    let db = TestDb::new(Backend::Postgres).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 10, 4).await;
    let old = Utc::now() - chrono::Duration::days(40);
    let runs = |ids: &[i64]| -> Vec<RunRecord> {
        ids.iter()
            .flat_map(|&id| [run(id, "a", None, old), run(id, "b", None, old)])
            .collect()
    };
    // Three recorder batches; dispatched through the second event only.
    s.record("default", &runs(&ids[..2]), None).await.unwrap();
    s.record("default", &runs(&ids[2..3]), None).await.unwrap();
    s.record("default", &runs(&ids[1..2]), Some(ids[1]))
        .await
        .unwrap();
    // A batch mixing a dispatched event and an undispatched one is kept whole.
    s.record("default", &runs(&[ids[0], ids[3]]), None)
        .await
        .unwrap();
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventruns")
            .await,
        4,
        "a row per batch"
    );
    let report = s
        .retention(Utc::now() - chrono::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(
        report.eventlog, 6,
        "the runs of the two batches of dispatched events; the others are kept"
    );
    assert_eq!(
        db.rows::<(i64, String)>(
            "SELECT inbox_id, listener_name FROM event_listeners_eventlog
             ORDER BY inbox_id, listener_name"
        )
        .await,
        [
            (ids[0], "a".to_owned()),
            (ids[0], "b".to_owned()),
            (ids[2], "a".to_owned()),
            (ids[2], "b".to_owned()),
            (ids[3], "a".to_owned()),
            (ids[3], "b".to_owned()),
        ]
    );
    db.drop_db().await;
}

/// Every run of the view, in the guide's shape, in a stable order.
type Full = (
    i64,
    String,
    i64,
    String,
    bool,
    i32,
    Option<String>,
    f64,
    String,
);
const FULL: &str = "SELECT id, listener_name, inbox_id, event_type, success, attempts, error,
            duration, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
     FROM event_listeners_eventlog ORDER BY id, inbox_id, listener_name";

#[tokio::test]
async fn a_compact_log_of_a_row_per_event_upgrades_to_rows_per_batch_with_its_runs() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate_before(20261203000014).await;
    // The shape migration 20261203000013 left: a row per event.
    db.execute(
        "INSERT INTO event_listeners_eventruns
           (inbox_id, event_type, logged_at, listeners, attempts, durations, behind)
         VALUES (11, 'message', now() - interval '20 days 30 minutes', '{a,b}', '{1,2}', '{0.25,0.5}', '{0,1500}'),
                (12, 'reaction', now() - interval '20 days 20 minutes', '{a}', '{1}', '{0.125}', '{0}'),
                (13, 'message', now() - interval '40 days', '{a,\"b c\"}', '{1,1}', '{1,2}', '{7,0}')",
    )
    .await;
    db.execute(
        "INSERT INTO event_listeners_eventlog (listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp)
         VALUES ('b', 12, 'reaction', FALSE, 3, 'HTTP 503', 0.75, now() - interval '20 days 10 minutes')",
    )
    .await;
    let before: Vec<Full> = db.rows(FULL).await;
    assert_eq!(before.len(), 6);
    db.migrate().await;
    let after: Vec<Full> = db.rows(FULL).await;
    assert_eq!(
        after, before,
        "the same runs, ids and times, through the view"
    );
    assert_eq!(
        db.rows::<(i64, i64, String)>(
            "SELECT first_inbox, last_inbox, array_to_string(inbox_ids, ',')
             FROM event_listeners_eventruns ORDER BY id"
        )
        .await,
        [
            (11, 11, "11,11".to_owned()),
            (12, 12, "12".to_owned()),
            (13, 13, "13,13".to_owned())
        ],
        "each old row a batch of one event"
    );

    // What recovery and cleanup read of them, after the upgrade.
    let s = db.store().await;
    let ids = append_messages(&s, "default", 10, 1).await;
    let now = Utc::now();
    s.record(
        "default",
        &[run(ids[0], "a", None, now), run(ids[0], "b", None, now)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(s.summary().await.unwrap().eventlog, 8);
    let cut = s.cleanup(now - chrono::Duration::days(7)).await.unwrap();
    assert_eq!(cut.eventlog, 6, "the old rows, run by run");
    assert_eq!(
        db.rows::<(i64, String)>(
            "SELECT inbox_id, listener_name FROM event_listeners_eventlog ORDER BY listener_name"
        )
        .await,
        [(ids[0], "a".to_owned()), (ids[0], "b".to_owned())]
    );
    db.drop_db().await;
}

#[tokio::test]
async fn recovery_and_workers_find_the_runs_of_a_batch_by_inbox_id() {
    let db = TestDb::new(Backend::Postgres).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 10, 5).await;
    let now = Utc::now();
    // One batch spanning the watermark, another wholly below it, one above.
    s.record(
        "default",
        &[
            run(ids[0], "a", None, now),
            run(ids[2], "a", None, now),
            run(ids[2], "b", None, now),
        ],
        Some(ids[1]),
    )
    .await
    .unwrap();
    s.record("default", &[run(ids[1], "a", None, now)], None)
        .await
        .unwrap();
    s.record(
        "default",
        &[
            run(ids[4], "b", None, now),
            run(ids[3], "c", Some("boom"), now),
        ],
        None,
    )
    .await
    .unwrap();
    let unfinished = s.unfinished("default").await.unwrap();
    let done: Vec<(i64, Vec<String>)> = unfinished
        .iter()
        .map(|u| {
            let mut d = u.done.clone();
            d.sort();
            (u.stored.inbox_id, d)
        })
        .collect();
    assert_eq!(
        done,
        [
            (ids[2], vec!["a".to_owned(), "b".to_owned()]),
            (ids[3], vec!["c".to_owned()]),
            (ids[4], vec!["b".to_owned()]),
        ],
        "the events after the watermark, each with the runs logged for it"
    );
    let logged = s.logged_runs("default", &[ids[1], ids[4]]).await.unwrap();
    let mut logged: Vec<(i64, Vec<String>)> = logged.into_iter().collect();
    logged.sort();
    assert_eq!(
        logged,
        [
            (ids[1], vec!["a".to_owned()]),
            (ids[4], vec!["b".to_owned()])
        ]
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_batch_row_is_compressed_with_lz4_where_the_server_has_it() {
    let db = TestDb::new(Backend::Postgres).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 10, 200).await;
    let now = Utc::now();
    let runs: Vec<RunRecord> = ids
        .iter()
        .flat_map(|&id| (0..8).map(move |k| run(id, &format!("listener-{k}"), None, now)))
        .collect();
    s.record("default", &runs, None).await.unwrap();
    let lz4 = db
        .scalar(
            "SELECT count(*) FROM pg_settings
             WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)",
        )
        .await;
    let methods: Vec<(String,)> = db
        .rows(
            "SELECT pg_column_compression(listeners) FROM event_listeners_eventruns
             UNION ALL SELECT pg_column_compression(durations) FROM event_listeners_eventruns",
        )
        .await;
    let expected = if lz4 == 1 { "lz4" } else { "pglz" };
    assert_eq!(
        methods,
        [(expected.to_owned(),), (expected.to_owned(),)],
        "the 1,600 runs' arrays, compressed"
    );
    assert_eq!(s.summary().await.unwrap().eventlog, 1_600);
    db.drop_db().await;
}
