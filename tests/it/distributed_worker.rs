//! `run --role worker` against the real RabbitMQ and PostgreSQL. The
//! ingest is not used: each test stores events with the public store API
//! and publishes them as the ingest does (`TestBroker::publish`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::config::Role;
use zulip_event_listeners::event::Event;
use zulip_event_listeners::store::Store;

use crate::support::fake_zulip::FakeOptions;
use crate::support::{
    eventually, message_event, registry_with_test_listeners, Backend, Produced, TestApp, TestBroker,
};

const WAIT: Duration = Duration::from_secs(30);

fn worker() -> RunOptions {
    RunOptions {
        role: Role::Worker,
        ..RunOptions::default()
    }
}

/// A worker's app on a fresh, migrated PostgreSQL database, with the
/// counting listener.
async fn app(broker: &TestBroker) -> TestApp {
    let extra = format!(
        "[listeners]\nenabled = [\"counting\"]\n{}",
        broker.section()
    );
    let app = TestApp::new(Backend::Postgres, FakeOptions::default(), &extra).await;
    app.db.migrate().await;
    app
}

/// Stores `n` message events from event id `first` on and returns them
/// with their inbox ids.
async fn store_events(store: &std::sync::Arc<dyn Store>, first: i64, n: i64) -> Vec<(i64, Event)> {
    let events: Vec<Event> = (first..first + n).map(message_event).collect();
    let ids = crate::support::append_events(store, "default", &events).await;
    ids.into_iter().zip(events).collect()
}

async fn publish(broker: &TestBroker, events: &[(i64, Event)]) {
    let produced: Vec<Produced<'_>> = events
        .iter()
        .map(|(id, e)| Produced {
            inbox_id: *id,
            event: e,
            partition: (*id as u32) % broker.partitions,
        })
        .collect();
    broker.publish("default", &produced).await;
}

async fn logged(app: &TestApp) -> i64 {
    app.db
        .scalar("SELECT count(*) FROM event_listeners_eventlog")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_runs_each_event_once_records_it_and_acks_it() {
    let broker = TestBroker::new(4).await;
    let mut app = app(&broker).await;
    let store = app.db.store().await;
    let events = store_events(&store, 1, 40).await;
    publish(&broker, &events).await;
    let (registry, counter) = registry_with_test_listeners();
    app.start(registry, worker()).await;
    let acked = eventually(WAIT, || async {
        app.metrics()
            .await
            .first("zulip_event_listeners_distributed_acks_total")
            == Some(40.0)
    })
    .await;
    assert!(
        acked,
        "every delivery acked; ran {}",
        counter.load(Ordering::SeqCst)
    );
    app.stop().await.expect("a clean stop");
    assert_eq!(counter.load(Ordering::SeqCst), 40, "each event ran once");
    assert_eq!(logged(&app).await, 40, "each run recorded once");
    assert_eq!(
        broker.ready_in_partitions().await,
        0,
        "nothing left or requeued"
    );
    let watermark = app
        .db
        .try_scalar(
            "SELECT dispatched_through FROM event_listeners_dispatched WHERE instance = 'default'",
        )
        .await;
    assert!(
        matches!(watermark, None | Some(0)),
        "a worker writes no watermark: {watermark:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_again_after_its_runs_are_recorded_is_acked_without_running() {
    let broker = TestBroker::new(2).await;
    let mut app = app(&broker).await;
    let store = app.db.store().await;
    let events = store_events(&store, 1, 1).await;
    let (registry, counter) = registry_with_test_listeners();
    app.start(registry, worker()).await;
    publish(&broker, &events).await;
    let acks = |n: f64| {
        let app = &app;
        async move {
            eventually(WAIT, || async {
                app.metrics()
                    .await
                    .first("zulip_event_listeners_distributed_acks_total")
                    == Some(n)
            })
            .await
        }
    };
    assert!(acks(1.0).await, "the first copy acked");
    // The same event again (a republish after a lost confirm, or a
    // redelivery), and twice at once.
    publish(&broker, &events).await;
    assert!(acks(2.0).await, "the second copy acked");
    let (id, event) = &events[0];
    let twice = [
        (*id, Event::parse(event.raw()).expect("an event")),
        (*id, Event::parse(event.raw()).expect("an event")),
    ];
    publish(&broker, &twice).await;
    assert!(acks(4.0).await, "both copies acked");
    app.stop().await.expect("a clean stop");
    assert_eq!(counter.load(Ordering::SeqCst), 1, "the listener ran once");
    assert_eq!(logged(&app).await, 1, "one recorded run");
    assert_eq!(broker.ready_in_partitions().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_split_the_partitions_and_each_event_runs_once() {
    let broker = TestBroker::new(6).await;
    let mut a = app(&broker).await;
    let extra = format!(
        "[listeners]\nenabled = [\"counting\"]\n{}",
        broker.section()
    );
    let mut b = a.beside(&extra);
    let (registry_a, counter_a) = registry_with_test_listeners();
    let (registry_b, counter_b) = registry_with_test_listeners();
    a.start(registry_a, worker()).await;
    b.start(registry_b, worker()).await;
    async fn consumed(app: &TestApp) -> f64 {
        app.metrics()
            .await
            .first("zulip_event_listeners_distributed_partitions_consumed")
            .unwrap_or(0.0)
    }
    let split = eventually(WAIT, || async {
        let (x, y) = (consumed(&a).await, consumed(&b).await);
        x > 0.0 && y > 0.0 && x + y == 6.0
    })
    .await;
    assert!(
        split,
        "each consumes some, together all: {} + {}",
        consumed(&a).await,
        consumed(&b).await
    );
    let partitions = |h: &serde_json::Value| -> Vec<u64> {
        h["organizations"][0]["worker"]["partitions"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p.as_u64()).collect())
            .unwrap_or_default()
    };
    let (ha, hb) = (a.health().await.body, b.health().await.body);
    let mut both = [partitions(&ha), partitions(&hb)].concat();
    both.sort_unstable();
    assert_eq!(both, (0..6).collect::<Vec<u64>>(), "/health: {ha} / {hb}");
    assert_eq!(ha["organizations"][0]["worker"]["role"], "worker");
    // `list` names both workers and the partitions each consumes (the
    // binary does not know the test listener).
    let text = std::fs::read_to_string(&a.setup.config_path).expect("the config");
    let path = a.setup.dir.path().join("list.toml");
    std::fs::write(
        &path,
        text.replace("[\"counting\"]", "[\"message_logger\"]"),
    )
    .expect("the list config");
    let config = path.display().to_string();
    let list = crate::support::zel(&["--config", &config, "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("2 worker(s) alive:"),
        "{text}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let mut listed: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_once("consumes partitions "))
        .flat_map(|(_, ps)| {
            ps.trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, (0..6).collect::<Vec<u32>>(), "{text}");
    let store = a.db.store().await;
    let events = store_events(&store, 1, 60).await;
    publish(&broker, &events).await;
    let all = eventually(WAIT, || async { logged(&a).await == 60 }).await;
    assert!(all, "every event recorded: {}", logged(&a).await);
    b.stop().await.expect("b stops");
    a.stop().await.expect("a stops");
    let (x, y) = (
        counter_a.load(Ordering::SeqCst),
        counter_b.load(Ordering::SeqCst),
    );
    assert_eq!(x + y, 60, "each event ran once in all");
    assert!(x > 0 && y > 0, "both workers ran events: {x} and {y}");
    assert_eq!(logged(&a).await, 60, "no run recorded twice");
    assert_eq!(broker.ready_in_partitions().await, 0);
}

/// A channel message in conversation `topic`, event id `id`.
pub(crate) fn message_in(id: i64, topic: usize) -> Event {
    Event::parse(&format!(
        r#"{{"type":"message","id":{id},"message":{{"id":{},"type":"stream","sender_id":3,"sender_email":"s@x","display_recipient":"general","subject":"t{topic}","timestamp":1790000000,"content":"hello {id}"}},"flags":[]}}"#,
        id + 1000
    ))
    .expect("an event")
}
