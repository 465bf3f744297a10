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
use zulip_event_listeners::store::{Line, Origin};

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
    let (written, word) = watch::channel(false);
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
