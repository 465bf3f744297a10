//! Two batches in flight on PostgreSQL (`intake/flight.rs`): a backlog's
//! chunks commit two at a time, and whatever happens between their commits
//! (a SIGKILL, a connection dropped while holding the cursor), a batch
//! never commits ahead of the one before it, so nothing is acknowledged
//! that is not stored, and nothing is stored or run twice.
//!
//! The daemon's chunks are held inside the server by triggers that wait on
//! an advisory lock this test holds: on one event's inbox row (its batch
//! has not reached its cursor write), or on the cursor moving to one
//! position (its batch holds the cursor's row, uncommitted).

use std::time::Duration;

use sqlx::Connection;
use zulip_event_listeners::event::Event;
use zulip_event_listeners::store::{Cursor, Origin, StoreError};

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
/// Messages in the backlog: four chunks of the daemon's 1,000 events
/// (ids 0-999, 1000-1999, 2000-2999, 3000-3499).
const BACKLOG: usize = 3_500;
const LOCK: i64 = 4242;

/// A trigger that holds, until the test's advisory lock is released, the
/// transaction writing the inbox row of event `event_id`.
async fn hold_inbox_row(db: &TestDb, event_id: i64) {
    db.execute(&hold()).await;
    db.execute(&format!(
        "CREATE TRIGGER test_hold BEFORE INSERT ON event_listeners_inbox
           FOR EACH ROW WHEN (NEW.event_id = {event_id}) EXECUTE FUNCTION test_hold()"
    ))
    .await;
}

/// What the triggers run: wait for the test's advisory lock.
fn hold() -> String {
    format!(
        "CREATE OR REPLACE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_advisory_xact_lock_shared({LOCK}); RETURN NEW; END $$"
    )
}

/// A trigger that holds the transaction moving the cursor to `event_id`,
/// with the cursor's row locked.
async fn hold_cursor_at(db: &TestDb, event_id: i64) {
    db.execute(&hold()).await;
    db.execute(&format!(
        "CREATE TRIGGER test_hold BEFORE UPDATE ON event_listeners_cursor
           FOR EACH ROW WHEN (NEW.last_event_id = {event_id}) EXECUTE FUNCTION test_hold()"
    ))
    .await;
}

/// The test's end of the advisory lock, on a connection of its own.
async fn take_lock(db: &TestDb) -> sqlx::PgConnection {
    let mut c = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("SELECT pg_advisory_lock({LOCK})"))
        .execute(&mut c)
        .await
        .expect("take the advisory lock");
    c
}

/// Backends of the daemon waiting on `what`: `advisory` (held by a
/// trigger) or `transactionid` (a row another transaction holds).
async fn waiting_on(db: &TestDb, what: &str) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event IN ({what})
               AND query NOT LIKE '%pg_stat_activity%'"
        ),
    )
    .await
}

async fn cursor_at(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT COALESCE(max(last_event_id), -1) FROM event_listeners_cursor",
    )
    .await
}

async fn rollbacks(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .await
}

/// The backlog, each message stored once and run once by both built-in
/// listeners, and Zulip's queue acknowledged to its end.
async fn assert_backlog_once(db: &TestDb) {
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        BACKLOG as i64,
        "every message is in the inbox once"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT event_id) FROM event_listeners_inbox")
            .await,
        BACKLOG as i64
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) <> 1) d").await,
        0,
        "each (event, listener) has exactly one logged run"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        2 * BACKLOG as i64
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        BACKLOG as i64,
        "message_logger wrote one row per message"
    );
}

/// SIGKILLs while a batch is held before its cursor write and the batch
/// after it has tried to commit (and was refused), then between two
/// commits: each time the cursor is the end of what is stored, and in the
/// end every message is stored and run once.
#[tokio::test]
async fn a_sigkill_between_two_commits_in_flight_loses_and_doubles_nothing() {
    let app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    let (fake, db, s) = (app.fake.clone(), app.db.clone(), &app.setup);
    db.migrate().await;
    let stderr_log = s.dir.path().join("stderr.log");
    // Twice: a batch held before its cursor write, and the one after it
    // tried; (the held event, the cursor before it, the rows stored).
    let holds = [(1_500, 999, 1_000), (2_500, 1_999, 2_000)];
    hold_inbox_row(&db, holds[0].0).await;
    let mut lock = take_lock(&db).await;
    let mut before = rollbacks(&db).await;
    let mut child = spawn_daemon(&s.config_path, &stderr_log);
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    let queue = fake.queue_ids().pop().expect("one queue");
    fake.hold_delivery(true);
    send(&fake, 0..BACKLOG);
    fake.hold_delivery(false);
    for (i, (held, cursor, stored)) in holds.into_iter().enumerate() {
        assert!(
            eventually(WAIT, || async {
                cursor_at(&db).await == cursor && waiting_on(&db, "'advisory'").await == 1
            })
            .await,
            "the batch before commits, the one with event {held} is held: cursor {}; {}",
            cursor_at(&db).await,
            stderr_of(&stderr_log)
        );
        // The batch after the held one was sent, and came to move the cursor
        // (refused and rolled back; a broken daemon would commit it).
        assert!(
            eventually(WAIT, || async {
                rollbacks(&db).await > before
                    || count(&db, "SELECT count(*) FROM event_listeners_inbox").await > stored
            })
            .await,
            "the batch after the held one tries to commit"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        drop(lock);
        assert_eq!(
            cursor_at(&db).await,
            cursor,
            "the cursor did not move past the held batch"
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM event_listeners_inbox")
                .await,
            stored,
            "nothing after the held batch committed ahead of it"
        );
        assert_eq!(
            db.scalar("SELECT COALESCE(max(event_id), -1) FROM event_listeners_inbox")
                .await,
            cursor,
            "what is stored ends at the cursor"
        );
        let pending = fake.pending(&queue).expect("the queue");
        assert!(
            pending >= BACKLOG - stored as usize,
            "Zulip's queue is acknowledged only through the cursor: {pending} pending"
        );
        db.execute("DROP TRIGGER test_hold ON event_listeners_inbox")
            .await;
        if let Some((next, ..)) = holds.get(i + 1) {
            hold_inbox_row(&db, *next).await;
        }
        lock = take_lock(&db).await;
        before = rollbacks(&db).await;
        child = spawn_daemon(&s.config_path, &stderr_log);
    }
    drop(lock);
    // No more holds: the daemon resumes from the cursor and catches up.
    let done = eventually(WAIT, || async {
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= 2 * BACKLOG as i64
            && fake.pending(&queue) == Some(0)
    })
    .await;
    child.kill().ok();
    child.wait().ok();
    assert!(done, "the backlog is run: {}", stderr_of(&stderr_log));
    assert_backlog_once(&db).await;
    assert_eq!(fake.register_count(), 1, "every restart resumed the queue");
}

/// The connection of a batch that holds the cursor's row (uncommitted)
/// dies while the batch after it waits for that row: the later one finds
/// the cursor where it was, rolls back, and is written again after the
/// first is; the daemon goes on, and everything is stored and run once.
#[tokio::test]
async fn a_batch_waiting_on_one_whose_connection_dies_is_written_again_after_it() {
    let app = TestApp::new(Backend::Postgres, FakeOptions::default(), "").await;
    let (fake, db, s) = (app.fake.clone(), app.db.clone(), &app.setup);
    db.migrate().await;
    let stderr_log = s.dir.path().join("stderr.log");
    let mut child = spawn_daemon(&s.config_path, &stderr_log);
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    let queue = fake.queue_ids().pop().expect("one queue");
    hold_cursor_at(&db, 1_999).await;
    let lock = take_lock(&db).await;
    fake.hold_delivery(true);
    send(&fake, 0..BACKLOG);
    fake.hold_delivery(false);
    assert!(
        eventually(WAIT, || async {
            waiting_on(&db, "'advisory'").await == 1
                && waiting_on(&db, "'transactionid', 'tuple'").await == 1
        })
        .await,
        "the second batch holds the cursor's row, the third waits for it: {}",
        stderr_of(&stderr_log)
    );
    assert_eq!(cursor_at(&db).await, 999);
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event = 'advisory'",
    )
    .await;
    drop(lock);
    let done = eventually(WAIT, || async {
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= 2 * BACKLOG as i64
            && fake.pending(&queue) == Some(0)
    })
    .await;
    let still_running = child.try_wait().expect("try_wait").is_none();
    child.kill().ok();
    child.wait().ok();
    assert!(done, "the backlog is run: {}", stderr_of(&stderr_log));
    assert!(
        still_running,
        "the daemon went on: {}",
        stderr_of(&stderr_log)
    );
    assert_backlog_once(&db).await;
    assert_eq!(cursor_at(&db).await, BACKLOG as i64 - 1);
}

fn reaction(id: i64) -> Event {
    Event::parse(&format!(
        r#"{{"type":"reaction","op":"add","id":{id},"user_id":10,"message_id":1,"emoji_name":"tada","emoji_code":"1f389","reaction_type":"unicode_emoji"}}"#
    ))
    .unwrap()
}

fn at(id: i64) -> Cursor {
    Cursor {
        site: "https://z".into(),
        queue_id: "q1".into(),
        last_event_id: id,
        last_message_id: None,
    }
}

/// `append_after` on both backends: it moves the cursor from where the
/// batch before left it, and from anywhere else refuses, storing nothing.
#[tokio::test]
async fn a_batch_after_another_commits_only_from_where_that_one_left_the_cursor() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDb::new(backend).await;
        db.migrate().await;
        let s = db.store().await;
        let q = Origin::Queue("q1".into());
        let small: Vec<Event> = (0..3).map(reaction).collect();
        s.append("default", &q, &small, Some(&at(2))).await.unwrap();
        // The batch before (ids 3-99) never came: refused, nothing stored.
        let large: Vec<Event> = (100..200).map(reaction).collect();
        let refused = s
            .append_after("default", &q, &large, &[], &at(199), &at(99))
            .await;
        assert!(
            matches!(refused, Err(StoreError::OutOfTurn { expected: 99 })),
            "{backend:?}: {refused:?}"
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM event_listeners_inbox")
                .await,
            3,
            "{backend:?}: the refused batch is rolled back"
        );
        assert_eq!(s.load_cursor("default").await.unwrap(), Some(at(2)));
        // From where the one before left it: stored, and the cursor moves.
        for batch in [&small[..0], &large[..]] {
            let next = at(if batch.is_empty() { 2 } else { 199 });
            let ids = s
                .append_after("default", &q, batch, &[], &next, &at(2))
                .await
                .unwrap();
            assert!(ids.iter().all(Option::is_some), "{backend:?}");
            if !batch.is_empty() {
                assert_eq!(s.load_cursor("default").await.unwrap(), Some(at(199)));
            }
        }
        assert_eq!(
            db.scalar("SELECT count(*) FROM event_listeners_inbox")
                .await,
            103,
            "{backend:?}"
        );
        db.drop_db().await;
    }
}
