//! Listener statistics on both stores: `aggregate` rebuilds exactly the
//! buckets the recorder wrote (also while it writes), `retention` deletes
//! only old and fully dispatched rows, `listener_stats` summarises runs;
//! and the `stats` and `aggregate` commands of the binary.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use zulip_event_listeners::store::retention::run_retention;
use zulip_event_listeners::store::{RunRecord, StoreOptions};

use crate::support::*;

const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// One stats row: listener, bucket start (epoch s), runs, successes,
/// failures, total and max duration (µs), last success (epoch s).
type StatsRow = (String, i64, i64, i64, i64, i64, i64, Option<i64>);

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap()
}

/// Now, to the second (PostgreSQL keeps microseconds, SQLite the text).
fn now_s() -> DateTime<Utc> {
    at(Utc::now().timestamp())
}

/// The start of a five-minute bucket `hours` hours ago.
fn bucket_hours_ago(hours: i64) -> DateTime<Utc> {
    at((Utc::now().timestamp() - hours * 3600) / 300 * 300)
}

fn run(
    inbox_id: i64,
    listener: &str,
    error: Option<&str>,
    millis: u64,
    finished_at: DateTime<Utc>,
) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: listener.into(),
        event_type: "message".into(),
        success: error.is_none(),
        attempts: 1,
        error: error.map(str::to_owned),
        duration: Duration::from_millis(millis),
        finished_at,
        records: vec![],
        dead_letter: None,
        fallback: Default::default(),
    }
}

async fn stats_rows(db: &TestDb) -> Vec<StatsRow> {
    const SQL: &str = "SELECT listener_name, bucket_start, total_events, successful_events,
        failed_events, total_duration, max_duration, last_success
        FROM event_listeners_listenerstats ORDER BY listener_name, bucket_start";
    type Raw = (
        String,
        DateTime<Utc>,
        i64,
        i64,
        i64,
        f64,
        f64,
        Option<DateTime<Utc>>,
    );
    let raw: Vec<Raw> = db.rows(SQL).await;
    let micros = |s: f64| (s * 1e6).round() as i64;
    raw.into_iter()
        .map(|(l, b, t, ok, f, d, m, last)| {
            (
                l,
                b.timestamp(),
                t,
                ok,
                f,
                micros(d),
                micros(m),
                last.map(|x| x.timestamp()),
            )
        })
        .collect()
}

async fn aggregate_rebuilds_the_recorded_buckets(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "i", 1, 6).await;
    let t0 = bucket_hours_ago(3);
    let t = |secs| t0 + chrono::Duration::seconds(secs);
    // On PostgreSQL a batch's successes are one row, cleaned up as one when
    // its newest run is older than the cut: the first run is a batch of its own.
    s.record("i", &[run(ids[0], "a", None, 2, t(10))], None)
        .await
        .unwrap();
    s.record(
        "i",
        &[
            run(ids[1], "a", Some("boom"), 4, t(20)),
            run(ids[2], "b", None, 1, t(30)),
        ],
        None,
    )
    .await
    .unwrap();
    s.record(
        "i",
        &[
            run(ids[3], "a", None, 3, t(310)),
            run(ids[4], "a", None, 5, t(650)),
            run(ids[5], "b", Some("bang"), 6, t(660)),
        ],
        Some(ids[5]),
    )
    .await
    .unwrap();
    let recorded = stats_rows(&db).await;
    let b0 = t0.timestamp();
    let shape: Vec<(&str, i64, i64, i64, i64)> = recorded
        .iter()
        .map(|r| (r.0.as_str(), r.1 - b0, r.2, r.3, r.4))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("a", 0, 2, 1, 1),
            ("a", 300, 1, 1, 0),
            ("a", 600, 1, 1, 0),
            ("b", 0, 1, 1, 0),
            ("b", 600, 1, 0, 1),
        ]
    );

    // From an empty table, twice: the same rows as the recorder's.
    db.execute("DELETE FROM event_listeners_listenerstats")
        .await;
    let first = s.aggregate(FIVE_MINUTES, None).await.unwrap();
    assert_eq!((first.runs, first.buckets, first.written), (6, 5, 5));
    assert_eq!(stats_rows(&db).await, recorded);
    let second = s.aggregate(FIVE_MINUTES, None).await.unwrap();
    assert_eq!(second.buckets, 5);
    assert_eq!(
        second.kept(),
        2,
        "the rows of the oldest bucket are never overwritten"
    );
    assert_eq!(stats_rows(&db).await, recorded, "aggregate is idempotent");

    // --since: the bucket holding it and later ones only.
    db.execute("DELETE FROM event_listeners_listenerstats")
        .await;
    let since = s.aggregate(FIVE_MINUTES, Some(t(400))).await.unwrap();
    assert_eq!((since.buckets, since.written, since.runs), (3, 3, 3));
    let later: Vec<StatsRow> = recorded
        .iter()
        .filter(|r| r.1 >= b0 + 300)
        .cloned()
        .collect();
    assert_eq!(stats_rows(&db).await, later);

    // The event log cut in the middle of its oldest bucket (as `cleanup`
    // does): that bucket keeps the counts it had.
    s.aggregate(FIVE_MINUTES, None).await.unwrap();
    let cut = s.cleanup(t(15)).await.unwrap();
    assert_eq!(cut.eventlog, 1, "the one run before the cut");
    s.aggregate(FIVE_MINUTES, None).await.unwrap();
    assert_eq!(stats_rows(&db).await, recorded);

    // With statistics disabled the recorder writes no stats rows; aggregate
    // still counts the runs from the event log.
    let quiet = open_migrated(
        &db.url,
        &StoreOptions {
            stats_enabled: false,
            ..StoreOptions::default()
        },
    )
    .await;
    let more = append_messages(&s, "i", 100, 1).await;
    quiet
        .record("i", &[run(more[0], "a", None, 7, t(320))], Some(more[0]))
        .await
        .unwrap();
    assert_eq!(stats_rows(&db).await, recorded, "no stats row was touched");
    s.aggregate(FIVE_MINUTES, None).await.unwrap();
    let a1 = stats_rows(&db)
        .await
        .into_iter()
        .find(|r| r.0 == "a" && r.1 == b0 + 300)
        .unwrap();
    assert_eq!((a1.2, a1.3), (2, 2));
    db.drop_db().await;
}

/// Recorder batches and aggregations at the same time end with exactly the
/// table a quiet recomputation gives: no batch is lost or counted twice.
async fn aggregate_converges_while_the_recorder_writes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "i", 1, 40).await;
    let base = now_s() - chrono::Duration::minutes(20);
    let writer = {
        let s = s.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            for (n, id) in ids.iter().enumerate() {
                let n = n as i64;
                let runs: Vec<RunRecord> = (0..5)
                    .map(|k| {
                        let listener = if k % 2 == 0 { "a" } else { "b" };
                        let error = (k == 4).then_some("boom");
                        let at = base + chrono::Duration::seconds(n * 20 + k);
                        run(*id, listener, error, (k + 1) as u64, at)
                    })
                    .collect();
                s.record("i", &runs, Some(*id)).await.unwrap();
            }
        })
    };
    let aggregator = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..15 {
                s.aggregate(FIVE_MINUTES, None).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    writer.await.unwrap();
    aggregator.await.unwrap();

    let live = stats_rows(&db).await;
    let total: i64 = live.iter().map(|r| r.2).sum();
    assert_eq!(total, 200, "every run is counted once");
    db.execute("DELETE FROM event_listeners_listenerstats")
        .await;
    s.aggregate(FIVE_MINUTES, None).await.unwrap();
    assert_eq!(stats_rows(&db).await, live);
    db.drop_db().await;
}

async fn retention_deletes_only_old_and_dispatched_rows(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "i", 1, 5).await;
    let other = append_messages(&s, "j", 50, 1).await;
    let old = now_s() - chrono::Duration::days(40);
    let now = now_s();
    // Events 0-2 and j's one were received 40 days ago.
    db.execute_at(
        &format!(
            "UPDATE event_listeners_inbox SET received_at = $1 WHERE id IN ({}, {}, {}, {})",
            ids[0], ids[1], ids[2], other[0]
        ),
        old,
    )
    .await;
    // 0 and 1 are fully dispatched; 2 ran 40 days ago but is not (its
    // other listener never finished); 3 ran now; 4 never ran. Instance j
    // has no dispatch watermark at all.
    s.record(
        "i",
        &[
            run(ids[0], "a", None, 1, old),
            run(ids[1], "a", None, 1, old),
        ],
        Some(ids[1]),
    )
    .await
    .unwrap();
    s.record("i", &[run(ids[2], "a", None, 1, old)], None)
        .await
        .unwrap();
    s.record("i", &[run(ids[3], "a", None, 1, now)], None)
        .await
        .unwrap();
    s.record("j", &[run(other[0], "a", None, 1, old)], None)
        .await
        .unwrap();

    let report = s.retention(now - chrono::Duration::days(30)).await.unwrap();
    assert_eq!(report.listenerstats, 1, "the one old bucket");
    assert_eq!(
        report.eventlog, 2,
        "runs of undispatched events are kept, or they would run twice"
    );
    assert_eq!(report.inbox, 2);

    let inbox = db
        .pairs("SELECT id, id FROM event_listeners_inbox ORDER BY id")
        .await;
    assert_eq!(
        inbox.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![ids[2], ids[3], ids[4], other[0]],
        "undispatched inbox rows are never deleted"
    );
    let log = db
        .pairs("SELECT inbox_id, id FROM event_listeners_eventlog ORDER BY inbox_id")
        .await;
    assert_eq!(
        log.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![ids[2], ids[3], other[0]]
    );
    let buckets = stats_rows(&db).await;
    assert_eq!(buckets.len(), 1);
    assert!(buckets[0].1 > (now - chrono::Duration::days(1)).timestamp());

    let unfinished = s.unfinished("i").await.unwrap();
    assert_eq!(unfinished[0].stored.inbox_id, ids[2]);
    assert_eq!(unfinished[0].done, vec!["a".to_owned()]);

    let again = s.retention(now - chrono::Duration::days(30)).await.unwrap();
    assert_eq!(again.total(), 0);
    db.drop_db().await;
}

async fn listener_stats_summarise_each_listener(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let id = append_messages(&s, "i", 1, 1).await[0];
    let now = now_s();
    // a: 20 runs of 1 to 20 ms in the last 20 minutes; 9 failed with 6
    // different errors. b: 5 runs of 10 ms. And one old failure of a.
    let errors = [
        "boom", "boom", "boom", "bang", "bang", "e1", "e2", "e3", "e4",
    ];
    let mut runs: Vec<RunRecord> = (1..=20u64)
        .map(|ms| {
            let error = errors.get(ms as usize - 1).copied();
            run(
                id,
                "a",
                error,
                ms,
                now - chrono::Duration::minutes(ms as i64),
            )
        })
        .collect();
    runs.extend((0..5).map(|k| run(id, "b", None, 10, now - chrono::Duration::seconds(k))));
    runs.push(run(
        id,
        "a",
        Some("old"),
        1000,
        now - chrono::Duration::days(2),
    ));
    s.record("i", &runs, None).await.unwrap();

    let since = now - chrono::Duration::hours(24);
    let all = s.listener_stats(None, since).await.unwrap();
    assert_eq!(
        all.iter().map(|x| x.listener.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let a = &all[0];
    assert_eq!((a.processed, a.successes, a.failures), (20, 11, 9));
    assert!((a.success_rate.unwrap() - 0.55).abs() < 1e-9);
    let (p50, p95) = (a.p50.unwrap(), a.p95.unwrap());
    assert!(p50 <= p95);
    assert!(p50 >= Duration::from_millis(1) && p95 <= Duration::from_millis(20));
    assert!((p50.as_secs_f64() - 0.0105).abs() < 1e-6, "{p50:?}");
    assert!((p95.as_secs_f64() - 0.01905).abs() < 1e-6, "{p95:?}");
    let top: Vec<(Option<&str>, i64)> = a
        .errors
        .iter()
        .map(|e| (e.error.as_deref(), e.count))
        .collect();
    assert_eq!(
        top,
        vec![
            (Some("boom"), 3),
            (Some("bang"), 2),
            (Some("e1"), 1),
            (Some("e2"), 1),
            (Some("e3"), 1),
        ]
    );
    // The latest success of a is its 10 ms run, 10 minutes ago.
    assert_eq!(
        a.last_success.map(|t| t.timestamp()),
        Some((now - chrono::Duration::minutes(10)).timestamp())
    );
    assert_eq!(a.volume.iter().map(|v| v.1).sum::<i64>(), 20);

    let b = &all[1];
    assert_eq!((b.processed, b.failures, b.success_rate), (5, 0, Some(1.0)));
    assert_eq!(b.p50, Some(Duration::from_millis(10)));
    assert_eq!(b.p95, Some(Duration::from_millis(10)));
    assert!(b.errors.is_empty());

    let only_b = s.listener_stats(Some("b"), since).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0], *b);
    assert!(s
        .listener_stats(Some("nobody"), since)
        .await
        .unwrap()
        .is_empty());
    db.drop_db().await;
}

async fn the_retention_task_runs_soon_after_start(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "i", 1, 2).await;
    let old = now_s() - chrono::Duration::days(10);
    db.execute_at(
        &format!(
            "UPDATE event_listeners_inbox SET received_at = $1 WHERE id = {}",
            ids[0]
        ),
        old,
    )
    .await;
    s.record("i", &[run(ids[0], "a", None, 1, old)], Some(ids[0]))
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let task = tokio::spawn(run_retention(
        s.clone(),
        7,
        Duration::from_millis(10),
        Duration::from_secs(3600),
        stop.clone(),
    ));
    let gone = eventually(Duration::from_secs(10), || async {
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await
            == 1
    })
    .await;
    assert!(gone, "the old, dispatched event is deleted");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_listenerstats")
            .await,
        0
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends when stopped")
        .unwrap();
    db.drop_db().await;
}

both_backends!(aggregate_rebuilds_the_recorded_buckets =>
    sqlite_aggregate_rebuilds_the_recorded_buckets,
    postgres_aggregate_rebuilds_the_recorded_buckets);

both_backends!(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    aggregate_converges_while_the_recorder_writes =>
    sqlite_aggregate_converges_while_the_recorder_writes,
    postgres_aggregate_converges_while_the_recorder_writes);

both_backends!(retention_deletes_only_old_and_dispatched_rows =>
    sqlite_retention_deletes_only_old_and_dispatched_rows,
    postgres_retention_deletes_only_old_and_dispatched_rows);

both_backends!(listener_stats_summarise_each_listener =>
    sqlite_listener_stats_summarise_each_listener,
    postgres_listener_stats_summarise_each_listener);

both_backends!(the_retention_task_runs_soon_after_start =>
    sqlite_the_retention_task_runs_soon_after_start,
    postgres_the_retention_task_runs_soon_after_start);

#[tokio::test]
async fn the_stats_command_shows_both_listeners_with_a_sparkline() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(None, &db.url, "");
    let cfg = s.config_path.display().to_string();
    let sample = repo().join("examples/sample-events.jsonl");
    let run_out = zel_async(args(
        &cfg,
        &["run", "--events", &sample.display().to_string()],
    ))
    .await;
    let stats_out = zel_async(args(&cfg, &["stats", "--since", "24h"])).await;
    assert!(
        run_out.status.success(),
        "{}",
        String::from_utf8_lossy(&run_out.stderr)
    );
    let stdout = String::from_utf8_lossy(&stats_out.stdout);
    assert!(
        stats_out.status.success(),
        "{}",
        String::from_utf8_lossy(&stats_out.stderr)
    );
    for listener in ["message_logger", "user_activity_tracker"] {
        assert!(stdout.contains(listener), "missing {listener}:\n{stdout}");
    }
    assert!(
        stdout.chars().any(|c| "▁▂▃▄▅▆▇█".contains(c)),
        "no sparkline:\n{stdout}"
    );
    assert!(stdout.contains("p95"), "{stdout}");

    // `aggregate`, twice: the table the recorder wrote, unchanged.
    let recorded = stats_rows(&db).await;
    assert!(!recorded.is_empty());
    for rest in [&["aggregate"][..], &["aggregate", "--since", "7d"][..]] {
        let out = zel_async(args(&cfg, rest)).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("listener stats bucket(s)"), "{text}");
        assert_eq!(stats_rows(&db).await, recorded);
    }

    // A bad age is a command-line error.
    let bad = zel_async(args(&cfg, &["stats", "--since", "24"])).await;
    assert_eq!(bad.status.code(), Some(2));
    db.drop_db().await;
}
