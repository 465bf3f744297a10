//! One daemon per (database, instance): a second one is refused, naming
//! the first, before it touches the queue; on PostgreSQL, a daemon whose
//! lock was taken by another process while its lock connection was down
//! stops instead of running beside it (issue 13, item 8).

use std::time::Duration;

use zulip_event_listeners::app::{AppError, RunOptions};
use zulip_event_listeners::listeners::Registry;
use zulip_event_listeners::store::StoreError;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

both_backends!(a_second_daemon_on_the_same_instance_is_refused_naming_the_first =>
    a_second_daemon_on_one_sqlite_file_is_refused,
    a_second_daemon_on_one_postgres_instance_is_refused);

async fn a_second_daemon_on_the_same_instance_is_refused_naming_the_first(backend: Backend) {
    let mut first = TestApp::new(backend, FakeOptions::default(), "").await;
    first.db.migrate().await;
    first
        .start(Registry::builtin(), RunOptions::default())
        .await;
    let fake = first.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    let mut second = first.beside("");
    let err = second
        .try_start(Registry::builtin(), RunOptions::default())
        .await
        .expect_err("a second daemon on the same instance is refused");
    let text = err.to_string();
    assert!(
        matches!(err, AppError::Store(StoreError::InstanceLocked { .. })),
        "{text}"
    );
    assert!(
        text.contains(&format!("pid={}", std::process::id())),
        "names the holder: {text}"
    );
    // It never reached Zulip's queue.
    assert_eq!(fake.register_count(), 1);

    // Once the first stops, the same instance starts.
    first.stop().await.expect("clean stop");
    second
        .start(Registry::builtin(), RunOptions::default())
        .await;
    second.stop().await.expect("clean stop");
}

/// The lock's connection is killed and another session takes the lock
/// before the daemon can take it again: the daemon stops with the error.
#[tokio::test]
async fn a_daemon_whose_lock_is_taken_while_its_connection_was_down_stops() {
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let mut thief = pool.acquire().await.unwrap();
    // Kill the daemon's lock session (the one granted its advisory lock)
    // and take the lock before the daemon notices at its next ping (2 s);
    // should the daemon win a round, it holds the lock again: kill anew.
    let mut taken = false;
    for _round in 0..5 {
        let lock_pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database =
               (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = lock_pid {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&pool)
                .await
                .unwrap();
        }
        // The session lets go of its lock once it has exited, a moment later.
        for _ in 0..100 {
            taken = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext('default'))")
                .bind(0x005A_454C_i32)
                .fetch_one(&mut *thief)
                .await
                .unwrap();
            if taken {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if taken {
            break;
        }
    }
    assert!(taken, "the lock is free once its session is gone");

    assert!(eventually(WAIT, || async { app.is_finished() }).await);
    let err = app.wait().await.expect_err("the daemon stops");
    assert!(
        matches!(err, AppError::Store(StoreError::InstanceLocked { .. })),
        "{err}"
    );
}
