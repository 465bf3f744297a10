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
    // The daemon's lock session: the one granted its advisory lock.
    let lock_pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database =
           (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(lock_pid)
        .execute(&pool)
        .await
        .unwrap();
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext('default'))")
        .bind(0x005A_454C_i32)
        .fetch_one(&mut *thief)
        .await
        .unwrap();
    assert!(taken, "the lock is free once its session is gone");

    assert!(eventually(WAIT, || async { app.is_finished() }).await);
    let err = app.wait().await.expect_err("the daemon stops");
    assert!(
        matches!(err, AppError::Store(StoreError::InstanceLocked { .. })),
        "{err}"
    );
}
