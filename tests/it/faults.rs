//! Fault injection: PostgreSQL going away mid-stream, many SIGKILLs, a
//! SIGTERM during a burst, and a daemon down longer than its queue lives.

use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

/// The checks every "lost nothing, duplicated nothing" test ends with:
/// `messages` messages, each stored and logged once, and `runs` runs logged
/// in all, exactly one per (event, listener).
async fn assert_each_message_once(db: &TestDb, messages: i64, runs: i64) {
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'message'")
            .await,
        messages,
        "every message is in the inbox"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT message_id) FROM event_listeners_inbox")
            .await,
        messages,
        "no message is in the inbox twice"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) <> 1) d").await,
        0,
        "each (event, listener) has exactly one logged run"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        runs,
        "every run is logged"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE NOT success")
            .await,
        0,
        "no run failed"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        messages,
        "message_logger wrote one row per message"
    );
    assert_eq!(
        db.scalar("SELECT CAST(sum(message_count) AS BIGINT) FROM event_listeners_useractivity")
            .await,
        messages,
        "user_activity_tracker counted each message once"
    );
}

/// A daemon on PostgreSQL through a proxy, registered and polling.
pub(crate) async fn app_behind_proxy() -> (TestApp, TcpProxy) {
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    app.db.migrate().await;
    let (target, _) = redirect_pg_url(&app.db.url, "127.0.0.1:1".parse().unwrap());
    let target = tokio::net::lookup_host(&target)
        .await
        .expect("resolve the PostgreSQL host")
        .next()
        .expect("an address for the PostgreSQL host");
    let proxy = TcpProxy::start(target).await;
    let (_, proxied_url) = redirect_pg_url(&app.db.url, proxy.addr());
    app.setup = setup(Some(&app.fake), &proxied_url, "");
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue through the proxy"
    );
    (app, proxy)
}

#[tokio::test]
async fn a_metrics_scrape_never_waits_on_a_database_that_does_not_answer() {
    let (mut app, proxy) = app_behind_proxy().await;
    send(&app.fake, 0..10);
    let db = app.db.clone();
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 20
        })
        .await,
        "the messages are stored and run before the database stops answering"
    );

    // The database stops answering: connections stay open, nothing comes back.
    proxy.stall();
    let health = app.health().await;
    assert_eq!(
        health.body["database"]["reachable"],
        serde_json::json!(false),
        "the health report's ping finds the database silent (the proxy really is stalled): {health:?}"
    );

    // The report's ping waits up to 2 s for that answer; a scrape must not wait at all.
    let scrape = tokio::time::timeout(Duration::from_secs(1), app.metrics())
        .await
        .expect("/metrics answers while the database does not (well under the ping's 2 s)");
    assert_eq!(
        scrape.first("zulip_event_listeners_queue_registrations_total"),
        Some(1.0),
        "the scrape carries the daemon's metrics"
    );
    proxy.cut();
    let _ = app.stop().await;
}

#[tokio::test]
async fn postgres_going_away_mid_stream_loses_nothing_and_the_daemon_keeps_running() {
    let (mut app, proxy) = app_behind_proxy().await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let queue = fake.queue_ids().pop().expect("one queue");

    // Before the outage: a stream that is being stored.
    let mut sent = 0;
    while sent < 300 {
        send(&fake, sent..sent + 20);
        sent += 20;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await > 0
        })
        .await,
        "events are stored before the outage"
    );

    // PostgreSQL goes away while messages keep arriving.
    proxy.cut();
    let connections_before = proxy.accepted();
    let first_during_outage = sent + 1;
    for _ in 0..30 {
        send(&fake, sent..sent + 10);
        sent += 10;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_during_outage = sent;
    assert!(
        !app.is_finished(),
        "the daemon keeps running while the database is down"
    );
    let held: Vec<i64> = fake
        .events(&queue)
        .expect("the queue outlives the outage")
        .iter()
        .filter_map(|e| e["message"]["id"].as_i64())
        .collect();
    for id in first_during_outage..=last_during_outage {
        assert!(
            held.contains(&(id as i64)),
            "message {id}, sent while the database was down, was acknowledged to Zulip before it could be stored (held: {} events)",
            held.len()
        );
    }
    assert!(
        count(&db, "SELECT count(*) FROM event_listeners_inbox").await < first_during_outage as i64,
        "nothing sent during the outage was stored (the proxy really is cut)"
    );

    assert!(
        proxy.accepted() > connections_before,
        "the daemon tried to reach the database during the outage"
    );
    proxy.restore();
    while sent < 900 {
        send(&fake, sent..sent + 20);
        sent += 20;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = sent as i64;
    let done = eventually(WAIT, || async {
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= 2 * total
    })
    .await;
    assert!(
        done,
        "every run is logged after the database is back: {} of {}",
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await,
        2 * total
    );
    assert!(
        eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await,
        "every event is acknowledged once stored"
    );
    assert!(
        !app.is_finished(),
        "the daemon is still running until it is stopped"
    );
    let report = app.stop().await.expect("a clean stop after the outage");
    assert_eq!(report.stored as i64, total);
    assert_each_message_once(&db, total, 2 * total).await;
    assert_eq!(fake.register_count(), 1, "the queue survived the outage");
}

#[tokio::test]
async fn twenty_thousand_messages_survive_ten_sigkills() {
    const TOTAL: usize = 20_000;
    let app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    let (fake, db, s) = (app.fake.clone(), app.db.clone(), &app.setup);
    db.migrate().await;
    let stderr_log = s.dir.path().join("stderr.log");

    let mut child = spawn_daemon(&s.config_path, &stderr_log);
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    // The stream keeps arriving, in small batches, whether the daemon is up or not.
    let stream = {
        let fake = fake.clone();
        tokio::spawn(async move {
            for chunk in 0..TOTAL / 50 {
                send(&fake, chunk * 50..chunk * 50 + 50);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Where each kill lands: once this many messages are in the inbox, and
    // then this much later; or, with `None`, shortly after the restart,
    // while it is recovering unfinished runs or catching up a backlog.
    let kills: [(i64, Option<u64>); 10] = [
        (800, Some(0)),
        (2_500, Some(120)),
        (0, None),
        (5_000, Some(40)),
        (7_000, Some(300)),
        (0, None),
        (11_000, Some(15)),
        (13_500, Some(200)),
        (16_000, Some(70)),
        (18_500, Some(5)),
    ];
    for (n, (stored, delay)) in kills.into_iter().enumerate() {
        match delay {
            Some(ms) => {
                let _ = eventually(WAIT, || async {
                    count(&db, "SELECT count(*) FROM event_listeners_inbox").await >= stored
                })
                .await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(20 + 30 * n as u64)).await,
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        child = spawn_daemon(&s.config_path, &stderr_log);
    }
    stream.await.expect("the stream is sent");
    let done = eventually(WAIT, || async {
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= (2 * TOTAL) as i64
    })
    .await;
    let still_running = child.try_wait().expect("try_wait").is_none();
    child.kill().ok();
    child.wait().ok();
    assert!(
        done,
        "all runs are eventually logged: {} of {}; events short of runs (inbox id, runs): {:?}; \
         cursor (dispatched through, last event id): {:?}; daemon stderr:\n{}",
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await,
        2 * TOTAL,
        db.text_pairs(
            "SELECT i.id::text, count(l.inbox_id)::text FROM event_listeners_inbox i \
             LEFT JOIN event_listeners_eventlog l ON l.inbox_id = i.id \
             GROUP BY i.id HAVING count(l.inbox_id) < 2 ORDER BY i.id LIMIT 20"
        )
        .await,
        db.text_pairs(
            "SELECT d.dispatched_through::text, c.last_event_id::text FROM event_listeners_cursor c \
             LEFT JOIN event_listeners_dispatched d USING (instance)"
        )
        .await,
        stderr_of(&stderr_log)
    );
    assert!(
        still_running,
        "the last daemon was still running: {}",
        stderr_of(&stderr_log)
    );
    assert_each_message_once(&db, TOTAL as i64, (2 * TOTAL) as i64).await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        TOTAL as i64,
        "nothing but the messages was stored"
    );
    assert_eq!(
        fake.register_count(),
        1,
        "every restart resumed the same queue"
    );
}

#[tokio::test]
async fn sigterm_during_a_burst_exits_zero_and_a_restart_resumes_the_same_queue() {
    let handler_timeout = Duration::from_secs(2);
    let app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        &format!(
            "[performance]\nhandler_timeout = {}\nmax_concurrent_handlers = 4\n",
            handler_timeout.as_secs()
        ),
    )
    .await;
    let (fake, db, s) = (app.fake.clone(), app.db.clone(), &app.setup);
    let stderr_log = s.dir.path().join("stderr.log");
    // Drain: one handler timeout plus 0.5 s, then up to 10 s for the recorder.
    let shutdown_limit = handler_timeout + Duration::from_secs(10) + Duration::from_secs(15);

    let mut child = spawn_daemon(&s.config_path, &stderr_log);
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let queue = fake.queue_ids().pop().expect("one queue");
    // A burst that is still arriving when SIGTERM comes.
    let burst = {
        let fake = fake.clone();
        tokio::spawn(async move {
            for chunk in 0..60 {
                send(&fake, chunk * 50..chunk * 50 + 50);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await > 0
        })
        .await,
        "the burst is being processed"
    );
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, shutdown_limit).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "no exit within {shutdown_limit:?} of SIGTERM; stderr:\n{}",
            stderr_of(&stderr_log)
        )
    });
    assert!(
        status.success(),
        "SIGTERM exits with 0, got {status}; stderr:\n{}",
        stderr_of(&stderr_log)
    );
    assert_eq!(
        fake.queue_ids(),
        vec![queue.clone()],
        "the queue is kept for the restart"
    );
    let after_first = count(&db, "SELECT count(*) FROM event_listeners_inbox").await;
    assert!(after_first > 0, "the first run stored part of the burst");
    burst.await.expect("the burst is sent");

    let mut child = spawn_daemon(&s.config_path, &stderr_log);
    send(&fake, 3000..3500);
    let done = eventually(WAIT, || async {
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= 7000
    })
    .await;
    let acked = eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await;
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, shutdown_limit).await;
    assert!(
        done,
        "every message of both runs is handled: {} runs logged; stderr:\n{}",
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await,
        stderr_of(&stderr_log)
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the second SIGTERM exits with 0 too: {status:?}"
    );
    assert_each_message_once(&db, 3500, 7000).await;
    assert_eq!(
        fake.register_count(),
        1,
        "the restart resumed the first run's queue"
    );
    assert!(acked, "everything was acknowledged once stored");
}

#[tokio::test]
async fn a_daemon_down_longer_than_the_queue_lifetime_backfills_and_counts_the_gap() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send(&fake, 0..20);
    (0..3).for_each(|i| react(&fake, 10 + i));
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 20 * 2 + 3
        })
        .await
    );
    app.stop().await.expect("clean stop");

    // Down longer than the queue lives: Zulip garbage-collects it, and
    // what happens meanwhile is only in its message history.
    fake.expire_all_queues();
    send(&fake, 20..50);
    (0..5).for_each(|i| react(&fake, 10 + i));

    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'message'",
            )
            .await
                == 50
        })
        .await,
        "the messages sent while the daemon was down are backfilled"
    );
    // Live traffic on the new queue, after the backfill.
    send(&fake, 50..60);
    (0..2).for_each(|i| react(&fake, 10 + i));
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 60 * 2 + 3 + 2
        })
        .await,
        "every message is handled, and the reactions that reached a queue"
    );
    let metrics = app.metrics().await;
    app.stop().await.expect("a clean stop");

    assert_eq!(
        fake.register_count(),
        2,
        "a new queue replaced the lost one"
    );
    assert_each_message_once(&db, 60, 60 * 2 + 3 + 2).await;
    let backfilled = db
        .scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled")
        .await;
    assert_eq!(
        backfilled, 30,
        "exactly the messages sent while down are backfilled"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled AND message_id BETWEEN 21 AND 50")
            .await,
        30
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'reaction'")
            .await,
        5,
        "reactions in the gap cannot be recovered (and are not invented)"
    );
    let gaps = metrics.first("zulip_event_listeners_queue_gaps_total");
    assert!(
        gaps.is_some_and(|g| g >= 1.0),
        "queue_gaps_total counts the lost queue: {gaps:?}"
    );
    let gap = metrics.first("zulip_event_listeners_last_gap_seconds");
    assert!(
        gap.is_some_and(|g| g > 0.0),
        "the gap is measured from the previous run's last committed poll: {gap:?}"
    );
    assert_eq!(
        metrics.first("zulip_event_listeners_backfilled_messages_total"),
        Some(backfilled as f64),
        "backfilled_messages_total is the number of backfilled messages"
    );
    assert_eq!(
        metrics.first("zulip_event_listeners_queue_registrations_total"),
        Some(1.0),
        "this run registered one queue"
    );
}
