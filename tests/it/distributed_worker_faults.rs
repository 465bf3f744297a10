//! Workers as processes of the real binary (`run --role worker`) on the
//! real RabbitMQ and PostgreSQL through faults: a worker SIGKILLed
//! mid-stream, and the workers' own broker connections cut mid-stream
//! through a TCP proxy. The events are stored with the public store API
//! and published as the ingest does.

use std::time::Duration;

use zulip_event_listeners::event::Event;

use crate::distributed_worker::message_in;
use crate::support::fake_zulip::FakeOptions;
use crate::support::{eventually, Backend, Produced, TestBroker};

const WAIT: Duration = Duration::from_secs(30);

/// Messages in the stream, over `TOPICS` conversations.
const EVENTS: i64 = 200;
const TOPICS: usize = 10;

/// A database, a configuration whose one listener is a slow exec (so runs
/// are in flight at any moment) and the workers' logs.
struct Stream {
    db: crate::support::TestDb,
    setup: crate::support::Setup,
    _fake: crate::support::fake_zulip::FakeZulip,
}

impl Stream {
    /// The workers reach the broker at `amqp` (a proxy, say) if given.
    async fn new(broker: &TestBroker, amqp: Option<String>) -> Stream {
        use crate::support::fake_zulip::FakeZulip;
        use crate::support::{setup, TestDb};
        let fake = FakeZulip::start(FakeOptions::default()).await;
        let db = TestDb::new(Backend::Postgres).await;
        db.migrate().await;
        let mut section = broker.section();
        if let Some(addr) = amqp {
            section = section.replace("127.0.0.1:5672", &addr);
        }
        let extra = format!(
            "[listeners]\nenabled = [\"slow\"]\n[listeners.slow]\nkind = \"exec\"\ncommand = [\"sleep\", \"0.03\"]\nevent_types = [\"message\"]\n{section}"
        );
        let setup = setup(Some(&fake), &db.url, &extra);
        Stream {
            db,
            setup,
            _fake: fake,
        }
    }

    /// Worker `n` as a process, logging to `worker{n}.log`.
    fn spawn(&self, n: usize) -> std::process::Child {
        let log = std::fs::File::create(self.setup.dir.path().join(format!("worker{n}.log")))
            .expect("log");
        crate::support::daemon_command(&self.setup.config_path)
            .args(["--role", "worker"])
            .env("RUST_LOG", "warn")
            .stderr(log)
            .spawn()
            .expect("spawn a worker")
    }

    fn logs(&self) -> String {
        (1..=2)
            .map(|n| {
                std::fs::read_to_string(self.setup.dir.path().join(format!("worker{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Stores the stream and publishes it, each conversation to one partition.
    async fn publish(&self, broker: &TestBroker) {
        let store = self.db.store().await;
        let events: Vec<Event> = (1..=EVENTS)
            .map(|i| message_in(i, i as usize % TOPICS))
            .collect();
        let ids = crate::support::append_events(&store, "default", &events).await;
        let produced: Vec<Produced<'_>> = ids
            .iter()
            .zip(&events)
            .enumerate()
            .map(|(i, (id, e))| Produced {
                inbox_id: *id,
                event: e,
                partition: (((i + 1) % TOPICS) as u32) % broker.partitions,
            })
            .collect();
        broker.publish("default", &produced).await;
    }

    /// Waits until `n` runs are recorded; fails saying `what` otherwise.
    async fn reach(&self, broker: &TestBroker, n: i64, what: &str) {
        let reached = eventually(Duration::from_secs(120), || async {
            self.count().await >= n
        })
        .await;
        assert!(
            reached,
            "{what}: {} of {EVENTS} runs, {} ready in the partitions\n{}",
            self.count().await,
            broker.ready_in_partitions().await,
            self.logs()
        );
    }

    async fn count(&self) -> i64 {
        self.db
            .scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await
    }

    /// Every event's run recorded once, each conversation's in inbox
    /// order, and nothing left in the partitions.
    async fn assert_once_in_order(&self, broker: &TestBroker) {
        assert_eq!(self.count().await, EVENTS, "no run recorded twice");
        let doubled = self.db
            .scalar("SELECT count(*) FROM (SELECT inbox_id FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) > 1) d")
            .await;
        assert_eq!(doubled, 0, "no (event, listener) recorded twice");
        let rows: Vec<(i64, String)> = self.db
            .rows("SELECT e.inbox_id, i.raw::json->'message'->>'subject' FROM event_listeners_eventlog e JOIN event_listeners_inbox i ON i.id = e.inbox_id ORDER BY e.id, e.timestamp, e.inbox_id")
            .await;
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        for (inbox_id, topic) in rows {
            let prev = last.insert(topic.clone(), inbox_id).unwrap_or(0);
            assert!(
                prev < inbox_id,
                "conversation {topic}: {inbox_id} recorded after {prev}"
            );
        }
        assert!(
            eventually(WAIT, || async { broker.ready_in_partitions().await == 0 }).await,
            "nothing left in the partitions: {}\n{}",
            broker.ready_in_partitions().await,
            self.logs()
        );
    }

    /// Stops the workers (SIGTERM), which requeues whatever they did not
    /// ack: nothing may come back.
    async fn stop(&self, broker: &TestBroker, workers: &mut [&mut std::process::Child]) {
        for w in workers.iter_mut() {
            crate::support::signal(w, "-TERM");
            crate::support::wait_exit(w, Duration::from_secs(30)).await;
        }
        assert_eq!(
            broker.ready_in_partitions().await,
            0,
            "every delivery acked before the workers stopped\n{}",
            self.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_loses_nothing_doubles_nothing_and_keeps_conversation_order() {
    let broker = TestBroker::new(4).await;
    let stream = Stream::new(&broker, None).await;
    let mut a = stream.spawn(1);
    let mut b = stream.spawn(2);
    stream.publish(&broker).await;
    stream
        .reach(&broker, EVENTS / 4, "the workers run events")
        .await;
    a.kill().expect("SIGKILL worker 1");
    a.wait().ok();
    stream
        .reach(&broker, EVENTS, "the other worker takes over")
        .await;
    stream.assert_once_in_order(&broker).await;
    stream.stop(&broker, &mut [&mut b]).await;
}

/// The workers' own connections cut three times mid-stream, with runs in
/// flight: those finish and are recorded, the lost acks' redeliveries are
/// skipped as recorded, the workers reconnect and take up the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_whose_broker_connections_are_cut_mid_stream_lose_nothing_and_double_nothing() {
    use crate::support::TcpProxy;
    let broker = TestBroker::new(4).await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().expect("an address")).await;
    let stream = Stream::new(&broker, Some(proxy.addr().to_string())).await;
    let mut a = stream.spawn(1);
    let mut b = stream.spawn(2);
    stream.publish(&broker).await;
    for quarter in 1..=3 {
        let what = format!("the workers run events before cut {quarter}");
        stream.reach(&broker, quarter * EVENTS / 4, &what).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.restore();
    }
    stream
        .reach(&broker, EVENTS, "the workers reconnect and finish")
        .await;
    stream.assert_once_in_order(&broker).await;
    stream.stop(&broker, &mut [&mut a, &mut b]).await;
}
