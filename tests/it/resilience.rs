//! Losing nothing: queue loss with backfill, 429/5xx/dropped connections,
//! and a daemon killed with SIGKILL mid-stream.

use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{FakeOptions, Fault, FaultPlan};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_lost_queue_is_replaced_and_the_missed_messages_backfilled_once() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());

    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send(&fake, 0..20);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 20
        })
        .await
    );
    app.stop().await.expect("clean stop");

    // Down longer than the queue's lifetime: Zulip garbage-collects it.
    fake.expire_all_queues();
    send(&fake, 20..50);
    app.start(Registry::builtin(), RunOptions::default()).await;
    send(&fake, 50..60);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 60
        })
        .await,
        "every message is logged once, live or backfilled"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(fake.register_count(), 2);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'message'")
            .await,
        60
    );
    assert!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled")
            .await
            >= 30
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'message_logger'"
        )
        .await,
        60,
        "no message was handled twice"
    );
}

#[tokio::test]
async fn rate_limits_server_errors_and_dropped_connections_lose_nothing() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[network]\nbackoff_cap = 0.5\n",
    )
    .await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    fake.set_faults(FaultPlan {
        every: vec![
            (5, Fault::RateLimit { retry_after: 0.3 }),
            (7, Fault::ServerError),
            (11, Fault::DropConnection),
        ],
        only_paths: None,
    });
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for chunk in 0..20 {
        send(&fake, chunk * 10..chunk * 10 + 10);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 200
        })
        .await,
        "all 200 messages arrive despite the faults"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        200
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        400
    );

    let requests = fake.requests();
    let limited: Vec<usize> = (0..requests.len())
        .filter(|i| requests[*i].status == 429)
        .collect();
    assert!(!limited.is_empty());
    for i in limited {
        if let Some(next) = requests.get(i + 1) {
            let waited = next.at.duration_since(requests[i].at);
            assert!(
                waited >= Duration::from_millis(300),
                "request {} came {waited:?} after a 429 asking for 0.3 s",
                i + 1
            );
        }
    }
    assert_eq!(fake.register_count(), 1, "transient faults keep the queue");
}

#[tokio::test]
async fn sigkill_mid_stream_twice_loses_and_duplicates_nothing_on_postgres() {
    let app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    let (fake, db, s) = (app.fake.clone(), app.db.clone(), &app.setup);
    db.migrate().await;
    const TOTAL: usize = 3000;

    let stderr_log = s.dir.path().join("stderr.log");
    let mut child = spawn_daemon(&s.config_path, &stderr_log);
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let mut sent = 0;
    for kill_at in [TOTAL / 3, 2 * TOTAL / 3] {
        while sent < kill_at {
            send(&fake, sent..sent + 50);
            sent += 50;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Kill while events are in flight: some stored, some not, runs pending.
        let _ = eventually(Duration::from_secs(20), || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await > 0
        })
        .await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        child = spawn_daemon(&s.config_path, &stderr_log);
    }
    while sent < TOTAL {
        send(&fake, sent..sent + 50);
        sent += 50;
    }
    let done = eventually(WAIT, || async {
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= (2 * TOTAL) as i64
    })
    .await;
    child.kill().ok();
    child.wait().ok();
    assert!(done, "all runs are eventually logged");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        TOTAL as i64
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT message_id) FROM event_listeners_inbox")
            .await,
        TOTAL as i64
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY 1, 2 HAVING count(*) <> 1) d").await,
        0,
        "each listener has exactly one logged run per message"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        (2 * TOTAL) as i64
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        TOTAL as i64
    );
    assert_eq!(
        db.scalar("SELECT CAST(sum(message_count) AS BIGINT) FROM event_listeners_useractivity")
            .await,
        TOTAL as i64
    );
    assert_eq!(
        fake.register_count(),
        1,
        "every restart resumed the same queue"
    );
}
