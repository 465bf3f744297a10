//! `run --role ingest` (issue 16) against the real PostgreSQL and RabbitMQ
//! with the fake Zulip: the fence refuses an old epoch's writes; messages
//! reach the partitions, each conversation in order, each once; a cut
//! broker holds publishing, not intake; a standby takes over from a killed
//! leader without a gap; SQLite is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use sqlx::Connection;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::config::Role;
use zulip_event_listeners::listeners::Registry;
use zulip_event_listeners::store::{Cursor, Origin, StoreError, StoreOptions};

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

fn ingest() -> RunOptions {
    RunOptions {
        role: Role::Ingest,
        ..RunOptions::default()
    }
}

/// One message read from a partition.
#[derive(Debug)]
struct Delivered {
    partition: u32,
    inbox_id: i64,
    message_id: i64,
    topic: String,
}

/// Every message ready in the test's partitions, taken off them (with a
/// consumer: single-active-consumer queues refuse basic.get).
async fn drain(broker: &TestBroker) -> Vec<Delivered> {
    use futures::StreamExt;
    let conn = broker.connect().await;
    let mut out = Vec::new();
    for k in 0..broker.partitions {
        let queue = broker.queue(k);
        let ready = broker.ready(&queue).await;
        if ready == 0 {
            continue;
        }
        let channel = conn.create_channel().await.expect("a channel");
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "test-drain".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("basic.consume");
        for _ in 0..ready {
            let m = tokio::time::timeout(WAIT, consumer.next())
                .await
                .expect("a delivery in time")
                .expect("the consumer is open")
                .expect("a delivery");
            let headers = m.properties.headers().clone().expect("headers");
            let inbox_id = match headers.inner().get("zel-inbox-id") {
                Some(AMQPValue::LongLongInt(v)) => *v,
                other => panic!("zel-inbox-id header: {other:?}"),
            };
            let body: Value = serde_json::from_slice(&m.data).expect("a JSON event");
            out.push(Delivered {
                partition: k,
                inbox_id,
                message_id: body["message"]["id"].as_i64().expect("a message event"),
                topic: body["message"]["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        let _ = channel.close(200, "drained".into()).await;
    }
    let _ = conn.close(200, "drained".into()).await;
    out
}

/// The lease row: (epoch, holder, published_through).
async fn lease_row(url: &str) -> Option<(i64, Option<String>, i64)> {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_as("SELECT epoch, holder, published_through FROM event_listeners_leader")
        .fetch_optional(&mut c)
        .await
        .expect("the lease row")
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(sql).fetch_one(&mut c).await.expect(sql)
}

/// Each conversation (topic) on one partition, its messages in order.
fn assert_conversation_order(delivered: &[Delivered]) {
    let mut by_topic: BTreeMap<&str, Vec<&Delivered>> = BTreeMap::new();
    for d in delivered {
        by_topic.entry(d.topic.as_str()).or_default().push(d);
    }
    for (topic, ds) in by_topic {
        let partitions: BTreeSet<u32> = ds.iter().map(|d| d.partition).collect();
        assert_eq!(partitions.len(), 1, "topic {topic} on one partition");
        let ids: Vec<i64> = ds.iter().map(|d| d.message_id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "topic {topic} in order");
    }
}

#[tokio::test]
async fn an_old_epochs_appends_cursor_writes_and_publishes_are_refused() {
    let db = TestDb::new(Backend::Postgres).await;
    let opts = StoreOptions::default();
    let old = open_migrated(&db.url, &opts).await;
    let new = open_migrated(&db.url, &opts).await;
    let lease = Duration::from_secs(10);
    let first = old
        .lead("org", "old", lease)
        .await
        .expect("lead")
        .expect("free");
    assert_eq!(first.epoch(), 1);
    assert!(
        new.lead("org", "new", lease).await.expect("ask").is_none(),
        "the lock is held: the other stands by"
    );
    let origin = Origin::Queue("q".into());
    let cursor = |id| Cursor {
        site: "https://z".into(),
        queue_id: "q".into(),
        last_event_id: id,
        last_message_id: None,
    };
    old.append("org", &origin, &[message_event(1)], Some(&cursor(1)))
        .await
        .expect("the leader appends");
    // The old leader's lock connection dies; the other takes over.
    first.release().await;
    let second = new
        .lead("org", "new", lease)
        .await
        .expect("lead")
        .expect("free now");
    assert_eq!(second.epoch(), 2);

    let err = old
        .append("org", &origin, &[message_event(2)], Some(&cursor(2)))
        .await
        .expect_err("the old epoch's append is refused");
    assert!(
        matches!(
            err,
            StoreError::Fenced {
                mine: 1,
                current: 2
            }
        ),
        "{err}"
    );
    let err = old
        .append("org", &origin, &[], Some(&cursor(3)))
        .await
        .expect_err("the old epoch's cursor write is refused");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let err = old.mark_published("org", 1, 1).await.expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let stored = new
        .load_cursor("org")
        .await
        .expect("cursor")
        .expect("a cursor");
    assert_eq!(
        stored.last_event_id, 1,
        "nothing of the old epoch committed"
    );
    assert_eq!(
        scalar(&db.url, "SELECT count(*) FROM event_listeners_inbox").await,
        1
    );

    new.append("org", &origin, &[message_event(2)], Some(&cursor(2)))
        .await
        .expect("the new leader appends");
    let batch = new.outbox_after("org", 0, 10).await.expect("the outbox");
    assert_eq!(batch.events.len(), 2);
    new.mark_published("org", 2, batch.through)
        .await
        .expect("advances");
    let row = new.leader_row("org").await.expect("row").expect("a row");
    assert_eq!(
        (row.epoch, row.published_through, row.outbox_depth),
        (2, batch.through, 0)
    );
    second.release().await;
    drop((old, new));
    db.drop_db().await;
}

#[tokio::test]
async fn messages_reach_the_partitions_each_conversation_in_order_each_once() {
    let broker = TestBroker::new(4).await;
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), &broker.section()).await;
    app.db.migrate().await;
    app.start(Registry::builtin(), ingest()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let mut sent = Vec::new();
    for i in 0..40 {
        let topic = format!("t{}", i % 5);
        sent.push(fake.send_channel_message(7, "u@x", "general", &topic, &format!("m{i}")));
    }
    assert!(
        eventually(WAIT, || async { broker.ready_in_partitions().await == 40 }).await,
        "40 messages published, found {}",
        broker.ready_in_partitions().await
    );
    let delivered = drain(&broker).await;
    let ids: BTreeSet<i64> = delivered.iter().map(|d| d.message_id).collect();
    assert_eq!(delivered.len(), 40, "each once");
    assert_eq!(ids, sent.iter().copied().collect(), "every message");
    assert_conversation_order(&delivered);
    let max_inbox = delivered
        .iter()
        .map(|d| d.inbox_id)
        .max()
        .unwrap_or_default();
    let url = app.db.url.clone();
    assert!(
        eventually(WAIT, || async {
            lease_row(&url)
                .await
                .is_some_and(|(_, _, through)| through == max_inbox)
        })
        .await,
        "published_through catches up"
    );
    let health = app.health().await.body;
    let d = &health["distributed"];
    assert_eq!(d["role"], "ingest", "{health}");
    assert_eq!(d["leadership"], "leading", "{health}");
    assert_eq!(
        (d["epoch"].as_i64(), d["partitions"].as_i64()),
        (Some(1), Some(4)),
        "{health}"
    );
    assert_eq!(d["outbox_depth"], 0, "{health}");
    let config = app.setup.config_path.display().to_string();
    let list = zel(&["--config", &config, "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("role ingest led by host=")
            && text.contains("(epoch 1,")
            && text.contains("outbox depth 0"),
        "{text}"
    );
    let m = app.metrics().await;
    assert_eq!(
        m.first("zulip_event_listeners_distributed_leader"),
        Some(1.0)
    );
    assert_eq!(
        m.first("zulip_event_listeners_distributed_published_total"),
        Some(40.0)
    );
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_cut_broker_holds_publishing_not_intake_and_loses_nothing() {
    let broker = TestBroker::new(2).await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().expect("an address")).await;
    let section = broker
        .section()
        .replace("127.0.0.1:5672", &proxy.addr().to_string());
    assert!(section.contains(&proxy.addr().to_string()), "{section}");
    let mut app = TestApp::new(Backend::Postgres, FakeOptions::default(), &section).await;
    app.db.migrate().await;
    app.start(Registry::builtin(), ingest()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    fake.send_channel_message(7, "u@x", "general", "before", "m0");
    assert!(eventually(WAIT, || async { broker.ready_in_partitions().await == 1 }).await);

    proxy.cut();
    let mut sent = BTreeSet::new();
    for i in 0..20 {
        sent.insert(fake.send_channel_message(7, "u@x", "general", "during", &format!("m{i}")));
    }
    let url = app.db.url.clone();
    assert!(
        eventually(WAIT, || async {
            scalar(&url, "SELECT count(*) FROM event_listeners_inbox").await == 21
        })
        .await,
        "intake goes on into the inbox while the broker is cut"
    );
    let queue = fake.queue_ids().pop().expect("a queue");
    assert!(
        eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await,
        "Zulip is acknowledged"
    );
    assert_eq!(
        broker.ready_in_partitions().await,
        1,
        "nothing published meanwhile"
    );

    proxy.restore();
    assert!(
        eventually(WAIT, || async { broker.ready_in_partitions().await >= 21 }).await,
        "everything is published once the broker is back"
    );
    let delivered = drain(&broker).await;
    let ids: BTreeSet<i64> = delivered.iter().map(|d| d.message_id).collect();
    assert!(sent.is_subset(&ids), "0 lost: {sent:?} in {ids:?}");
    assert_conversation_order(&delivered);
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_standby_takes_over_a_killed_leader_with_a_higher_epoch_and_no_gap() {
    let broker = TestBroker::new(2).await;
    let app = TestApp::new(Backend::Postgres, FakeOptions::default(), &broker.section()).await;
    app.db.migrate().await;
    let config = &app.setup.config_path;
    let log = app.setup.dir.path().join("stderr.log");
    let mut a = spawn_daemon_with_role(config, &log);
    let url = app.db.url.clone();
    assert!(
        eventually(WAIT, || async { lease_row(&url).await.is_some() }).await,
        "one leads: {}",
        stderr_of(&log)
    );
    let fake = app.fake.clone();
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the leader registers its queue: {}",
        stderr_of(&log)
    );
    let mut b = spawn_daemon_with_role(config, &log);
    let mut sent = BTreeSet::new();
    for i in 0..10 {
        sent.insert(fake.send_channel_message(7, "u@x", "general", "t", &format!("a{i}")));
    }
    assert!(
        eventually(WAIT, || async { broker.ready_in_partitions().await == 10 }).await,
        "published before the kill: {}",
        stderr_of(&log)
    );
    let (epoch, holder, _) = lease_row(&url).await.expect("a leader");
    let holder = holder.expect("a holder");
    let (leader, standby) = if holder.ends_with(&format!("pid={}", a.id())) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(
        holder.ends_with(&format!("pid={}", leader.id())),
        "{holder}"
    );
    signal(leader, "-KILL");
    wait_exit(leader, WAIT).await.expect("killed");
    for i in 0..10 {
        sent.insert(fake.send_channel_message(7, "u@x", "general", "t", &format!("b{i}")));
    }
    let standby_pid = format!("pid={}", standby.id());
    assert!(
        eventually(WAIT, || async {
            lease_row(&url)
                .await
                .is_some_and(|(e, h, _)| e > epoch && h.is_some_and(|h| h.ends_with(&standby_pid)))
        })
        .await,
        "the standby leads with a higher epoch: {}",
        stderr_of(&log)
    );
    assert!(
        eventually(WAIT, || async { broker.ready_in_partitions().await >= 20 }).await,
        "every message reaches the partitions: {}",
        stderr_of(&log)
    );
    let delivered = drain(&broker).await;
    let ids: BTreeSet<i64> = delivered.iter().map(|d| d.message_id).collect();
    assert_eq!(ids, sent, "no gap");
    assert_eq!(fake.register_count(), 1, "the stored queue was resumed");
    signal(standby, "-TERM");
    wait_exit(standby, WAIT).await.expect("stops");
}

fn spawn_daemon_with_role(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the stderr log");
    std::process::Command::new(bin())
        .args([
            "--config",
            &config.display().to_string(),
            "run",
            "--role",
            "ingest",
        ])
        .stdout(std::process::Stdio::null())
        .env("RUST_LOG", "warn")
        .stderr(log)
        .spawn()
        .expect("spawn the daemon")
}

#[tokio::test]
async fn ingest_on_sqlite_exits_2_saying_it_needs_postgres() {
    let broker = TestBroker::new(1).await;
    let app = TestApp::new(Backend::Sqlite, FakeOptions::default(), &broker.section()).await;
    let config = app.setup.config_path.display().to_string();
    let out = zel(&["--config", &config, "run", "--role", "ingest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs PostgreSQL"), "{stderr}");
}
