//! The PostgreSQL inbox without a unique queue position (migration
//! 20261203000012): a live queue's events are still stored once when the
//! answer to their COMMIT is lost and the batch is written again, and a
//! database with rows in today's shape upgrades with them. (A batch
//! repeating an id stores its first copy only: `store_suite`.)

use std::time::Duration;

use zulip_event_listeners::event::Event;
use zulip_event_listeners::store::{Cursor, Origin};

use crate::faults::app_behind_proxy;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

fn reaction(id: i64, user: i64) -> Event {
    Event::parse(&format!(
        r#"{{"type":"reaction","op":"add","id":{id},"user_id":{user},"message_id":1,"emoji_name":"tada","emoji_code":"1f389","reaction_type":"unicode_emoji"}}"#
    ))
    .unwrap()
}

/// Reactions carry no message id, so nothing in the inbox but the daemon's
/// own check keeps one from being stored twice: their COMMIT goes through,
/// its answer is lost, and the batch is written again on a new connection.
#[tokio::test]
async fn a_batch_whose_commit_answer_was_lost_is_not_stored_twice() {
    let (mut app, proxy) = app_behind_proxy().await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let queue = fake.queue_ids().pop().expect("one queue");
    let reactions = "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'reaction'";

    // The reactions' emoji is in the statement's bound values only.
    proxy.lose_answers_after(b"tada");
    // One page, so one batch.
    fake.hold_delivery(true);
    (0..5).for_each(|i| react(&fake, 10 + i));
    fake.hold_delivery(false);
    assert!(
        eventually(WAIT, || async { count(&db, reactions).await == 5 }).await,
        "the batch commits on the server while its answer is lost: {} stored, {:?} pending",
        count(&db, reactions).await,
        fake.pending(&queue)
    );
    assert_eq!(
        fake.pending(&queue),
        Some(5),
        "nothing is acknowledged before the daemon hears of the commit"
    );
    // The connection breaks: the daemon cannot tell whether it committed.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();

    assert!(
        eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await,
        "the batch is acknowledged once the daemon finds it stored"
    );
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await >= 5
        })
        .await,
        "the reactions are run"
    );
    // Later traffic goes on as usual.
    react(&fake, 20);
    assert!(
        eventually(WAIT, || async { count(&db, reactions).await >= 6 }).await,
        "a later event is stored"
    );
    app.stop().await.expect("a clean stop");
    assert_eq!(
        db.scalar(reactions).await,
        6,
        "each reaction is stored once"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT event_id) FROM event_listeners_inbox WHERE event_type = 'reaction'")
            .await,
        6
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT inbox_id FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) <> 1) d")
            .await,
        0,
        "each (event, listener) ran once"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        6,
        "user_activity_tracker ran each reaction once"
    );
}

/// Rows written under today's schema (the unique queue position) survive
/// the upgrade, are found by position, and a file read again still stores
/// nothing twice.
#[tokio::test]
async fn an_inbox_with_rows_upgrades_and_keeps_them() {
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate_before(20261203000012).await;
    db.execute(
        "INSERT INTO event_listeners_inbox (instance, queue_id, event_id, event_type, message_id, raw)
         SELECT 'default', 'q1', g, 'reaction', NULL, '{\"type\":\"reaction\",\"id\":' || g || '}'
         FROM generate_series(0, 99) g",
    )
    .await;
    db.execute(
        "INSERT INTO event_listeners_inbox (instance, queue_id, event_id, event_type, message_id, raw)
         VALUES ('default', 'file:/srv/events.jsonl', 0, 'reaction', NULL, '{\"type\":\"reaction\",\"id\":0}')",
    )
    .await;
    db.execute(
        "INSERT INTO event_listeners_cursor (instance, site, queue_id, last_event_id)
         VALUES ('default', 'https://z', 'q1', 99)",
    )
    .await;

    db.migrate().await;
    let s = db.store().await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        101,
        "every row is kept"
    );
    let found = s
        .inbox_ids("default", &Origin::Queue("q1".into()), &[5, 50, 99, 100])
        .await
        .unwrap();
    let mut positions: Vec<i64> = found.iter().map(|(e, _)| *e).collect();
    positions.sort_unstable();
    assert_eq!(positions, [5, 50, 99], "rows are found by position");
    let file = Origin::File("/srv/events.jsonl".into());
    assert_eq!(
        s.append("default", &file, &[reaction(0, 10)], None)
            .await
            .unwrap(),
        vec![None],
        "a file's position is still unique"
    );
    // The queue goes on after its cursor.
    let next = Cursor {
        site: "https://z".into(),
        queue_id: "q1".into(),
        last_event_id: 100,
        last_message_id: None,
    };
    let ids = s
        .append(
            "default",
            &Origin::Queue("q1".into()),
            &[reaction(100, 10)],
            Some(&next),
        )
        .await
        .unwrap();
    assert!(ids[0].is_some());
    assert_eq!(s.load_cursor("default").await.unwrap(), Some(next));
    db.drop_db().await;
}
