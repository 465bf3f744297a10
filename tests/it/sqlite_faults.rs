//! SQLite faults (issue 13, items 9 and 10): a database file deleted or
//! replaced while the daemon runs is never acknowledged into, the daemon
//! stops naming it; a full disk is an outage the daemon waits out, storing
//! and recording everything once space returns, without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use zulip_event_listeners::app::{AppError, RunOptions};
use zulip_event_listeners::cli::{Failure, EXIT_DATABASE};
use zulip_event_listeners::listeners::Registry;
use zulip_event_listeners::store::StoreError;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

/// A daemon on a fresh SQLite file that has stored and acknowledged three
/// messages (`m0`..`m2`); with its queue id.
async fn running_with_three_acknowledged() -> (TestApp, String) {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let queue = fake.queue_ids().pop().expect("one queue");
    send(&fake, 0..3);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await == 3
                && fake.pending(&queue) == Some(0)
        })
        .await,
        "the first messages are stored and acknowledged"
    );
    (app, queue)
}

/// Whether `/health` says the daemon is not healthy because database
/// writes are being retried.
async fn retrying_writes(app: &TestApp) -> bool {
    let health = app.health().await;
    health.body["status"] != "healthy"
        && health.body["reasons"]
            .to_string()
            .contains("retrying database writes")
}

/// How many appends intake has tried (each attempt is timed).
async fn appends(app: &TestApp) -> f64 {
    app.metrics()
        .await
        .sample(
            "zulip_event_listeners_database_write_duration_seconds_count",
            &[("operation", "append")],
        )
        .unwrap_or(0.0)
}

/// The contents of the messages still in `queue` (not acknowledged).
fn held_contents(fake: &fake_zulip::FakeZulip, queue: &str) -> Vec<String> {
    fake.events(queue)
        .expect("the queue is still there")
        .iter()
        .filter_map(|e| e["message"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// Sends `m3`..`m7`, then waits for the daemon to stop by itself and checks
/// that it stopped with [`StoreError::FileReplaced`] naming `file` (exit 4)
/// and that none of the five was acknowledged; returns the error's text.
async fn assert_stops_without_acknowledging(app: &mut TestApp, queue: &str, file: &str) -> String {
    let fake = app.fake.clone();
    send(&fake, 3..8);
    assert!(
        eventually(WAIT, || async { app.is_finished() }).await,
        "the daemon stops once it sees its database file is gone; held: {:?}",
        held_contents(&fake, queue)
    );
    let err = app
        .wait()
        .await
        .expect_err("the daemon stops with an error");
    let text = err.to_string();
    assert!(
        matches!(err, AppError::Store(StoreError::FileReplaced { .. })),
        "{text}"
    );
    assert!(text.contains(file), "names the file: {text}");
    assert_eq!(Failure::from(err).code, EXIT_DATABASE);
    let held = held_contents(&fake, queue);
    for i in 3..8 {
        assert!(
            held.contains(&format!("m{i}")),
            "message m{i}, sent after the file went away, was acknowledged to Zulip (held: {held:?})"
        );
    }
    text
}

#[tokio::test]
async fn a_deleted_sqlite_database_stops_the_daemon_before_anything_more_is_acknowledged() {
    let (mut app, queue) = running_with_three_acknowledged().await;
    let path = app.db.sqlite_path().to_owned();

    std::fs::remove_file(&path).expect("delete the database file");

    let text =
        assert_stops_without_acknowledging(&mut app, &queue, &path.display().to_string()).await;
    assert!(text.contains("no longer exists"), "{text}");
}

#[tokio::test]
async fn a_replaced_sqlite_database_stops_the_daemon_and_the_replacement_is_left_intact() {
    let (mut app, queue) = running_with_three_acknowledged().await;
    let db = app.db.clone();
    let path = db.sqlite_path().to_owned();

    // An operator puts a copy in its place (a backup restored over it).
    let copy = path.with_file_name("copy.db");
    db.execute(&format!("VACUUM INTO '{}'", copy.display()))
        .await;
    std::fs::rename(&copy, &path).expect("replace the database file");

    let text =
        assert_stops_without_acknowledging(&mut app, &queue, &path.display().to_string()).await;
    assert!(text.contains("another file"), "{text}");
    // The write-ahead log the daemon leaves beside the path is empty, so
    // the replacement is read as it was put there.
    let check: Vec<(String, Option<String>)> = db
        .text_pairs("SELECT integrity_check, NULL FROM pragma_integrity_check")
        .await;
    assert_eq!(check, vec![("ok".to_owned(), None)]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        3,
        "the replacement holds what the copy held, none of what the daemon wrote since"
    );
}

#[tokio::test]
async fn a_full_disk_holds_intake_and_recording_until_space_returns() {
    let disk = Tmpfs::mount("4m");
    let gate = Arc::new(Semaphore::new(0));
    let mut registry = Registry::builtin();
    registry
        .register(Arc::new(Gated(gate.clone())))
        .expect("register the gated listener");
    let extra = "[listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\", \"gated\"]";
    let db = TestDb::sqlite_at(&disk.path().join("events.db"));
    let mut app = TestApp::on(db, FakeOptions::default(), extra).await;
    app.db.migrate().await;
    app.start(registry, RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let queue = fake.queue_ids().pop().expect("one queue");

    // m0 is stored; two of its runs are recorded, the gated one waits.
    send(&fake, 0..1);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 2
        })
        .await,
        "m0 is stored and its ungated runs recorded"
    );

    // The disk fills up; then the gated run ends (its record cannot be
    // written) and more messages arrive (they cannot be stored).
    let (filler, bytes) = disk.fill("filler");
    assert!(bytes > 0, "the filler took the free space");
    gate.add_permits(1);
    let appends_before = appends(&app).await;
    send(&fake, 1..6);

    // Both writers retry; /health says so; the daemon keeps running.
    assert!(
        eventually(WAIT, || async { retrying_writes(&app).await }).await,
        "/health reports the failing writes: {:?}",
        app.health().await
    );
    assert!(
        eventually(WAIT, || async {
            appends(&app).await >= appends_before + 3.0
        })
        .await,
        "intake retries the append while the disk is full: {} attempts, daemon finished: {}",
        appends(&app).await - appends_before,
        app.is_finished()
    );
    let health = app.health().await;
    assert!(
        !app.is_finished() && !health.body["reasons"].to_string().contains("shutting down"),
        "the daemon keeps running while the disk is full: {health:?}"
    );
    // A full disk is seldom entirely full (a failed write may leave room
    // for a smaller one): whatever was acknowledged must have been stored.
    let held = held_contents(&fake, &queue);
    let stored: Vec<(String, Option<String>)> = db
        .text_pairs("SELECT raw, NULL FROM event_listeners_inbox")
        .await;
    for i in 1..6 {
        let content = format!("\"content\":\"m{i}\"");
        assert!(
            held.contains(&format!("m{i}")) || stored.iter().any(|(raw, _)| raw.contains(&content)),
            "m{i} was acknowledged to Zulip though it was not stored (held: {held:?})"
        );
    }

    // Space returns: everything is stored and recorded, once.
    std::fs::remove_file(&filler).expect("remove the filler");
    gate.add_permits(5);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 18
                && fake.pending(&queue) == Some(0)
        })
        .await,
        "every run is recorded and every event acknowledged once space returns: {} runs",
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await
    );
    assert!(!app.is_finished(), "the daemon was never restarted");
    assert_eq!(
        app.health().await.body["status"],
        "healthy",
        "/health recovers"
    );
    let report = app.stop().await.expect("a clean stop");
    assert_eq!(report.stored, 6);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT message_id) FROM event_listeners_inbox")
            .await,
        6,
        "each message is stored once"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        6
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) <> 1) d").await,
        0,
        "each (event, listener) has exactly one recorded run"
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
        6,
        "message_logger wrote each message once"
    );
    drop(db);
    drop(app);
    drop(disk);
}
