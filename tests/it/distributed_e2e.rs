//! The whole distributed mode at once (issue 16), every daemon a process
//! of the real binary, on the real PostgreSQL and RabbitMQ (through a TCP
//! proxy the test can cut), the fake Zulip sending a stream of messages
//! over many conversations: two ingests (one leads, one stands by) and two
//! workers, while a worker is SIGKILLed (and comes back), the leader is
//! SIGKILLed (the standby leads), and every broker connection (the
//! ingests' and the workers') is cut and restored. In the end every message's runs are recorded once per
//! listener, no (event, listener) twice, each conversation's runs in inbox
//! order, and the partitions are empty.

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(120);
/// Messages per phase; four phases.
const PHASE: usize = 250;
const TOPICS: usize = 12;

fn spawn(config: &Path, role: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log");
    daemon_command(config)
        .args(["--role", role])
        .env("RUST_LOG", "warn,zulip_event_listeners::distributed=info")
        .stderr(log)
        .spawn()
        .expect("spawn a daemon")
}

fn send(fake: &FakeZulip, from: usize) {
    for i in from..from + PHASE {
        let topic = format!("t{}", i % TOPICS);
        fake.send_channel_message(7, "u@x", "general", &topic, &format!("m{i}"));
    }
}

async fn runs(db: &TestDb) -> i64 {
    db.scalar("SELECT count(*) FROM event_listeners_eventlog")
        .await
}

async fn leader_pid(db: &TestDb) -> Option<u32> {
    let holder: Vec<(Option<String>,)> = db.rows("SELECT holder FROM event_listeners_leader").await;
    let holder = holder.into_iter().next()?.0?;
    holder.rsplit("pid=").next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_a_killed_leader_and_a_cut_broker_lose_nothing_and_double_nothing() {
    let broker = TestBroker::new(4).await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().expect("an address")).await;
    let section = broker
        .section()
        .replace("127.0.0.1:5672", &proxy.addr().to_string());
    let fake = FakeZulip::start(FakeOptions::default()).await;
    let db = TestDb::new(Backend::Postgres).await;
    db.migrate().await;
    let extra = format!(
        "[listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\"]\n{section}"
    );
    let s = setup(Some(&fake), &db.url, &extra);
    let (config, dir) = (&s.config_path, s.dir.path());
    // Every daemon reaches the broker through the proxy.
    let log = dir.join("daemons.log");
    let listeners = 2;

    let mut w1 = spawn(config, "worker", &log);
    let mut w2 = spawn(config, "worker", &log);
    let mut i1 = spawn(config, "ingest", &log);
    let mut i2 = spawn(config, "ingest", &log);
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the leader registers: {}",
        stderr_of(&log)
    );

    // Phase 1, then a worker is killed while it works.
    send(&fake, 0);
    assert!(
        eventually(WAIT, || async { runs(&db).await > 0 }).await,
        "the workers run: {}",
        stderr_of(&log)
    );
    w1.kill().expect("SIGKILL a worker");
    w1.wait().ok();
    // Phase 2; the killed worker comes back.
    send(&fake, PHASE);
    w1 = spawn(config, "worker", &log);

    // The leader is killed; the standby leads.
    let leader = leader_pid(&db).await.expect("a leader");
    let (killed, standby) = if leader == i1.id() {
        (&mut i1, &mut i2)
    } else {
        (&mut i2, &mut i1)
    };
    assert_eq!(killed.id(), leader, "the leader is one of ours");
    killed.kill().expect("SIGKILL the leader");
    killed.wait().ok();
    let standby_pid = standby.id();
    send(&fake, 2 * PHASE);
    assert!(
        eventually(WAIT, || async {
            leader_pid(&db).await == Some(standby_pid)
        })
        .await,
        "the standby leads: {}",
        stderr_of(&log)
    );

    // The broker's connections are cut, then restored.
    proxy.cut();
    send(&fake, 3 * PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    let total = (4 * PHASE * listeners) as i64;
    let all = eventually(Duration::from_secs(240), || async {
        runs(&db).await >= total
    })
    .await;
    if !all {
        let lease: Vec<(i64, i64)> = db
            .rows("SELECT epoch, published_through FROM event_listeners_leader")
            .await;
        let mut ready = Vec::new();
        for k in 0..broker.partitions {
            ready.push(broker.ready(&broker.queue(k)).await);
        }
        panic!(
            "every message's runs: {} of {total}; inbox {} rows, max id {}; lease (epoch, published_through) {lease:?}; ready per partition {ready:?}; workers alive: {:?}\n{}",
            runs(&db).await,
            db.scalar("SELECT count(*) FROM event_listeners_inbox").await,
            db.scalar("SELECT COALESCE(max(id), 0) FROM event_listeners_inbox").await,
            [w1.try_wait().ok().flatten().is_none(), w2.try_wait().ok().flatten().is_none()],
            stderr_of(&log)
        );
    }
    let messages = db
        .scalar("SELECT count(DISTINCT message_id) FROM event_listeners_inbox")
        .await;
    assert_eq!(messages, (4 * PHASE) as i64, "every message stored once");
    let doubled = db
        .scalar("SELECT count(*) FROM (SELECT 1 FROM event_listeners_eventlog GROUP BY inbox_id, listener_name HAVING count(*) > 1) d")
        .await;
    assert_eq!(doubled, 0, "no (event, listener) recorded twice");
    assert_eq!(runs(&db).await, total, "no run more");
    // Per conversation and listener, runs were recorded in inbox order.
    let rows: Vec<(i64, String, String)> = db
        .rows("SELECT e.inbox_id, e.listener_name, i.raw::json->'message'->>'subject' FROM event_listeners_eventlog e JOIN event_listeners_inbox i ON i.id = e.inbox_id ORDER BY e.id, e.timestamp, e.inbox_id")
        .await;
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for (inbox_id, listener, topic) in rows {
        let prev = last.insert((listener.clone(), topic.clone()), inbox_id);
        assert!(
            prev.is_none_or(|p| p < inbox_id),
            "{listener} on {topic}: {inbox_id} recorded after {prev:?}"
        );
    }
    assert!(
        eventually(WAIT, || async { broker.ready_in_partitions().await == 0 }).await,
        "nothing left in the partitions"
    );
    for child in [&mut w1, &mut w2, &mut i1, &mut i2] {
        if child.try_wait().ok().flatten().is_none() {
            signal(child, "-TERM");
            wait_exit(child, Duration::from_secs(60)).await;
        }
    }
}
