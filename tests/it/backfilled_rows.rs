//! What the README says of backfilled inbox rows: a live event's `raw` is
//! the event as Zulip sent it, a backfilled message's is built by the
//! daemon from `GET /messages` (`backfilled`, the message id as event id),
//! and the README's query over `backfilled` lists them, on both backends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

both_backends!(backfilled_rows_are_the_daemons_and_stay_queryable =>
    backfilled_rows_are_the_daemons_and_stay_queryable_on_sqlite,
    backfilled_rows_are_the_daemons_and_stay_queryable_on_postgres);

async fn logged(db: &TestDb, n: i64) -> bool {
    eventually(WAIT, || async {
        count(db, "SELECT count(*) FROM event_listeners_messagelog").await == n
    })
    .await
}

async fn backfilled_rows_are_the_daemons_and_stay_queryable(backend: Backend) {
    // Arrange: two messages live, then three sent while the queue is lost.
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    app.db.migrate().await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send(&fake, 0..2);
    assert!(logged(&db, 2).await);
    app.stop().await.expect("clean stop");
    fake.expire_all_queues();
    send(&fake, 2..5);

    // Act
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(logged(&db, 5).await);
    app.stop().await.expect("clean stop");

    // Assert: the README's query.
    let rows: Vec<(i64, i64, DateTime<Utc>)> = db
        .rows(
            "SELECT id, message_id, received_at FROM event_listeners_inbox
              WHERE backfilled ORDER BY message_id",
        )
        .await;
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![3, 4, 5],
        "{rows:?}"
    );
    let live = raw(&db, 1).await;
    assert_eq!(
        live.get("backfilled"),
        None,
        "a live event is Zulip's: {live}"
    );
    assert_eq!(live["id"], 0, "its id is the queue's event id");
    let built = raw(&db, 4).await;
    assert_eq!(built["backfilled"], true, "{built}");
    assert_eq!(built["id"], 4, "a backfilled row's id is the message id");
    assert_eq!(built["message"]["content"], "m3");
}

/// The `raw` JSON of message `message_id`'s inbox row.
async fn raw(db: &TestDb, message_id: i64) -> Value {
    let rows: Vec<(String,)> = db
        .rows(&format!(
            "SELECT raw FROM event_listeners_inbox WHERE message_id = {message_id}"
        ))
        .await;
    serde_json::from_str(&rows[0].0).expect("JSON")
}
