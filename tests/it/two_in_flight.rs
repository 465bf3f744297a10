//! Two batches in flight on PostgreSQL (`intake/flight.rs`): a backlog's
//! chunks commit two at a time, and whatever happens between their commits
//! (a SIGKILL, a connection dropped while holding the cursor), a batch
//! never commits ahead of the one before it, so nothing is acknowledged
//! that is not stored, and nothing is stored or run twice.
//!
//! The daemon's chunks are held inside the server by triggers that wait on
//! an advisory lock this test holds: on one event's inbox row (its batch
//! has not reached its cursor write), or at the COMMIT of the batch that
//! moved the cursor to one position (it holds the cursor's row).

use std::time::Duration;

use sqlx::Connection;
use zulip_event_listeners::event::Event;
use zulip_event_listeners::store::{Cursor, Line, Origin, StoreError, Turn};

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
/// Messages in the backlog: four chunks of the daemon's 1,000 events
/// (ids 0-999, 1000-1999, 2000-2999, 3000-3499).
const BACKLOG: usize = 3_500;
const LOCK: i64 = 4242;

/// A trigger that holds, until the test's advisory lock is released, the
/// transaction writing the inbox row of event `event_id`.
pub(crate) async fn hold_inbox_row(db: &TestDb, event_id: i64) {
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

/// A trigger that holds, at its COMMIT, the transaction that moved the
/// cursor to `event_id`: the cursor's row stays locked.
async fn hold_commit_at(db: &TestDb, event_id: i64) {
    db.execute(&hold()).await;
    db.execute(&format!(
        "CREATE CONSTRAINT TRIGGER test_hold AFTER UPDATE ON event_listeners_cursor
           DEFERRABLE INITIALLY DEFERRED
           FOR EACH ROW WHEN (NEW.last_event_id = {event_id}) EXECUTE FUNCTION test_hold()"
    ))
    .await;
}

/// The test's end of the advisory lock, on a connection of its own.
pub(crate) async fn take_lock(db: &TestDb) -> sqlx::PgConnection {
    let mut c = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("SELECT pg_advisory_lock({LOCK})"))
        .execute(&mut c)
        .await
        .expect("take the advisory lock");
    c
}

/// Backends of the daemon held by a trigger (on the advisory lock).
pub(crate) async fn held_backends(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event = 'advisory'",
    )
    .await
}

/// Backends of the daemon whose last statement begins `query`, in `state`.
pub(crate) async fn at_statement(db: &TestDb, state: &str, query: &str) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state = '{state}'
               AND query LIKE '{query}%'"
        ),
    )
    .await
}

/// The one that locks the cursor's row in its turn (`write_cursor_in_line`).
const TURN: &str = "SELECT queue_id, last_event_id FROM event_listeners_cursor";

async fn cursor_at(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT COALESCE(max(last_event_id), -1) FROM event_listeners_cursor",
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
                cursor_at(&db).await == cursor && held_backends(&db).await == 1
            })
            .await,
            "the batch before commits, the one with event {held} is held: cursor {}; {}",
            cursor_at(&db).await,
            stderr_of(&stderr_log)
        );
        // The batch after the held one has copied its rows beside it (its
        // ids taken after all of the held one's) and waits in its
        // transaction for its turn at the cursor (a broken daemon would
        // commit it).
        assert!(
            eventually(WAIT, || async {
                at_statement(&db, "idle in transaction", "COPY").await == 1
                    || count(&db, "SELECT count(*) FROM event_listeners_inbox").await > stored
            })
            .await,
            "the batch after the held one waits in its transaction: {}",
            stderr_of(&stderr_log)
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

/// The connection of a batch that holds the cursor's row (at its COMMIT)
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
    hold_commit_at(&db, 1_999).await;
    let lock = take_lock(&db).await;
    fake.hold_delivery(true);
    send(&fake, 0..BACKLOG);
    fake.hold_delivery(false);
    assert!(
        eventually(WAIT, || async {
            held_backends(&db).await == 1 && at_statement(&db, "active", TURN).await == 1
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

pub(crate) fn reaction(id: i64) -> Event {
    Event::parse(&format!(
        r#"{{"type":"reaction","op":"add","id":{id},"user_id":10,"message_id":1,"emoji_name":"tada","emoji_code":"1f389","reaction_type":"unicode_emoji"}}"#
    ))
    .unwrap()
}

pub(crate) fn at(id: i64) -> Cursor {
    Cursor {
        site: "https://z".into(),
        queue_id: "q1".into(),
        last_event_id: id,
        last_message_id: None,
    }
}

/// A line whose batch before leaves the cursor at `id`, and has written it.
fn after(id: i64) -> Line {
    let (written, word) = tokio::sync::watch::channel(Turn::CursorWritten);
    drop(written);
    Line {
        after: Some((at(id), word)),
        written: None,
    }
}

/// `append_in_line` moves the cursor from where the batch before left it;
/// from anywhere else it refuses, storing nothing; and with the batch
/// before uncommitted it waits for it: moving on if it commits, refusing
/// if it rolls back. SQLite, with one writer, keeps one append in flight.
#[tokio::test]
async fn a_batch_in_line_commits_only_after_and_from_where_the_one_before_left_the_cursor() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate().await;
    let s = db.store().await;
    let q = Origin::Queue("q1".into());
    let batch = |ids: std::ops::Range<i64>| -> Vec<Event> { ids.map(reaction).collect() };
    s.append("default", &q, &batch(0..3), Some(&at(2)))
        .await
        .unwrap();
    // The batch before (ids 3-99) never came: refused, nothing stored.
    let refused = s
        .append_in_line("default", &q, &batch(100..200), &[], &at(199), &after(99))
        .await;
    assert!(
        matches!(refused, Err(StoreError::OutOfTurn { expected: 99 })),
        "{refused:?}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        3,
        "the refused batch is rolled back"
    );
    assert_eq!(s.load_cursor("default").await.unwrap(), Some(at(2)));

    // The batch before holds the cursor, uncommitted; then rolls back or commits.
    for (commit, from, to) in [(false, 2, 5), (true, 2, 5), (true, 7, 10)] {
        let mut before = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut before).await.unwrap();
        sqlx::query(&format!(
            "UPDATE event_listeners_cursor SET last_event_id = {to} WHERE instance = 'default'"
        ))
        .execute(&mut before)
        .await
        .unwrap();
        let line = {
            let s = s.clone();
            let q = q.clone();
            tokio::spawn(async move {
                let events: Vec<Event> = (to + 1..to + 3).map(reaction).collect();
                s.append_in_line("default", &q, &events, &[], &at(to + 2), &after(to))
                    .await
            })
        };
        // It waits on the row: until the one before ends, nothing is stored.
        assert!(
            eventually(WAIT, || async {
                at_statement(&db, "active", TURN).await == 1
            })
            .await,
            "the batch in line waits for the one before"
        );
        assert!(!line.is_finished());
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut before).await.unwrap();
        let result = line.await.unwrap();
        let cursor = s.load_cursor("default").await.unwrap().unwrap();
        if commit {
            assert!(result.is_ok(), "after a COMMIT from {from}: {result:?}");
            assert_eq!(cursor.last_event_id, to + 2);
        } else {
            assert!(
                matches!(result, Err(StoreError::OutOfTurn { .. })),
                "after a ROLLBACK: {result:?}"
            );
            assert_eq!(cursor.last_event_id, from);
        }
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        3 + 2 + 2,
        "only the batches in turn are stored"
    );
    db.drop_db().await;

    let db = TestDb::new(Backend::Sqlite).await;
    db.migrate().await;
    let s = db.store().await;
    assert_eq!(s.appends_in_flight(), 1);
    let refused = s
        .append_in_line("default", &q, &batch(0..3), &[], &at(2), &after(-1))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Unsupported(_))),
        "{refused:?}"
    );
}
