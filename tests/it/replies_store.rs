//! The reply outbox as both stores keep it: open rows in order, the status
//! changes of a send, the echo search (only a top-level `local_message_id`
//! of a message stored after the row was marked sending), and `cleanup`
//! of sent rows. Each test runs once per backend.

use std::time::Duration;

use zulip_event_listeners::event::Event;
use zulip_event_listeners::listeners::{Record, Reply, ReplyTo};
use zulip_event_listeners::store::{local_id, OpenStatus, Origin, RunRecord, Store};

use crate::support::*;

both_backends!(mod:
    open_replies_come_in_order_and_leave_the_outbox_as_they_are_settled,
    an_echo_is_found_only_after_the_row_was_marked_sending_and_only_at_top_level,
    cleanup_deletes_old_sent_replies_only,
);

fn message(event_id: i64, message_id: i64, extra: &str) -> Event {
    Event::parse(&format!(
        r#"{{"type":"message","id":{event_id},"message":{{"id":{message_id},"sender_id":100,"sender_email":"bot@x","display_recipient":"ops","subject":"t","timestamp":1790000000,"content":"x"}},"flags":[]{extra}}}"#
    ))
    .unwrap()
}

/// Stores message 1 and records a run on it with `n` replies to ops/t.
async fn queue_replies(s: &dyn Store, n: usize) -> i64 {
    let ids = s
        .append("i", &Origin::Queue("q".into()), &[message(0, 1, "")], None)
        .await
        .unwrap();
    let inbox_id = ids[0].unwrap();
    let records = (0..n)
        .map(|i| {
            Record::Reply(Reply {
                to: ReplyTo::Channel {
                    channel: "ops".into(),
                    topic: "t".into(),
                },
                content: format!("reply {i}"),
            })
        })
        .collect();
    let run = RunRecord {
        inbox_id,
        listener: "ops".into(),
        event_type: "message".into(),
        success: true,
        attempts: 1,
        error: None,
        duration: Duration::from_millis(1),
        finished_at: chrono::Utc::now(),
        records,
        dead_letter: None,
        fallback: Default::default(),
    };
    s.record("i", &[run], None).await.unwrap();
    inbox_id
}

async fn open_replies_come_in_order_and_leave_the_outbox_as_they_are_settled(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let inbox_id = queue_replies(s.as_ref(), 3).await;
    let open = s.open_replies("i", 10).await.unwrap();
    assert_eq!(open.len(), 3);
    assert!(open.windows(2).all(|w| w[0].id < w[1].id), "in id order");
    assert_eq!(open[0].content, "reply 0");
    assert_eq!(open[0].inbox_id, inbox_id);
    assert_eq!(open[0].status, OpenStatus::Pending);
    assert_eq!(
        open[0].to,
        Ok(ReplyTo::Channel {
            channel: "ops".into(),
            topic: "t".into()
        })
    );
    assert!(s.open_replies("other", 10).await.unwrap().is_empty());
    assert_eq!(s.open_replies("i", 2).await.unwrap().len(), 2, "the limit");

    let (a, b, c) = (open[0].id, open[1].id, open[2].id);
    s.mark_reply_sending(a, "q1").await.unwrap();
    s.mark_reply_sending(b, "q1").await.unwrap();
    s.mark_reply_unknown(b, "connection reset").await.unwrap();
    s.mark_reply_sending(c, "q1").await.unwrap();
    s.mark_reply_pending(c, "rate limited").await.unwrap();
    let open = s.open_replies("i", 10).await.unwrap();
    assert_eq!(open[0].status, OpenStatus::Sending);
    assert_eq!(open[0].queue_id.as_deref(), Some("q1"));
    assert_eq!(open[0].attempts, 1);
    assert_eq!(open[0].echo_after, Some(inbox_id), "the inbox's largest id");
    assert_eq!(open[2].status, OpenStatus::Pending, "refused unprocessed");
    // A second attempt keeps the first attempt's echo floor.
    s.append("i", &Origin::Queue("q1".into()), &[message(1, 2, "")], None)
        .await
        .unwrap();
    s.mark_reply_sending(b, "q2").await.unwrap();
    let again = s.open_replies("i", 10).await.unwrap();
    assert_eq!(
        (again[1].attempts, again[1].echo_after),
        (2, Some(inbox_id))
    );
    assert_eq!(again[1].queue_id.as_deref(), Some("q2"));

    s.mark_reply_sent(a, 77).await.unwrap();
    s.mark_reply_failed(b, "STREAM_DOES_NOT_EXIST")
        .await
        .unwrap();
    assert_eq!(s.open_reply_count("i").await.unwrap(), 1);
    s.mark_reply_failed(a, "too late").await.unwrap();
    assert_eq!(
        db.pairs("SELECT id, message_id FROM event_listeners_replyoutbox WHERE status = 'sent'")
            .await,
        vec![(a, 77)],
        "a settled reply stays settled"
    );
    db.drop_db().await;
}

async fn an_echo_is_found_only_after_the_row_was_marked_sending_and_only_at_top_level(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    queue_replies(s.as_ref(), 1).await;
    let row = s.open_replies("i", 1).await.unwrap().remove(0);
    let local = local_id(row.id);
    // Before the row is marked: an older message that happens to carry it.
    let echo = |event_id, message_id| {
        message(
            event_id,
            message_id,
            &format!(r#","local_message_id":"{local}""#),
        )
    };
    let q = Origin::Queue("q".into());
    s.append("i", &q, &[echo(1, 10)], None).await.unwrap();
    s.mark_reply_sending(row.id, "q").await.unwrap();
    let after = s.open_replies("i", 1).await.unwrap()[0].echo_after.unwrap();
    assert_eq!(s.find_reply_echo("i", row.id, after).await.unwrap(), None);
    // Text in a message, and another reply's id, are no echo.
    let quoted = Event::parse(&format!(
        r#"{{"type":"message","id":2,"message":{{"id":11,"sender_id":1,"display_recipient":"ops","subject":"t","content":"\"{local}\""}}}}"#
    ))
    .unwrap();
    let other = message(3, 12, &format!(r#","local_message_id":"{local}0""#));
    s.append("i", &q, &[quoted, other], None).await.unwrap();
    assert_eq!(s.find_reply_echo("i", row.id, after).await.unwrap(), None);
    s.append("i", &q, &[echo(4, 13)], None).await.unwrap();
    assert_eq!(
        s.find_reply_echo("i", row.id, after).await.unwrap(),
        Some(13),
        "the echo's message id"
    );
    assert_eq!(
        s.find_reply_echo("other", row.id, after).await.unwrap(),
        None,
        "another instance's inbox"
    );
    db.drop_db().await;
}

async fn cleanup_deletes_old_sent_replies_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    queue_replies(s.as_ref(), 3).await;
    let open = s.open_replies("i", 10).await.unwrap();
    s.mark_reply_sent(open[0].id, 1).await.unwrap();
    s.mark_reply_failed(open[1].id, "refused").await.unwrap();
    let before = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(s.cleanup(before).await.unwrap().replies, 1);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_replyoutbox")
            .await,
        2,
        "the failed and the pending reply stay"
    );
    assert_eq!(
        s.cleanup(chrono::Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap()
            .replies,
        0
    );
    db.drop_db().await;
}
