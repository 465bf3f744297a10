//! The distributed scenarios, against the real RabbitMQ and PostgreSQL,
//! every daemon a child process of the release binary:
//!
//! - the worker curve: one `--role ingest` and 1, 2, 4 and 8
//!   `--role worker` processes over a backlog of messages in 1,000
//!   conversations, one webhook
//!   listener whose receiver answers after 50 ms (I/O-bound work): events/s
//!   from the first recorded run to the last;
//! - leader failover: two ingests (one leads, one stands by) and a worker
//!   while messages arrive at a steady rate; the leader is SIGKILLed,
//!   several times: the time from the last event committed before the
//!   kill to the first committed after it (inbox `received_at`), median.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use sqlx::{Connection, PgConnection};

use super::fake_zulip::{FakeOptions, FakeZulip};
use super::fresh_pg;

/// The receiver's answer delay: a slow service behind the webhook.
const HOOK_DELAY: Duration = Duration::from_millis(50);
/// Partitions of the benchmark's deployments.
const PARTITIONS: u32 = 16;
/// Each worker's concurrent runs (and prefetch).
const CONCURRENCY: usize = 16;
/// Conversations (topics) of the worker curve's backlog.
const CONVERSATIONS: usize = 1_000;

/// When each request the receiver got arrived, by `Idempotency-Key`: a key
/// seen twice is a listener effect repeated (which the key lets a receiver
/// drop).
type Keys = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<Instant>>>>;

/// A receiver that answers 200 after [`HOOK_DELAY`], counting requests by
/// their idempotency key.
async fn slow_receiver() -> (String, Keys) {
    let keys: Keys = Arc::default();
    let counted = keys.clone();
    let app = Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let counted = counted.clone();
        async move {
            let at = Instant::now();
            tokio::time::sleep(HOOK_DELAY).await;
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            counted.lock().unwrap().entry(key).or_default().push(at);
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), keys)
}

fn amqp_url() -> String {
    std::env::var("BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// One deployment's configuration file.
struct Deployment {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    db_url: String,
}

fn deployment(
    fake: &FakeZulip,
    db_url: &str,
    prefix: &str,
    hook_url: &str,
    amqp: &str,
) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let (rc, secret) = (dir.path().join("zuliprc"), dir.path().join("secret"));
    super::write_zuliprc(&rc, fake);
    super::write_secret(&secret, "bench-secret");
    let config = dir.path().join("config.toml");
    let text = format!(
        "[zulip]\nzuliprc = \"{rc}\"\n[database]\nurl = \"{db_url}\"\n[http]\nbind = \"off\"\n\
         [logging]\nlevel = \"warn\"\n[performance]\nmax_concurrent_handlers = {CONCURRENCY}\n\
         [listeners]\nenabled = [\"hook\"]\n[listeners.hook]\nkind = \"webhook\"\nurl = \"{hook_url}\"\n\
         secret_file = \"{secret}\"\n[distributed]\namqp_url = \"{amqp}\"\npartitions = {PARTITIONS}\n\
         prefix = \"{prefix}\"\nlease_seconds = 3\n",
        rc = rc.display(),
        secret = secret.display(),
    );
    std::fs::write(&config, text).unwrap();
    Deployment {
        dir,
        config,
        db_url: db_url.to_owned(),
    }
}

impl Deployment {
    fn spawn(&self, role: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_zulip-event-listeners"))
            .args(["--config", &self.config.display().to_string()])
            .args(["run", "--role", role])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .current_dir(self.dir.path())
            .spawn()
            .unwrap()
    }

    async fn scalar(&self, q: &str) -> i64 {
        let mut c = PgConnection::connect(&self.db_url).await.unwrap();
        let v: Option<i64> = sqlx::query_scalar(q).fetch_one(&mut c).await.ok();
        let _ = c.close().await;
        v.unwrap_or(0)
    }
}

/// Deletes a deployment's queues and exchanges from the broker.
async fn clean_broker(prefix: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    let mut queues: Vec<String> = (0..PARTITIONS)
        .map(|k| format!("{prefix}.partition.{k}"))
        .collect();
    queues.push(format!("{prefix}.dead"));
    for q in queues {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for x in [format!("{prefix}.events"), format!("{prefix}.dlx")] {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = conn.close(200, "benchmark done".into()).await;
}

fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let _ = child.wait();
}

const RUNS: &str = "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'hook'";

/// Events/s through `workers` worker processes over `n` queued messages.
pub(super) async fn workers_run(workers: usize, n: usize) -> f64 {
    let url = fresh_pg("zel_bench_dist").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        ..FakeOptions::default()
    })
    .await;
    // Many conversations (as in a busy organization): with few, their
    // lanes, not the workers, would bound the parallelism.
    let queue = super::register_queue(&fake).await;
    for i in 0..n {
        let topic = format!("topic {}", i % CONVERSATIONS);
        fake.send_channel_message(
            100,
            "user100@example.com",
            "general",
            &topic,
            &super::content(i),
        );
    }
    super::resume_at(&url, &fake, &queue).await;
    let (hook_url, _requests) = slow_receiver().await;
    let prefix = format!("zb{}", std::process::id() as usize * 16 + workers);
    let d = deployment(&fake, &url, &prefix, &hook_url, &amqp_url());
    let mut children: Vec<Child> = (0..workers).map(|_| d.spawn("worker")).collect();
    // The workers first, so the partitions have consumers when the
    // backlog is published.
    tokio::time::sleep(Duration::from_secs(2)).await;
    children.push(d.spawn("ingest"));
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut start = None;
    loop {
        let runs = d.scalar(RUNS).await as usize;
        if start.is_none() && runs > 0 {
            start = Some(Instant::now());
        }
        if runs >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
    for c in &mut children {
        kill(c, "-TERM");
    }
    clean_broker(&prefix).await;
    n as f64 / elapsed
}

/// A fresh database `db` resuming a new, empty queue on a fake Zulip, a
/// slow receiver, and a deployment on them under a prefix starting `tag`.
async fn live_deployment(
    db: &str,
    tag: &str,
    amqp: &str,
) -> (Arc<FakeZulip>, Deployment, String, Keys) {
    let url = fresh_pg(db).await;
    let fake = Arc::new(
        FakeZulip::start(FakeOptions {
            heartbeat: Duration::from_secs(1),
            ..FakeOptions::default()
        })
        .await,
    );
    super::queued_backlog(&url, &fake, 0).await;
    let (hook_url, keys) = slow_receiver().await;
    let prefix = format!("{tag}{}", std::process::id());
    let d = deployment(&fake, &url, &prefix, &hook_url, amqp);
    (fake, d, prefix, keys)
}

/// Seconds from the last event committed before a leader's SIGKILL to the
/// first committed after it, for each of `kills` kills.
pub(super) async fn failover(kills: usize) -> Vec<f64> {
    let (fake, d, prefix, _keys) = live_deployment("zel_bench_failover", "zf", &amqp_url()).await;
    let mut worker = d.spawn("worker");
    let mut a = d.spawn("ingest");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut b = d.spawn("ingest");
    // A steady stream: 100 messages a second.
    let feeding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let (fake, feeding) = (fake.clone(), feeding.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while feeding.load(Ordering::Relaxed) {
                super::push_messages(&fake, i, 1);
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut gaps = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let leader = d
            .scalar("SELECT COALESCE(max(epoch), 0) FROM event_listeners_leader")
            .await;
        let killed_at = chrono::Utc::now();
        kill(&mut a, "-KILL");
        // The standby leads within the lease; wait for a new epoch and
        // for events committed after the kill.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let epoch = d
                .scalar("SELECT COALESCE(max(epoch), 0) FROM event_listeners_leader")
                .await;
            if epoch > leader {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut c = PgConnection::connect(&d.db_url).await.unwrap();
        let gap: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM
                 (SELECT min(received_at) FROM event_listeners_inbox WHERE received_at > $1)
               - (SELECT max(received_at) FROM event_listeners_inbox WHERE received_at <= $1))::float8",
        )
        .bind(killed_at)
        .fetch_one(&mut c)
        .await
        .ok()
        .flatten();
        let _ = c.close().await;
        gaps.push(gap.unwrap_or(f64::NAN));
        // The killed one comes back as the new standby.
        std::mem::swap(&mut a, &mut b);
        b = d.spawn("ingest");
    }
    feeding.store(false, Ordering::Relaxed);
    let _ = feeder.await;
    for c in [&mut a, &mut b, &mut worker] {
        kill(c, "-TERM");
    }
    clean_broker(&prefix).await;
    gaps
}

/// What the faults scenario found.
pub(super) struct Faults {
    pub(super) messages: usize,
    pub(super) lost: i64,
    pub(super) doubled: i64,
    pub(super) out_of_order: i64,
    /// Webhook requests the receiver got, distinct keys, keys seen twice.
    pub(super) requests: u64,
    pub(super) effects: usize,
    pub(super) effects_doubled: usize,
    /// For each fault, the keys seen twice whose first request came in the
    /// 2 s before it (the runs it cut short between POST and commit).
    pub(super) doubled_by_fault: Vec<(&'static str, usize)>,
    pub(super) seconds: f64,
}

fn rabbitmqctl(args: &[&str]) {
    let _ = Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `n` messages streamed through two ingests and two workers while a
/// worker is SIGKILLed (and restarted), the leader is SIGKILLed,
/// RabbitMQ itself is stopped and started (`rabbitmqctl stop_app` /
/// `start_app`), and every broker connection is cut through a proxy:
/// messages with no recorded run, (event, listener) pairs
/// recorded twice, and runs recorded out of their conversation's order.
pub(super) async fn faults(n: usize) -> Faults {
    // Every daemon reaches the broker through a proxy the run cuts.
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = super::tcp_proxy::TcpProxy::start(broker).await;
    let amqp = amqp_url().replace("127.0.0.1:5672", &proxy.addr().to_string());
    let (fake, d, prefix, keys) = live_deployment("zel_bench_faults", "zx", &amqp).await;
    let mut w1 = d.spawn("worker");
    let mut w2 = d.spawn("worker");
    let mut i1 = d.spawn("ingest");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut i2 = d.spawn("ingest");
    let started = Instant::now();
    let mut faults: Vec<(&'static str, Instant)> = Vec::new();
    // The stream: 1,000 messages a second.
    let feeder = {
        let fake = fake.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while i < n {
                let k = 50.min(n - i);
                super::push_messages(&fake, i, k);
                i += k;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    faults.push(("the worker SIGKILL", Instant::now()));
    kill(&mut w1, "-KILL");
    w1 = d.spawn("worker");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let holder: Option<String> = {
        let mut c = PgConnection::connect(&d.db_url).await.unwrap();
        let h = sqlx::query_scalar("SELECT holder FROM event_listeners_leader")
            .fetch_optional(&mut c)
            .await
            .ok()
            .flatten()
            .flatten();
        let _ = c.close().await;
        h
    };
    let leader_is_i1 = holder.is_some_and(|h| h.ends_with(&format!("pid={}", i1.id())));
    faults.push(("the leader SIGKILL", Instant::now()));
    if leader_is_i1 {
        kill(&mut i1, "-KILL");
        i1 = d.spawn("ingest");
    } else {
        kill(&mut i2, "-KILL");
        i2 = d.spawn("ingest");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    faults.push(("the RabbitMQ stop", Instant::now()));
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    rabbitmqctl(&["start_app"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    faults.push(("the connection cut", Instant::now()));
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let _ = feeder.await;
    let deadline = Instant::now() + Duration::from_secs(900);
    while (d.scalar(RUNS).await as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Redeliveries still in flight may add a doubled run: let them settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seconds = started.elapsed().as_secs_f64();
    let lost = d
        .scalar(
            "SELECT count(*) FROM event_listeners_inbox i WHERE NOT EXISTS
               (SELECT 1 FROM event_listeners_eventlog e WHERE e.inbox_id = i.id AND e.listener_name = 'hook')",
        )
        .await;
    let doubled = d
        .scalar(
            "SELECT count(*) FROM (SELECT 1 FROM event_listeners_eventlog WHERE listener_name = 'hook'
               GROUP BY inbox_id HAVING count(*) > 1) x",
        )
        .await;
    let out_of_order = d
        .scalar(
            "SELECT count(*) FROM (SELECT e.inbox_id, lag(e.inbox_id) OVER (
                 PARTITION BY (i.raw::json->'message'->>'display_recipient') || '/' || COALESCE(i.raw::json->'message'->>'subject', '')
                 ORDER BY e.id) AS prev
               FROM event_listeners_eventlog e JOIN event_listeners_inbox i ON i.id = e.inbox_id
               WHERE e.listener_name = 'hook') x WHERE prev > inbox_id",
        )
        .await;
    let messages = d
        .scalar("SELECT count(DISTINCT message_id) FROM event_listeners_inbox")
        .await as usize;
    for c in [&mut w1, &mut w2, &mut i1, &mut i2] {
        kill(c, "-TERM");
    }
    clean_broker(&prefix).await;
    let (requests, effects, effects_doubled, doubled_by_fault) = {
        let keys = keys.lock().unwrap();
        let twice: Vec<Instant> = keys
            .values()
            .filter(|at| at.len() > 1)
            .map(|at| at[0])
            .collect();
        let by_fault = faults
            .iter()
            .map(|(what, t)| {
                let n = twice
                    .iter()
                    .filter(|&&first| first <= *t && *t - first <= Duration::from_secs(2))
                    .count();
                (*what, n)
            })
            .collect();
        (
            keys.values().map(|at| at.len() as u64).sum(),
            keys.len(),
            twice.len(),
            by_fault,
        )
    };
    Faults {
        doubled_by_fault,
        requests,
        effects,
        effects_doubled,
        messages,
        lost: lost + n.saturating_sub(messages) as i64,
        doubled,
        out_of_order,
        seconds,
    }
}
