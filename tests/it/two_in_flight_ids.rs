//! Inbox ids ascend from one batch in flight to the next. The watermark
//! (`dispatch/progress.rs`) trusts that every id below the highest one
//! handed to dispatch has been handed over: a batch in line whose rows took
//! ids while the batch before was still inserting would interleave with
//! it, and a SIGKILL after the first batch's runs were recorded would
//! leave the second's events below the watermark, never run. (Found by
//! `faults::twenty_thousand_messages_survive_ten_sigkills`: every fifth
//! event of a stretch had no run.)

use tokio::sync::watch;
use zulip_event_listeners::event::Event;
use zulip_event_listeners::store::{Line, Origin, StoreError, Turn};

use crate::support::*;
use crate::two_in_flight::{at, at_statement, held_backends, hold_inbox_row, reaction, take_lock};

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A batch sent while the one before is held half-way through its inbox
/// rows takes its ids only after all of that one's.
#[tokio::test]
async fn a_batch_in_line_takes_its_inbox_ids_after_every_id_of_the_batch_before() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate().await;
    let s = db.store().await;
    let q = Origin::Queue("q1".into());
    hold_inbox_row(&db, 5).await;
    let lock = take_lock(&db).await;
    let (written, word) = watch::channel(Turn::Begun);
    let first = {
        let (s, q) = (s.clone(), q.clone());
        tokio::spawn(async move {
            let events: Vec<Event> = (0..10).map(reaction).collect();
            let line = Line {
                after: None,
                written: Some(written),
            };
            s.append_in_line("default", &q, &events, &[], &at(9), &line)
                .await
        })
    };
    assert!(
        eventually(WAIT, || async { held_backends(&db).await == 1 }).await,
        "the first batch is held at its sixth row"
    );
    let second = {
        let (s, q) = (s.clone(), q.clone());
        tokio::spawn(async move {
            let events: Vec<Event> = (10..20).map(reaction).collect();
            let line = Line {
                after: Some((at(9), word)),
                written: None,
            };
            s.append_in_line("default", &q, &events, &[], &at(19), &line)
                .await
        })
    };
    // The second has begun its transaction and waits for its turn (before
    // the fix: having inserted its rows already).
    assert!(
        eventually(WAIT, || async {
            at_statement(&db, "idle in transaction", "").await == 1
        })
        .await,
        "the second batch waits in its transaction"
    );
    drop(lock);
    first.await.unwrap().expect("the first batch commits");
    second
        .await
        .unwrap()
        .expect("the second batch commits after it");
    let interleaved = db
        .scalar(
            "SELECT count(*) FROM event_listeners_inbox a, event_listeners_inbox b
             WHERE a.event_id < 10 AND b.event_id >= 10 AND a.id > b.id",
        )
        .await;
    assert_eq!(
        interleaved, 0,
        "every id of the second batch is above the first's"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        20
    );
    db.drop_db().await;
}

/// What an `append_in_line` task gives back.
type Appended =
    tokio::task::JoinHandle<Result<Vec<Option<i64>>, zulip_event_listeners::store::StoreError>>;

/// Two large batches in line on queue q1 of a store whose cursor's row is
/// written (as the daemon writes it when it registers a queue): `firsts`
/// (cursor to 99), held at event 5 by the test's lock, and `seconds`
/// (cursor to 199) after it, once that one has copied its rows and waits
/// for its turn at the cursor. Returns both tasks and the lock.
async fn held_first_and_second_copied(
    db: &TestDb,
    s: &std::sync::Arc<dyn zulip_event_listeners::store::Store>,
    firsts: Vec<Event>,
    seconds: Vec<Event>,
) -> (Appended, Appended, sqlx::PgConnection) {
    let q = Origin::Queue("q1".into());
    s.append("default", &q, &[], Some(&at(-1))).await.unwrap();
    hold_inbox_row(db, 5).await;
    let lock = take_lock(db).await;
    let (written, word) = watch::channel(Turn::Begun);
    let first_line = Line {
        after: None,
        written: Some(written),
    };
    let second_line = Line {
        after: Some((at(99), word)),
        written: None,
    };
    let first = {
        let (s, q) = (s.clone(), q.clone());
        tokio::spawn(async move {
            s.append_in_line("default", &q, &firsts, &[], &at(99), &first_line)
                .await
        })
    };
    assert!(
        eventually(WAIT, || async { held_backends(db).await == 1 }).await,
        "the first batch is held at its sixth row"
    );
    let second = {
        let (s, q) = (s.clone(), q.clone());
        tokio::spawn(async move {
            s.append_in_line("default", &q, &seconds, &[], &at(199), &second_line)
                .await
        })
    };
    assert!(
        eventually(WAIT, || async {
            at_statement(db, "idle in transaction", "COPY").await == 1
        })
        .await,
        "the second batch has taken its ids, copied its rows and waits for its turn at the cursor"
    );
    (first, second, lock)
}

/// A large batch (a `COPY`, its ids taken from the sequence first) in line
/// copies its rows while the batch before is still copying its own, and
/// every one of its ids is still above that one's.
#[tokio::test]
async fn a_large_batch_in_line_copies_beside_the_one_before_and_its_ids_follow_all_of_them() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate().await;
    let s = db.store().await;
    let (first, second, lock) = held_first_and_second_copied(
        &db,
        &s,
        (0..100).map(reaction).collect(),
        (100..200).map(reaction).collect(),
    )
    .await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        0,
        "neither has committed"
    );
    drop(lock);
    first.await.unwrap().expect("the first batch commits");
    second
        .await
        .unwrap()
        .expect("the second batch commits after it");
    let interleaved = db
        .scalar(
            "SELECT count(*) FROM event_listeners_inbox a, event_listeners_inbox b
             WHERE a.event_id < 100 AND b.event_id >= 100 AND a.id > b.id",
        )
        .await;
    assert_eq!(
        interleaved, 0,
        "every id of the second batch is above the first's"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        200
    );
    db.drop_db().await;
}

/// A large batch whose `COPY` meets a row stored already, after the batch
/// in line behind it has taken its ids, does not write its rows again
/// with ids above those: both give up their turn, nothing of either is
/// stored, and written again in order (as `Pipeline::land` does) every id
/// of the second is above the first's.
#[tokio::test]
async fn a_copy_refused_after_the_batch_behind_took_its_ids_gives_up_its_turn() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate().await;
    let s = db.store().await;
    let q = Origin::Queue("q1".into());
    // Message 1050 is stored already (as event 50 of another queue).
    s.append(
        "default",
        &Origin::Queue("q0".into()),
        &[message_event(50)],
        None,
    )
    .await
    .unwrap();
    let firsts = || (0..100).map(message_event).collect::<Vec<Event>>();
    let seconds = || (100..200).map(reaction).collect::<Vec<Event>>();
    let (first, second, lock) = held_first_and_second_copied(&db, &s, firsts(), seconds()).await;
    drop(lock);
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert!(
        matches!(first, Err(StoreError::OutOfTurn { .. })),
        "the first gives up its turn: {first:?}"
    );
    assert!(
        matches!(second, Err(StoreError::OutOfTurn { .. })),
        "the second finds the cursor where it was: {second:?}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        1,
        "nothing of either is stored"
    );
    s.append("default", &q, &firsts(), Some(&at(99)))
        .await
        .unwrap();
    s.append("default", &q, &seconds(), Some(&at(199)))
        .await
        .unwrap();
    let inverted = db
        .scalar(
            "SELECT count(*) FROM event_listeners_inbox a, event_listeners_inbox b
             WHERE a.queue_id = 'q1' AND b.queue_id = 'q1'
               AND a.event_id < 100 AND b.event_id >= 100 AND a.id > b.id",
        )
        .await;
    assert_eq!(inverted, 0, "every id of the second is above the first's");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        200,
        "the stored message once, 99 new ones and 100 reactions"
    );
    db.drop_db().await;
}
