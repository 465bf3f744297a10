//! The message log follows the conversation, at the store: edits, moves
//! and deletions recorded with their runs change the rows logged before,
//! in the same batch or in a replay. Each test runs on both backends.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zulip_event_listeners::listeners::{
    ActivityKind, ActivityRecord, MessageDeleteRecord, MessageEditRecord, MessageLogRecord,
    MessageMoveRecord, Record,
};
use zulip_event_listeners::store::{RunRecord, Store};

use crate::support::*;

both_backends!(mod:
    edits_moves_and_deletions_change_the_rows_logged_before,
    a_message_logged_and_changed_in_one_batch_ends_changed,
    a_replayed_message_with_its_edit_keeps_the_edit,
    changes_to_messages_never_logged_change_nothing,
    a_channel_move_takes_the_name_of_the_messages_logged_there,
    edits_are_counted_as_activity_of_the_editor,
);

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// Message `id` in channel `channel` (id `channel_id`), topic `topic`.
fn logged(id: i64, channel: &str, channel_id: i64, topic: &str) -> Record {
    Record::MessageLog(MessageLogRecord {
        message_id: id,
        sender_id: 3,
        sender_email: "s@x".into(),
        recipient_type: "channel",
        channel: Some(channel.into()),
        channel_id: Some(channel_id),
        topic: Some(topic.into()),
        dm_recipients: None,
        content_length: 5,
        sent_at: at(1_790_000_000),
    })
}

fn edit(id: i64, len: i64, secs: i64) -> Record {
    Record::MessageEdit(MessageEditRecord {
        message_id: id,
        content_length: len,
        edited_at: at(secs),
    })
}

fn moved(ids: &[i64], channel_id: Option<i64>, topic: Option<&str>, secs: i64) -> Record {
    Record::MessageMove(MessageMoveRecord {
        message_ids: ids.to_vec(),
        channel_id,
        topic: topic.map(str::to_owned),
        moved_at: at(secs),
    })
}

fn deleted(ids: &[i64], secs: i64) -> Record {
    Record::MessageDelete(MessageDeleteRecord {
        message_ids: ids.to_vec(),
        deleted_at: at(secs),
    })
}

fn run(inbox_id: i64, records: Vec<Record>) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: "message_logger".into(),
        event_type: "message".into(),
        success: true,
        attempts: 1,
        error: None,
        duration: Duration::from_millis(1),
        finished_at: Utc::now(),
        records,
        dead_letter: None,
        fallback: Default::default(),
    }
}

async fn record(s: &Arc<dyn Store>, runs: Vec<RunRecord>) {
    s.record("i", &runs, None).await.expect("the batch commits");
}

/// A message log row as the tests compare it: id, length, topic, channel,
/// channel id, and the Unix seconds of its edit, move and deletion.
pub(crate) type Row = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Every message log row, by message id.
pub(crate) async fn rows(db: &TestDb) -> Vec<Row> {
    let secs = |col: &str| match db.backend {
        Backend::Sqlite => format!("CAST(strftime('%s', {col}) AS INTEGER)"),
        Backend::Postgres => format!("CAST(EXTRACT(EPOCH FROM {col}) AS BIGINT)"),
    };
    db.rows(&format!(
        "SELECT message_id, CAST(content_length AS BIGINT), topic, channel, channel_id, {}, {}, {}
           FROM event_listeners_messagelog ORDER BY message_id",
        secs("edited_at"),
        secs("moved_at"),
        secs("deleted_at")
    ))
    .await
}

fn row(
    id: i64,
    len: i64,
    topic: &str,
    channel: Option<&str>,
    channel_id: i64,
    times: [Option<i64>; 3],
) -> Row {
    (
        id,
        len,
        Some(topic.into()),
        channel.map(str::to_owned),
        Some(channel_id),
        times[0],
        times[1],
        times[2],
    )
}

async fn edits_moves_and_deletions_change_the_rows_logged_before(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    record(
        &s,
        vec![run(
            1,
            vec![
                logged(10, "general", 4, "a"),
                logged(11, "general", 4, "a"),
                logged(12, "general", 4, "a"),
            ],
        )],
    )
    .await;

    // A content edit of 10, a move of 11 and 12 (change_later) to topic b,
    // a deletion of 12.
    record(
        &s,
        vec![
            run(2, vec![edit(10, 42, 100)]),
            run(3, vec![moved(&[11, 12], None, Some("b"), 101)]),
            run(4, vec![deleted(&[12], 102)]),
        ],
    )
    .await;

    assert_eq!(
        rows(&db).await,
        vec![
            row(10, 42, "a", Some("general"), 4, [Some(100), None, None]),
            row(11, 5, "b", Some("general"), 4, [None, Some(101), None]),
            row(12, 5, "b", Some("general"), 4, [None, Some(101), Some(102)]),
        ]
    );
    db.drop_db().await;
}

async fn a_message_logged_and_changed_in_one_batch_ends_changed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    record(
        &s,
        vec![
            run(1, vec![logged(10, "general", 4, "a")]),
            run(2, vec![edit(10, 7, 100)]),
            run(3, vec![moved(&[10], None, Some("b"), 101)]),
            run(4, vec![edit(10, 9, 102)]),
            run(5, vec![deleted(&[10], 103)]),
        ],
    )
    .await;
    assert_eq!(
        rows(&db).await,
        vec![row(
            10,
            9,
            "b",
            Some("general"),
            4,
            [Some(102), Some(101), Some(103)]
        )]
    );
    db.drop_db().await;
}

/// A replay logs a message again with its edit: the row stays one, edited
/// (on PostgreSQL, through the careful retry after the unique violation).
async fn a_replayed_message_with_its_edit_keeps_the_edit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    record(&s, vec![run(1, vec![logged(10, "general", 4, "a")])]).await;
    record(
        &s,
        vec![
            run(1, vec![logged(10, "general", 4, "a")]),
            run(2, vec![edit(10, 8, 100)]),
        ],
    )
    .await;
    assert_eq!(
        rows(&db).await,
        vec![row(10, 8, "a", Some("general"), 4, [Some(100), None, None])]
    );
    db.drop_db().await;
}

async fn changes_to_messages_never_logged_change_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    record(&s, vec![run(1, vec![logged(10, "general", 4, "a")])]).await;
    record(
        &s,
        vec![
            run(2, vec![edit(99, 8, 100)]),
            run(3, vec![moved(&[98, 99], Some(5), Some("b"), 101)]),
            run(4, vec![deleted(&[97], 102)]),
        ],
    )
    .await;
    assert_eq!(
        rows(&db).await,
        vec![row(10, 5, "a", Some("general"), 4, [None, None, None])]
    );
    assert_eq!(
        s.summary().await.unwrap().eventlog,
        4,
        "every run is logged"
    );
    db.drop_db().await;
}

async fn a_channel_move_takes_the_name_of_the_messages_logged_there(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    record(
        &s,
        vec![run(
            1,
            vec![
                logged(10, "general", 4, "a"),
                logged(11, "general", 4, "a"),
                logged(12, "old-name", 9, "x"),
                logged(13, "support", 9, "y"),
            ],
        )],
    )
    .await;
    // 10 to channel 9 (the newest message there calls it "support"), 11 to
    // channel 6, where nothing is logged: the name is unknown.
    record(
        &s,
        vec![
            run(2, vec![moved(&[10], Some(9), None, 100)]),
            run(3, vec![moved(&[11], Some(6), Some("z"), 101)]),
        ],
    )
    .await;
    let r = rows(&db).await;
    assert_eq!(
        r[..2],
        [
            row(10, 5, "a", Some("support"), 9, [None, Some(100), None]),
            row(11, 5, "z", None, 6, [None, Some(101), None]),
        ]
    );
    db.drop_db().await;
}

async fn edits_are_counted_as_activity_of_the_editor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let act = |kind, secs| {
        Record::Activity(ActivityRecord {
            user_id: 7,
            email: None,
            seen_at: at(secs),
            kind,
        })
    };
    record(&s, vec![run(1, vec![act(ActivityKind::Message, 100)])]).await;
    record(
        &s,
        vec![
            run(2, vec![act(ActivityKind::Edit, 110)]),
            run(3, vec![act(ActivityKind::Edit, 120)]),
        ],
    )
    .await;
    assert_eq!(
        db.pairs(
            "SELECT message_count, edit_count FROM event_listeners_useractivity WHERE user_id = 7"
        )
        .await,
        vec![(1, 2)]
    );
    db.drop_db().await;
}
