//! Bounded memory for any backlog: a `GET /events` response is committed
//! chunk by chunk as it arrives (seen while the fake holds the body open
//! mid-way), a body cut half-way keeps what was committed and fetches the
//! rest again, a slow body outlasting the long-poll timeout is read to its
//! end, and the envelope's keys in any order and odd event bytes are
//! stored byte for byte.

use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{BodyFault, BodyGate, FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(90);
/// Messages in the large response (each event about 700 bytes of JSON).
const BACKLOG: i64 = 20_000;
/// Where the fake stalls or cuts the large body: a few thousand events in.
const MID_BODY: usize = 3_000_000;

/// A daemon registered and polling, with a long-poll timeout long enough
/// that it keeps a stalled body open for the whole test (and heartbeats as
/// rare).
async fn polling_app(backend: Backend) -> TestApp {
    let fake = FakeOptions {
        longpoll_timeout_seconds: 60,
        heartbeat: Duration::from_secs(30),
        ..FakeOptions::default()
    };
    let mut app = TestApp::new(backend, fake, "").await;
    if backend == Backend::Postgres {
        app.db.migrate().await;
    }
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app
}

/// Holds polls and waits until the daemon has acknowledged everything and
/// its next poll is parked: what is queued next comes in one response.
/// (Right after registering the queue is empty before the first poll is
/// made; a poll made while the backlog is being queued would take part of
/// it at once.)
async fn hold_polls(fake: &FakeZulip) -> String {
    fake.hold_polls(true);
    let queue = fake.queue_ids().pop().expect("a queue");
    let parked = || fake.pending(&queue) == Some(0) && fake.has_parked_poll(&queue);
    assert!(eventually(WAIT, || async { parked() }).await);
    queue
}

/// Queues [`BACKLOG`] messages with polls held, then lets the parked poll
/// take them all in one response, written with `fault`.
async fn release_backlog(fake: &FakeZulip, fault: BodyFault) {
    hold_polls(fake).await;
    fake.shape_events_bodies(vec![fault]);
    send(fake, 0..BACKLOG as usize);
    fake.hold_polls(false);
}

async fn inbox(db: &TestDb) -> i64 {
    count(db, "SELECT count(*) FROM event_listeners_inbox").await
}

async fn cursor(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT COALESCE(last_event_id, -1) FROM event_listeners_cursor",
    )
    .await
}

async fn newest_stored(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT COALESCE(max(event_id), -1) FROM event_listeners_inbox",
    )
    .await
}

/// Failed polls, whatever the reason.
fn poll_errors(metrics: &Metrics) -> f64 {
    let samples = metrics.samples.iter();
    let errors = samples.filter(|s| s.metric == "zulip_event_listeners_poll_errors_total");
    errors
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Each message stored and handled once, by both built-in listeners.
async fn assert_backlog_once(db: &TestDb) {
    let distinct = "SELECT count(DISTINCT message_id) FROM event_listeners_inbox";
    assert_eq!(db.scalar(distinct).await, BACKLOG, "no message twice");
    assert_eq!(inbox(db).await, BACKLOG, "every message stored");
    let runs = "SELECT count(*) FROM event_listeners_eventlog";
    assert_eq!(db.scalar(runs).await, 2 * BACKLOG, "one run per listener");
    let logged = "SELECT count(*) FROM event_listeners_messagelog";
    assert_eq!(db.scalar(logged).await, BACKLOG);
    assert!(cursor(db).await >= newest_stored(db).await, "all committed");
}

async fn a_large_response_is_committed_chunk_by_chunk_while_it_arrives(backend: Backend) {
    let mut app = polling_app(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let gate = BodyGate::default();
    let polls = || {
        let requests = fake.requests();
        requests.iter().filter(|r| r.path == "/events").count()
    };
    release_backlog(
        &fake,
        BodyFault::Stall {
            after: MID_BODY,
            gate: gate.clone(),
        },
    )
    .await;
    // Counted once the poll that takes the backlog is parked (it made the
    // acknowledgement `release_backlog` waited for): polls made while the
    // earlier ones were held are not new polls of the stalled response.
    let polls_before = polls();

    // The first chunks are committed, and acknowledged in the cursor, while
    // the response is still open: the body stalls half-way.
    let open = || gate.stalled() && polls() == polls_before;
    assert!(
        eventually(WAIT, || async { inbox(&db).await >= 1000 && open() }).await,
        "chunks are committed before the body ends"
    );
    let stored = inbox(&db).await;
    assert!(stored < BACKLOG, "{stored}: the rest is not sent yet");
    assert!(
        eventually(WAIT, || async {
            cursor(&db).await == newest_stored(&db).await
        })
        .await,
        "the cursor moves with each committed chunk"
    );
    assert!(
        open(),
        "the response is still open, and no new poll was made"
    );

    gate.release();
    assert!(eventually(WAIT, || async { inbox(&db).await == BACKLOG }).await);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 2 * BACKLOG
        })
        .await
    );
    app.stop().await.expect("clean stop");
    assert_backlog_once(&db).await;
    let newest = newest_stored(&db).await;
    let acked = fake.requests().into_iter().filter(|r| r.path == "/events");
    let acked = acked.filter_map(|r| r.last_event_id).max();
    assert!(acked >= Some(newest), "the next poll acknowledges it all");
}

both_backends!(a_large_response_is_committed_chunk_by_chunk_while_it_arrives =>
    a_large_response_is_committed_chunk_by_chunk_while_it_arrives_on_sqlite,
    a_large_response_is_committed_chunk_by_chunk_while_it_arrives_on_postgres);

async fn a_body_cut_half_way_keeps_what_was_committed_and_fetches_the_rest(backend: Backend) {
    let mut app = polling_app(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    release_backlog(&fake, BodyFault::Cut { after: MID_BODY }).await;
    assert!(eventually(WAIT, || async { inbox(&db).await == BACKLOG }).await);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 2 * BACKLOG
        })
        .await
    );
    let metrics = app.metrics().await;
    app.stop().await.expect("clean stop");
    assert_backlog_once(&db).await;

    // The poll after the cut acknowledged the committed part, and the rest
    // came in its response.
    let acks: Vec<i64> = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/events")
        .filter_map(|r| r.last_event_id)
        .collect();
    assert!(
        acks.iter().any(|a| (999..BACKLOG - 1).contains(a)),
        "after the cut the daemon asked from its committed cursor: {acks:?}"
    );
    assert_eq!(fake.register_count(), 1, "the queue is kept");
    let failed = metrics.sample(
        "zulip_event_listeners_poll_errors_total",
        &[("reason", "transport")],
    );
    assert_eq!(failed, Some(1.0), "the cut is one failed poll");
}

both_backends!(a_body_cut_half_way_keeps_what_was_committed_and_fetches_the_rest =>
    a_body_cut_half_way_keeps_what_was_committed_and_fetches_the_rest_on_sqlite,
    a_body_cut_half_way_keeps_what_was_committed_and_fetches_the_rest_on_postgres);

#[tokio::test]
async fn a_slow_body_outlasting_the_long_poll_timeout_is_read_to_its_end() {
    // The daemon gives a poll 1 + 5 s; the body takes about 8 s, but its
    // bytes keep coming.
    let fake = FakeOptions {
        longpoll_timeout_seconds: 1,
        heartbeat: Duration::from_millis(500),
        ..FakeOptions::default()
    };
    let mut app = TestApp::new(Backend::Sqlite, fake, "").await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let events = 20_000;
    let queue = hold_polls(&fake).await;
    fake.shape_events_bodies(vec![BodyFault::Slow {
        piece: 16 * 1024,
        delay: Duration::from_millis(100),
    }]);
    fake.push_synthetic(&queue, events, |id| {
        format!(r#"{{"type":"typing","op":"start","id":{id},"sender":{{"user_id":7}}}}"#)
    });
    fake.hold_polls(false);
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'typing'",
            )
            .await
                == events
        })
        .await
    );
    let metrics = app.metrics().await;
    app.stop().await.expect("clean stop");
    assert_eq!(
        poll_errors(&metrics),
        0.0,
        "the slow body was never abandoned"
    );
}

/// Event texts as a server may write them: escapes where a serializer
/// would write the character, spaces, nested arrays, a raw emoji.
fn odd_event(id: i64) -> String {
    match id % 3 {
        0 => format!(
            r#"{{ "type" : "custom", "id" : {id}, "s" : "caf\u00e9 \"q\" \\ \/ \ud83d\ude00 😀", "n" : [[1, [2, []]], {{"a": [{{}}]}}] }}"#
        ),
        1 => format!(r#"{{"id":{id},"type":"custom","big":1.50e+3,"neg":-0,"t":true,"z":null}}"#),
        _ => format!(
            "{{\"type\":\"custom\",\n\t\"id\":{id},\"nested\":{{\"x\":[\"]\",\"}}\",\"\\\\\"]}}}}"
        ),
    }
}

async fn envelope_keys_in_any_order_and_odd_event_bytes_are_kept_byte_for_byte(backend: Backend) {
    let mut app = polling_app(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let orders: [&[&str]; 3] = [
        &["queue_id", "events", "msg", "result"],
        &["events", "result", "msg"],
        &["msg", "result", "queue_id", "events"],
    ];
    let mut expected = Vec::new();
    for (round, order) in orders.iter().enumerate() {
        fake.set_envelope_order(Some(order));
        let queue = hold_polls(&fake).await;
        let first = newest_stored(&db).await.max(cursor(&db).await) + 1;
        expected.extend((first..first + 3).map(odd_event));
        fake.push_synthetic(&queue, 3, odd_event);
        fake.hold_polls(false);
        let want = expected.len() as i64;
        assert!(
            eventually(WAIT, || async { inbox(&db).await == want }).await,
            "round {round} ({order:?}) is stored"
        );
    }
    app.stop().await.expect("clean stop");
    let stored: Vec<String> = db
        .text_pairs("SELECT raw, op FROM event_listeners_inbox ORDER BY event_id")
        .await
        .into_iter()
        .map(|(raw, _)| raw)
        .collect();
    assert_eq!(stored, expected);
}

both_backends!(envelope_keys_in_any_order_and_odd_event_bytes_are_kept_byte_for_byte =>
    envelope_keys_in_any_order_and_odd_event_bytes_are_kept_byte_for_byte_on_sqlite,
    envelope_keys_in_any_order_and_odd_event_bytes_are_kept_byte_for_byte_on_postgres);
