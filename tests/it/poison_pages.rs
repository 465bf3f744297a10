//! Poison pages (issue 13, items 3 to 6): a `GET /events` body with bytes
//! that are not UTF-8 in one event, a repeated event id, elements without
//! a usable id or type, or a 200 whose `result` is `"error"`. Intake never
//! stops on one: the innocent events of the page are stored and run once,
//! each poison element is stored (in the inbox, flagged, or in
//! `event_listeners_quarantine`) in the same commit, and an error result
//! is neither stored nor acknowledged. The fake serves these pages as raw
//! bytes ([`BodyFault::Raw`]) built from the events it queued while
//! delivery was held, so that the daemon's acknowledgements match its ids.

use std::time::Duration;

use serde_json::{json, Value};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{BodyFault, FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);
const QUARANTINED: &str = "zulip_event_listeners_events_quarantined_total";

/// The daemon with the built-in listeners, its queue registered and
/// delivery held, so that what the test queues arrives as one page.
async fn started(backend: Backend) -> TestApp {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    fake.hold_delivery(true);
    app
}

/// The events queued on the daemon's (only) queue, with their ids.
fn queued(fake: &FakeZulip) -> Vec<Value> {
    let queues = fake.queue_ids();
    assert_eq!(queues.len(), 1, "{queues:?}");
    fake.events(&queues[0]).expect("the queue")
}

/// Queues `n` events of type `placeholder` and returns their ids.
fn placeholders(fake: &FakeZulip, n: usize) -> Vec<i64> {
    for k in 0..n {
        fake.push_event(json!({"type": "placeholder", "n": k}));
    }
    let events = queued(fake);
    let ids: Vec<i64> = events
        .iter()
        .filter(|e| e["type"] == "placeholder")
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), n);
    ids
}

/// A success body whose `events` are `elements`, as bytes.
fn page(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut body = br#"{"result":"success","msg":"","events":["#.to_vec();
    for (k, e) in elements.iter().enumerate() {
        if k > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(br#"],"queue_id":"q"}"#);
    body
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Serves `bodies` as the next bodies with events, and releases delivery.
fn serve(fake: &FakeZulip, bodies: Vec<Vec<u8>>) {
    fake.shape_events_bodies(bodies.into_iter().map(BodyFault::Raw).collect());
    fake.hold_delivery(false);
}

/// `(kind, event id, reason, raw)` of every quarantined row, in order.
async fn quarantine(db: &TestDb) -> Vec<(String, Option<i64>, String, String)> {
    db.rows("SELECT kind, event_id, reason, raw FROM event_listeners_quarantine ORDER BY id")
        .await
}

/// Whether the daemon acknowledged through `id` (a poll sent it).
fn acknowledged(fake: &FakeZulip, id: i64) -> bool {
    fake.requests()
        .iter()
        .any(|r| r.path == "/events" && r.last_event_id == Some(id))
}

both_backends!(invalid_utf8_in_one_event_is_stored_lossily_with_its_bytes_and_the_page_goes_on =>
    invalid_utf8_in_one_event_is_stored_lossily_with_its_bytes_and_the_page_goes_on_on_sqlite,
    invalid_utf8_in_one_event_is_stored_lossily_with_its_bytes_and_the_page_goes_on_on_postgres);

async fn invalid_utf8_in_one_event_is_stored_lossily_with_its_bytes_and_the_page_goes_on(
    backend: Backend,
) {
    let mut app = started(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    for topic in ["t1", "t2", "t3"] {
        fake.send_channel_message(10, "a@example.com", "general", topic, "hello");
    }
    let events: Vec<Value> = queued(&fake);
    let messages: Vec<&Value> = events.iter().filter(|e| e["type"] == "message").collect();
    let poisoned_id = messages[1]["id"].as_i64().unwrap();
    let mut poisoned = bytes(messages[1]);
    let at = poisoned.windows(5).position(|w| w == b"hello").unwrap();
    poisoned.splice(at + 3..at + 3, *b"\xff\xfe");
    let elements: Vec<Vec<u8>> = events
        .iter()
        .map(|e| match e["id"].as_i64() {
            Some(id) if id == poisoned_id => poisoned.clone(),
            _ => bytes(e),
        })
        .collect();
    serve(&fake, vec![page(&elements)]);

    // Every message is stored and logged, the poisoned one decoded lossily.
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 3
        })
        .await,
        "the page is stored, not re-polled for ever"
    );
    let lossy = count(
        &db,
        &format!("SELECT count(*) FROM event_listeners_inbox WHERE event_id = {poisoned_id} AND raw LIKE '%hel\u{FFFD}\u{FFFD}lo%'"),
    )
    .await;
    assert_eq!(lossy, 1);
    // Its exact bytes are in quarantine, flagged with the byte offset.
    let rows = quarantine(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (kind, event_id, reason, _) = &rows[0];
    assert_eq!(
        (kind.as_str(), *event_id),
        ("invalid_utf8", Some(poisoned_id))
    );
    assert!(reason.starts_with("not UTF-8 at byte"), "{reason}");
    let kept: Vec<(Vec<u8>,)> = db
        .rows("SELECT raw_bytes FROM event_listeners_quarantine")
        .await;
    assert_eq!(kept, [(poisoned,)]);
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(QUARANTINED, &[("reason", "invalid_utf8")]),
        Some(1.0)
    );
    assert!(!app.is_finished(), "intake goes on");
    app.stop().await.expect("clean stop");
}

both_backends!(a_repeated_event_id_runs_only_the_stored_copy_and_quarantines_the_other =>
    a_repeated_event_id_runs_only_the_stored_copy_and_quarantines_the_other_on_sqlite,
    a_repeated_event_id_runs_only_the_stored_copy_and_quarantines_the_other_on_postgres);

async fn a_repeated_event_id_runs_only_the_stored_copy_and_quarantines_the_other(backend: Backend) {
    let mut app = started(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let ids: Vec<i64> = ["one", "two", "three", "four"]
        .into_iter()
        .map(|topic| fake.send_channel_message(10, "a@example.com", "general", topic, "x"))
        .collect();
    let events = queued(&fake);
    let messages: Vec<&Value> = events.iter().filter(|e| e["type"] == "message").collect();
    // [m1, m1 again (the same), m2, m3 under m2's event id, m4]
    let mut copy = messages[2].clone();
    copy["id"] = messages[1]["id"].clone();
    let elements = vec![
        bytes(messages[0]),
        bytes(messages[0]),
        bytes(messages[1]),
        bytes(&copy),
        bytes(messages[3]),
    ];
    serve(&fake, vec![page(&elements)]);

    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM event_listeners_messagelog WHERE message_id = {}",
                    ids[3]
                ),
            )
            .await
                == 1
        })
        .await
    );
    let app_done = || async {
        count(&db, "SELECT count(*) FROM event_listeners_inbox i WHERE NOT EXISTS (SELECT 1 FROM event_listeners_eventlog l WHERE l.inbox_id = i.id)").await == 0
    };
    assert!(
        eventually(WAIT, app_done).await,
        "every stored event has run"
    );
    let logged = db
        .pairs("SELECT message_id, inbox_id FROM event_listeners_messagelog ORDER BY message_id")
        .await;
    let logged_ids: Vec<i64> = logged.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        logged_ids,
        [ids[0], ids[1], ids[3]],
        "m3 is not run against m2's row"
    );
    let twice = count(&db, "SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) > 1) d").await;
    assert_eq!(twice, 0, "one run per (inbox row, listener)");
    let rows = quarantine(&db).await;
    assert_eq!(rows.len(), 1, "the identical copy is dropped: {rows:?}");
    let (kind, event_id, reason, raw) = &rows[0];
    let repeated = messages[1]["id"].as_i64();
    assert_eq!((kind.as_str(), *event_id), ("repeated_id", repeated));
    assert_eq!(reason, &format!("repeated event id {}", repeated.unwrap()));
    assert!(raw.contains("three"), "{raw}");
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(QUARANTINED, &[("reason", "repeated_id")]),
        Some(1.0)
    );
    app.stop().await.expect("clean stop");
}

both_backends!(a_repeated_event_id_across_the_chunks_of_one_page_is_quarantined =>
    a_repeated_event_id_across_the_chunks_of_one_page_is_quarantined_on_sqlite,
    a_repeated_event_id_across_the_chunks_of_one_page_is_quarantined_on_postgres);

async fn a_repeated_event_id_across_the_chunks_of_one_page_is_quarantined(backend: Backend) {
    let mut app = started(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    // More than a chunk (1,000 events): the copies come in the second.
    let ids = placeholders(&fake, 1001);
    let events = queued(&fake);
    let mut elements: Vec<Vec<u8>> = events.iter().map(bytes).collect();
    let mut changed = json!({"type": "placeholder", "n": "changed"});
    changed["id"] = json!(ids[5]);
    elements.push(bytes(&changed));
    elements.push(bytes(
        &events.iter().find(|e| e["id"] == ids[6]).unwrap().clone(),
    ));
    serve(&fake, vec![page(&elements)]);

    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_quarantine WHERE kind = 'repeated_id'",
            )
            .await
                == 1
        })
        .await,
        "the changed copy is kept aside"
    );
    let placeholders = count(
        &db,
        "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'placeholder'",
    )
    .await;
    assert_eq!(placeholders, 1001);
    let rows = quarantine(&db).await;
    assert_eq!(rows.len(), 1, "the identical copy is dropped: {rows:?}");
    assert_eq!(rows[0].1, Some(ids[5]));
    assert!(rows[0].3.contains("changed"), "{rows:?}");
    let first: Vec<(String,)> = db
        .rows(&format!(
            "SELECT raw FROM event_listeners_inbox WHERE event_id = {}",
            ids[5]
        ))
        .await;
    assert!(!first[0].0.contains("changed"), "the first copy wins");
    app.stop().await.expect("clean stop");
}

both_backends!(elements_without_a_usable_id_or_type_are_kept_with_their_chunk =>
    elements_without_a_usable_id_or_type_are_kept_with_their_chunk_on_sqlite,
    elements_without_a_usable_id_or_type_are_kept_with_their_chunk_on_postgres);

async fn elements_without_a_usable_id_or_type_are_kept_with_their_chunk(backend: Backend) {
    let mut app = started(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let ids = placeholders(&fake, 4);
    let odd_type = format!(r#"{{"type":5,"id":{}}}"#, ids[1]);
    let odd_op = format!(r#"{{"type":"reaction","op":7,"id":{}}}"#, ids[2]);
    let elements: Vec<Vec<u8>> = [
        format!(r#"{{"type":"placeholder","id":{}}}"#, ids[0]),
        odd_type.clone(),
        r#"{"type":"x","id":1.5}"#.into(),
        r#"{"type":"x","id":"7"}"#.into(),
        r#"{"type":"x"}"#.into(),
        "5".into(),
        r#""two""#.into(),
        odd_op.clone(),
        format!(r#"{{"type":"placeholder","id":{}}}"#, ids[3]),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    serve(&fake, vec![page(&elements)]);

    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await == 4
        })
        .await,
        "the events with an id are stored"
    );
    let malformed: Vec<(i64, String)> = db
        .rows("SELECT event_id, raw FROM event_listeners_inbox WHERE event_type = 'malformed' ORDER BY event_id")
        .await;
    assert_eq!(malformed, [(ids[1], odd_type), (ids[2], odd_op)]);
    // Those without an id are in quarantine, committed with their chunk.
    let rows: Vec<(String, String)> = quarantine(&db)
        .await
        .into_iter()
        .map(|(kind, _, _, raw)| (kind, raw))
        .collect();
    let expected = [
        ("no_id", r#"{"type":"x","id":1.5}"#),
        ("no_id", r#"{"type":"x","id":"7"}"#),
        ("no_id", r#"{"type":"x"}"#),
        ("not_an_object", "5"),
        ("not_an_object", r#""two""#),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect();
    assert_eq!(rows, expected);
    assert!(
        eventually(WAIT, || async { acknowledged(&fake, ids[3]) }).await,
        "the page is acknowledged"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(QUARANTINED, &[("reason", "no_id")]),
        Some(3.0)
    );
    assert_eq!(
        metrics.sample(QUARANTINED, &[("reason", "not_an_object")]),
        Some(2.0)
    );
    app.stop().await.expect("clean stop");
}

both_backends!(a_success_status_with_an_error_result_is_neither_stored_nor_acknowledged =>
    a_success_status_with_an_error_result_is_neither_stored_nor_acknowledged_on_sqlite,
    a_success_status_with_an_error_result_is_neither_stored_nor_acknowledged_on_postgres);

async fn a_success_status_with_an_error_result_is_neither_stored_nor_acknowledged(
    backend: Backend,
) {
    let mut app = started(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let ids = placeholders(&fake, 1);
    let event = format!(r#"{{"type":"from_error","id":{}}}"#, ids[0]);
    // `result` first (as Zulip writes it), then after the events.
    let first =
        format!(r#"{{"result":"error","msg":"boom","code":"BAD_REQUEST","events":[{event}]}}"#);
    let after = format!(r#"{{"msg":"boom","events":[{event}],"result":"error"}}"#);
    serve(&fake, vec![first.into_bytes(), after.into_bytes()]);

    // Both are refused; the poll is repeated from the same cursor, and the
    // real event, with the same id, is then stored.
    assert!(
        eventually(WAIT, || async {
            count(
                &db,
                "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'placeholder'",
            )
            .await
                == 1
        })
        .await,
        "the event behind the error answers is stored"
    );
    let from_error = count(
        &db,
        "SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'from_error'",
    )
    .await;
    assert_eq!(from_error, 0);
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sample(
            "zulip_event_listeners_poll_errors_total",
            &[("reason", "error_result")]
        ),
        Some(2.0)
    );
    app.stop().await.expect("clean stop");
}
