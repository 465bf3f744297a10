//! The pipeline benchmark: `cargo bench --bench pipeline [-- --events N --soak N]`.
//!
//! In one run, against the fake Zulip server of the test support and the
//! real daemon binary (a child process, so its memory and CPU are its own):
//!
//! 1. a backlog of N realistic ~1 KB message events, available at once, on
//!    PostgreSQL, then SQLite, then in dry-run: events/s end to end (until
//!    every listener run is committed), peak resident memory, CPU seconds
//!    per 100,000 events;
//! 2. a raw `COPY` of the same inbox rows into a scratch table: the
//!    physical baseline the PostgreSQL figure is compared with;
//! 3. a fixed offered load of 5,000 events/s for 10 s on PostgreSQL: p50/p99
//!    from an event being pushed into the queue to the commit of its last
//!    listener run (observed with LISTEN/NOTIFY from a bench-only trigger,
//!    delivered at commit);
//! 4. a soak of `--soak` events (default 1,000,000) at the daemon's own
//!    pace with a bounded queue: resident memory after the first 100,000
//!    and at the end;
//! 5. events/s with 1, 4 and 16 listeners (the daemon in-process, extra
//!    listeners doing no I/O but each logging its runs);
//! 6. a single `GET /events` response of `--big` events (default
//!    1,000,000, ~1.3 GB of JSON, generated as the fake writes it) on
//!    PostgreSQL: the daemon's peak resident memory (`VmHWM`) and events/s
//!    from its start to the commit of the last run.
//! 7. events/s with 1, 4 and 16 webhook instances POSTing every event to
//!    a local receiver (`pipeline/webhooks.rs`).
//! 8. runs/s through one persistent exec child in Python (`exec.rs`).
//! 9. the Python-client peer (`peer.rs`, `benches/python_peer.py`): the
//!    official `zulip` package and one `psycopg` INSERT per event, on the
//!    same fake Zulip and PostgreSQL server.
//!
//! 10. the distributed mode on the real RabbitMQ (`distributed.rs`): one
//!     ingest and 1, 2, 4 and 8 worker processes over a backlog in 1,000
//!     conversations with a webhook answering after 50 ms (events/s, and
//!     the speed-up over one worker); 20,000 messages through two ingests
//!     and two workers while a worker and the leader are SIGKILLed,
//!     RabbitMQ is stopped and started and every broker connection is cut
//!     through a proxy (lost, run twice, out of order, and the webhook
//!     requests the receiver got by `Idempotency-Key`); and the leader
//!     failover time over several SIGKILLs.
//!
//! Beside events/s, each scenario prints the PostgreSQL server's CPU µs per
//! event and the daemon's (`cpu.rs`, from `/proc`), and the daemon's rate
//! as a share of `COPY` and a multiple of the peer's.
//! `-- --only pg,copy,peer` runs only the scenarios named (pg, copy,
//! pg-enc, sqlite, sqlite-enc, dry, latency, listeners, webhooks, exec,
//! soak, big, peer, distributed; copy runs pg too); `--peer-events N` sets the peer's
//! backlog (default: `--events`, at most 30,000).
//!
//! Every figure is with `synchronous_commit` on and acknowledgement after commit.

#[path = "pipeline/big_response.rs"]
mod big_response;
#[path = "pipeline/cpu.rs"]
mod cpu;
#[path = "../tests/it/support/fake_zulip.rs"]
mod fake_zulip;
#[path = "pipeline/peer.rs"]
mod peer;
#[allow(dead_code)]
#[path = "../tests/it/support/tcp_proxy.rs"]
mod tcp_proxy;
#[path = "pipeline/webhooks.rs"]
mod webhooks;

#[path = "pipeline/exec.rs"]
mod exec;

#[path = "pipeline/distributed.rs"]
mod distributed;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fake_zulip::{FakeOptions, FakeZulip};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use zulip_event_listeners::app::{Application, RunOptions};
use zulip_event_listeners::config::{Backend, Config, DatabaseUrl};
use zulip_event_listeners::event::Event;
use zulip_event_listeners::listeners::{Context, Listener, ListenerError, Record, Registry};
use zulip_event_listeners::store::{self, Cursor, Origin};

struct Args {
    events: usize,
    soak: usize,
    big: usize,
    peer: Option<usize>,
    only: Option<Vec<String>>,
}

impl Args {
    /// Whether scenario `name` is to run (every one without `--only`).
    fn runs(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == name))
    }
}

fn args() -> Args {
    let mut a = Args {
        events: 100_000,
        soak: 1_000_000,
        big: 1_000_000,
        peer: None,
        only: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    for w in argv.windows(2) {
        match w[0].as_str() {
            "--events" => a.events = w[1].parse().expect("--events N"),
            "--soak" => a.soak = w[1].parse().expect("--soak N"),
            "--big" => a.big = w[1].parse().expect("--big N"),
            "--peer-events" => a.peer = Some(w[1].parse().expect("--peer-events N")),
            "--only" => a.only = Some(w[1].split(',').map(str::to_owned).collect()),
            _ => {}
        }
    }
    a
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn fresh_pg(name: &str) -> String {
    let admin = admin_url();
    let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("the benchmark needs PostgreSQL at {admin} (set TEST_DATABASE_URL): {e}")
    });
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let base = &admin[..admin.rfind('/').unwrap()];
    format!("{base}/{name}")
}

/// ~1 KB of realistic message text.
fn content(i: usize) -> String {
    let words = [
        "deploy",
        "the",
        "release",
        "branch",
        "looks",
        "good",
        "but",
        "staging",
        "needs",
        "a",
        "migration",
        "first",
        "could",
        "someone",
        "review",
        "PR",
        "before",
        "lunch",
        "thanks",
        "team",
    ];
    let mut s = format!("Message {i}: ");
    let mut k = i;
    while s.len() < 950 {
        s.push_str(words[k % words.len()]);
        s.push(' ');
        k = k.wrapping_mul(31).wrapping_add(7);
    }
    s
}

fn push_messages(fake: &FakeZulip, from: usize, n: usize) {
    for i in from..from + n {
        let sender = 100 + (i % 50) as i64;
        let email = format!("user{sender}@example.com");
        if i % 5 == 0 {
            fake.send_direct_message(sender, &email, &[200 + (i % 7) as i64], &content(i));
        } else {
            fake.send_channel_message(
                sender,
                &email,
                ["general", "engineering", "support", "random"][i % 4],
                &format!("topic {}", i % 40),
                &content(i),
            );
        }
    }
}

/// Registers a queue as the bot, the way the daemon would, and returns its id.
async fn register_queue(fake: &FakeZulip) -> String {
    let client = reqwest::Client::new();
    let v: serde_json::Value = client
        .post(format!("{}/api/v1/register", fake.site()))
        .basic_auth(fake.email(), Some(fake.api_key()))
        .form(&[
            (
                "event_types",
                r#"["message","reaction","presence","typing"]"#,
            ),
            (
                "client_capabilities",
                r#"{"notification_settings_null":true}"#,
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["queue_id"].as_str().unwrap().to_owned()
}

struct Scenario {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    db_url: Option<String>,
}

/// A PostgreSQL store at `url`, migrated, whose cursor stands at the start
/// of a new queue on `fake` holding `n` messages: the daemon started on it
/// resumes that queue and takes the backlog.
async fn queued_backlog(url: &str, fake: &FakeZulip, n: usize) {
    let queue = register_queue(fake).await;
    push_messages(fake, 0, n);
    resume_at(url, fake, &queue).await;
}

/// Migrates the store at `url` and sets its cursor at the start of `queue`
/// on `fake`, as after an outage: the daemon resumes that queue.
async fn resume_at(url: &str, fake: &FakeZulip, queue: &str) {
    let s = store::open(&url.parse().unwrap(), &Default::default())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    let cursor = Cursor {
        site: format!("{}/api/v1/", fake.site()),
        queue_id: queue.to_owned(),
        last_event_id: -1,
        last_message_id: None,
    };
    s.append(
        "default",
        &Origin::Queue(queue.to_owned()),
        &[],
        Some(&cursor),
    )
    .await
    .unwrap();
}

/// Writes the zuliprc of `fake`'s bot at `path`, owner-only.
fn write_zuliprc(path: &std::path::Path, fake: &FakeZulip) {
    write_secret(
        path,
        &format!(
            "[api]\nemail={}\nkey={}\nsite={}\n",
            fake.email(),
            fake.api_key(),
            fake.site()
        ),
    );
}

/// Writes a secret file readable by its owner only, as the daemon demands.
fn write_secret(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A config for `fake` on `db_url`; with `encrypted`, the inbox, listener
/// data and replies are encrypted at rest.
fn write_config(fake: &FakeZulip, db_url: Option<&str>, port: u16, encrypted: bool) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("zuliprc");
    write_zuliprc(&rc, fake);
    let protection = if encrypted {
        let keys = dir.path().join("keys");
        write_secret(&keys, &"ab".repeat(32));
        format!(
            "[data_protection]\nencrypt_sensitive_data = true\nkey_file = \"{}\"\n",
            keys.display()
        )
    } else {
        String::new()
    };
    let db = db_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("unused.db").display()));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{db}\"\n[http]\nbind = \"127.0.0.1:{port}\"\n[logging]\nlevel = \"warn\"\n{protection}",
            rc.display()
        ),
    )
    .unwrap();
    Scenario {
        dir,
        config,
        db_url: db_url.map(str::to_owned),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory (bytes) and CPU seconds of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((rss_kb * 1024, ticks / 100.0))
}

/// Anonymous resident memory (the heap and stacks, without the binary's
/// code pages, which are file-backed and shared), in bytes.
fn rss_anon(pid: u32) -> Option<u64> {
    status_kb(pid, "RssAnon:").map(|kb| kb * 1024)
}

/// The peak resident memory of a process over its life (`VmHWM`, kept by
/// the kernel: exact, not sampled), in bytes.
fn rss_peak(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:").map(|kb| kb * 1024)
}

/// A `kB` field of `/proc/PID/status`.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn scrape(port: u16, metric: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut sum = 0.0;
    let mut found = false;
    for line in text.lines() {
        if line.starts_with(metric)
            && (line.as_bytes().get(metric.len()) == Some(&b' ')
                || line.as_bytes().get(metric.len()) == Some(&b'{'))
        {
            sum += line.rsplit(' ').next()?.parse::<f64>().ok()?;
            found = true;
        }
    }
    found.then_some(sum)
}

struct Measured {
    events_per_s: f64,
    peak_rss: u64,
    cpu_per_100k: f64,
    /// PostgreSQL server CPU µs per event (from the first event received).
    server_us: f64,
    /// The daemon's CPU µs per event (from the first event received).
    daemon_us: f64,
}

/// Runs the daemon binary on a backlog of `n` events and measures it.
async fn backlog_run(
    label: &str,
    n: usize,
    db_url: Option<&str>,
    dry_run: bool,
    encrypted: bool,
) -> Measured {
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        // The daemon's own speed, not Zulip's rate limit.
        rate_limit: None,
        ..FakeOptions::default()
    })
    .await;
    let port = free_port();
    let sc = write_config(&fake, db_url, port, encrypted);
    let queue = register_queue(&fake).await;
    if !dry_run {
        eprintln!("[{label}] generating {n} events…");
        push_messages(&fake, 0, n);
    }
    if let Some(url) = &sc.db_url {
        // Resume the queue holding the backlog, as after an outage.
        resume_at(url, &fake, &queue).await;
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zulip-event-listeners"));
    cmd.args(["--config", &sc.config.display().to_string(), "run"]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let started = Instant::now();
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut started = started;
    if dry_run {
        // Dry-run keeps no cursor, so it registers its own queue. Hold its
        // polls with a 429 while the queue is filled, so the backlog is
        // there at once when it polls again.
        while fake.register_count() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fake.set_faults(fake_zulip::FaultPlan {
            every: vec![(1, fake_zulip::Fault::RateLimit { retry_after: 3.0 })],
            only_paths: Some(vec!["/events".to_owned()]),
        });
        while !fake.requests().iter().any(|r| r.status == 429) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        push_messages(&fake, 0, n);
        fake.set_faults(fake_zulip::FaultPlan::default());
        started = Instant::now();
    }
    let mut peak = 0u64;
    let mut cpu = 0.0;
    let mut probe = match &sc.db_url {
        Some(url) => Some(Probe::connect(url).await),
        None => None,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    // The clock starts when the daemon has the backlog in hand: the fake
    // server's time to serialize a response of N events (a Zulip server's
    // work, on its own machine in real life) is not the daemon's.
    let mut first_received: Option<Instant> = None;
    let mut window: Option<cpu::Window> = None;
    loop {
        if let Some((rss, c)) = proc_usage(pid) {
            peak = peak.max(rss);
            cpu = c;
        }
        if first_received.is_none()
            && scrape(port, "zulip_event_listeners_events_received_total")
                .await
                .unwrap_or(0.0)
                > 0.0
        {
            first_received = Some(Instant::now());
            window = Some(cpu::Window::start(
                cpu::process_cpu(pid, false).unwrap_or(0.0),
            ));
            eprintln!("[{label}] first event received");
        }
        let done = if dry_run {
            scrape(port, "zulip_event_listeners_events_received_total")
                .await
                .unwrap_or(0.0) as usize
                >= n
        } else {
            match probe.as_mut() {
                Some(p) => p.done(n).await,
                None => false,
            }
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = first_received.unwrap_or(started).elapsed().as_secs_f64();
    let (server_us, daemon_us) = window
        .map(|w| w.per_event(cpu::process_cpu(pid, false).unwrap_or(0.0), n))
        .unwrap_or((f64::NAN, f64::NAN));
    eprintln!(
        "[{label}] {:.2} s from spawn, {elapsed:.2} s from the first event received",
        started.elapsed().as_secs_f64()
    );
    // Where the time went, from the daemon's own histograms.
    if let Ok(text) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        if let Ok(text) = text.text().await {
            for line in text.lines().filter(|l| {
                l.starts_with("zulip_event_listeners_database_write_duration_seconds_sum")
                    || l.starts_with("zulip_event_listeners_database_write_duration_seconds_count")
            }) {
                eprintln!("[{label}] {line}");
            }
        }
    }
    if let Some((rss, c)) = proc_usage(pid) {
        peak = peak.max(rss);
        cpu = c;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    drop(sc.dir);
    Measured {
        events_per_s: n as f64 / elapsed,
        peak_rss: peak,
        cpu_per_100k: cpu / n as f64 * 100_000.0,
        server_us,
        daemon_us,
    }
}

/// Whether all `n` inbox events have every run committed, asked on one
/// connection kept open for the whole wait.
///
/// The probe must not load the database it measures: a `count(*)` over the
/// inbox every 20 ms is a full scan of a table growing to hundreds of MB, and
/// a new connection each time is a new server process. So the cheap
/// necessary condition comes first (ids start at 1, so `max(id) >= n` before
/// `n` rows can exist; both read one index entry), and the exact count runs
/// only once that holds.
enum Probe {
    Pg(PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

const PROBE_CHEAP: &str = "SELECT COALESCE((SELECT max(id) FROM event_listeners_inbox), 0), \
     COALESCE((SELECT dispatched_through FROM event_listeners_dispatched WHERE instance = 'default'), 0)";
const PROBE_COUNT: &str = "SELECT count(*) FROM event_listeners_inbox";

impl Probe {
    async fn connect(url: &str) -> Probe {
        let url: DatabaseUrl = url.parse().unwrap();
        match url.options() {
            Backend::Sqlite(o) => {
                Probe::Sqlite(sqlx::SqliteConnection::connect_with(o).await.unwrap())
            }
            Backend::Postgres(o) => Probe::Pg(PgConnection::connect_with(o).await.unwrap()),
        }
    }

    async fn one(&mut self, q: &str) -> Option<(i64, i64)> {
        match self {
            Probe::Pg(c) => sqlx::query_as(q).fetch_one(c).await.ok(),
            Probe::Sqlite(c) => sqlx::query_as(q).fetch_one(c).await.ok(),
        }
    }

    async fn done(&mut self, n: usize) -> bool {
        let Some((max, through)) = self.one(PROBE_CHEAP).await else {
            return false;
        };
        if (max as usize) < n || through < max {
            return false;
        }
        let count: Option<i64> = match self {
            Probe::Pg(c) => sqlx::query_scalar(PROBE_COUNT).fetch_one(c).await.ok(),
            Probe::Sqlite(c) => sqlx::query_scalar(PROBE_COUNT).fetch_one(c).await.ok(),
        };
        count.is_some_and(|c| c as usize >= n)
    }
}

/// Waits until the machine has settled after a scenario: dirty pages written
/// out, a PostgreSQL checkpoint, and no autovacuum worker busy (up to a
/// minute), so that one scenario's
/// after-work (writing out hundreds of MB of dirty pages, vacuuming the
/// tables it filled) is not measured as part of the next one.
async fn quiesce() {
    // The kernel's write-back of what the last scenario wrote, too.
    let _ = Command::new("sync").status();
    let Ok(mut c) = PgConnection::connect(&admin_url()).await else {
        return;
    };
    let _ = sqlx::query("CHECKPOINT").execute(&mut c).await;
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap_or(0);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Drops a scenario's database once its figures are taken.
async fn drop_pg(name: &str) {
    if let Ok(mut c) = PgConnection::connect(&admin_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}

/// Rows/s of a raw COPY of the inbox rows into an unindexed scratch table,
/// and the server's CPU µs per row.
async fn copy_baseline(url: &str) -> (usize, f64, f64) {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query("DROP TABLE IF EXISTS bench_copy_baseline")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_copy_baseline (LIKE event_listeners_inbox)")
        .execute(&mut c)
        .await
        .unwrap();
    // The same rows, as COPY text, prepared before the clock starts.
    let mut out = Vec::new();
    {
        let mut copy = c.copy_out_raw("COPY event_listeners_inbox (id, instance, queue_id, event_id, event_type, op, message_id, backfilled, raw, received_at) TO STDOUT").await.unwrap();
        use futures::StreamExt;
        while let Some(chunk) = copy.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
    }
    let rows = out.iter().filter(|b| **b == b'\n').count();
    let start = Instant::now();
    let window = cpu::Window::start(0.0);
    let mut tx = c.begin().await.unwrap();
    let mut copy = tx.copy_in_raw("COPY bench_copy_baseline (id, instance, queue_id, event_id, event_type, op, message_id, backfilled, raw, received_at) FROM STDIN").await.unwrap();
    for chunk in out.chunks(1 << 20) {
        copy.send(chunk.to_vec()).await.unwrap();
    }
    copy.finish().await.unwrap();
    tx.commit().await.unwrap();
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    (rows, rate, window.per_event(0.0, rows).0)
}

/// p50/p99 latency (ms) at a fixed offered load on PostgreSQL.
async fn offered_load(rate: usize, seconds: usize) -> (f64, f64, usize) {
    let url = fresh_pg("zel_bench_latency").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        // The daemon's own speed, not Zulip's rate limit.
        rate_limit: None,
        ..FakeOptions::default()
    })
    .await;
    let port = free_port();
    let sc = write_config(&fake, Some(&url), port, false);
    {
        let s = store::open(&url.parse().unwrap(), &Default::default())
            .await
            .unwrap();
        s.migrate().await.unwrap();
    }
    // Bench-only: a statement trigger that NOTIFYs the inbox ids whose runs a
    // transaction commits (on both tables of the event log). Notifications
    // are delivered at commit.
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('bench_commit', (SELECT string_agg(DISTINCT inbox_id::text, ',') FROM new_rows)); RETURN NULL; END $$;
         CREATE FUNCTION bench_notify_compact() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('bench_commit', (SELECT string_agg(DISTINCT i::text, ',') FROM new_rows, unnest(new_rows.inbox_ids) AS i)); RETURN NULL; END $$;
         CREATE TRIGGER bench_notify AFTER INSERT ON event_listeners_eventlog_rows
           REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_notify();
         CREATE TRIGGER bench_notify AFTER INSERT ON event_listeners_eventruns
           REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_compact();",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen("bench_commit").await.unwrap();
    let commits: Arc<std::sync::Mutex<HashMap<i64, Instant>>> = Arc::default();
    let collector = {
        let commits = commits.clone();
        tokio::spawn(async move {
            while let Ok(n) = listener.recv().await {
                let now = Instant::now();
                let mut m = commits.lock().unwrap();
                for id in n.payload().split(',').filter_map(|s| s.parse::<i64>().ok()) {
                    m.insert(id, now); // the last commit of an id wins
                }
            }
        })
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_zulip-event-listeners"))
        .args(["--config", &sc.config.display().to_string(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    while fake.register_count() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rate * seconds;
    let mut pushed: HashMap<i64, Instant> = HashMap::with_capacity(total);
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = rate / 100;
    let mut sent = 0;
    while sent < total {
        let due = start + tick * (sent / per_tick) as u32;
        tokio::time::sleep_until(due.into()).await;
        for i in sent..sent + per_tick {
            let id = fake.send_channel_message(
                100 + (i % 50) as i64,
                "u@example.com",
                "general",
                &format!("t{}", i % 40),
                &content(i),
            );
            pushed.insert(id, Instant::now());
        }
        sent += per_tick;
    }
    // Wait until every message's runs are committed.
    let mut probe = Probe::connect(&url).await;
    while !probe.done(total).await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let map: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, message_id FROM event_listeners_inbox WHERE message_id IS NOT NULL",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let commits = commits.lock().unwrap().clone();
    let mut lat: Vec<f64> = map
        .iter()
        .filter_map(|(inbox, msg)| {
            Some(
                commits
                    .get(inbox)?
                    .duration_since(*pushed.get(msg)?)
                    .as_secs_f64()
                    * 1000.0,
            )
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    collector.abort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (q(0.50), q(0.99), lat.len())
}

/// Resident memory at 100,000 events and at the end of `n` events pushed in
/// chunks that keep the Zulip queue bounded.
async fn soak(n: usize) -> (u64, u64, u64, f64, u64) {
    let url = fresh_pg("zel_bench_soak").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        // The daemon's own speed, not Zulip's rate limit.
        rate_limit: None,
        ..FakeOptions::default()
    })
    .await;
    let port = free_port();
    let sc = write_config(&fake, Some(&url), port, false);
    {
        let s = store::open(&url.parse().unwrap(), &Default::default())
            .await
            .unwrap();
        s.migrate().await.unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_zulip-event-listeners"))
        .args(["--config", &sc.config.display().to_string(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    while fake.register_count() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queue = fake.queue_ids().pop().unwrap();
    let start = Instant::now();
    let (mut at_100k, mut peak_after, mut sent) = (0u64, 0u64, 0usize);
    let mut anon_peak = 0u64;
    let chunk = 1_000;
    while sent < n {
        while fake.pending(&queue).unwrap_or(0) > 2_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        push_messages(&fake, sent, chunk.min(n - sent));
        sent += chunk.min(n - sent);
        if let Some((rss, _)) = proc_usage(pid) {
            if sent >= 100_000 && at_100k == 0 {
                at_100k = rss;
            }
            if sent > 100_000 {
                peak_after = peak_after.max(rss);
                anon_peak = anon_peak.max(rss_anon(pid).unwrap_or(0));
            }
        }
        if sent % 100_000 == 0 {
            eprintln!(
                "[soak] {sent} events pushed, rss {:.1} MB",
                proc_usage(pid).map(|u| u.0).unwrap_or(0) as f64 / 1e6
            );
        }
    }
    let mut probe = Probe::connect(&url).await;
    while !probe.done(n).await {
        if let Some((rss, _)) = proc_usage(pid) {
            peak_after = peak_after.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = proc_usage(pid).map(|u| u.0).unwrap_or(0);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    (
        at_100k,
        peak_after,
        end,
        n as f64 / start.elapsed().as_secs_f64(),
        anon_peak,
    )
}

/// A listener that does no I/O; its runs are still logged.
struct Light(String);

#[async_trait]
impl Listener for Light {
    fn name(&self) -> &str {
        &self.0
    }
    fn description(&self) -> &str {
        "benchmark listener"
    }
    fn event_types(&self) -> &[&str] {
        &["message"]
    }
    async fn handle(&self, event: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        std::hint::black_box(event.message());
        Ok(Vec::new())
    }
}

/// Events/s with `k` listeners (message_logger plus k-1 light ones),
/// in-process, with the server's and this process's CPU µs per event (the
/// process's includes the fake Zulip's serving).
async fn listeners_run(k: usize, n: usize) -> (f64, f64, f64) {
    let url = fresh_pg("zel_bench_listeners").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        // The daemon's own speed, not Zulip's rate limit.
        rate_limit: None,
        ..FakeOptions::default()
    })
    .await;
    queued_backlog(&url, &fake, n).await;
    let mut registry = Registry::builtin();
    let mut names = vec!["message_logger".to_owned()];
    for i in 1..k {
        let name = format!("light_{i}");
        registry.register(Arc::new(Light(name.clone()))).unwrap();
        names.push(name);
    }
    let known: Vec<&str> = registry.names();
    let rc = tempfile::NamedTempFile::new().unwrap();
    write_zuliprc(rc.path(), &fake);
    let config = Config::parse(
        &format!(
            "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{url}\"\n[http]\nbind = \"off\"\n[performance]\nmax_concurrent_handlers = 16\n[listeners]\nenabled = {:?}\n",
            rc.path().display(),
            names
        ),
        &known,
    )
    .unwrap();
    let start = Instant::now();
    let app = Application::build(&config, &registry, RunOptions::default())
        .await
        .unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(token.clone()));
    let mut probe = Probe::connect(&url).await;
    // As in the backlog runs, the clock starts when the first event is
    // stored: the fake server's time to serialize the backlog (in this
    // process) is the same for every listener count and would flatter
    // the ratio between them.
    let mut start = start;
    let mut started = false;
    let mut window = cpu::Window::start(cpu::own_cpu());
    while !probe.done(n).await {
        if !started && probe.one(PROBE_CHEAP).await.is_some_and(|(max, _)| max > 0) {
            start = Instant::now();
            window = cpu::Window::start(cpu::own_cpu());
            started = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let (server_us, process_us) = window.per_event(cpu::own_cpu(), n);
    token.cancel();
    let _ = handle.await;
    (rate, server_us, process_us)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

fn main() {
    // The listener-count runs host the daemon in this process: give it the
    // allocator settings the daemon binary's `main` applies.
    zulip_event_listeners::app::malloc_tuning::tune();
    tokio::runtime::Runtime::new()
        .expect("a Tokio runtime")
        .block_on(bench());
}

async fn bench() {
    // `cargo test --all-targets` builds and runs this target too; only
    // `cargo bench` (which passes --bench) runs the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("The pipeline benchmark runs with: cargo bench --bench pipeline");
        return;
    }
    let a = args();
    let n = a.events;
    eprintln!(
        "Pipeline benchmark: {n} events per backlog run, soak {} events",
        a.soak
    );

    if std::env::var("ZEL_BENCH_ONLY").as_deref() == Ok("big") {
        let (rate, hwm, sampled) = big_response::big_response(a.big).await;
        println!(
            "one {}-event response: {rate:.0} events/s, peak RSS {:.1} MB (VmHWM; {:.1} MB sampled)",
            a.big,
            mb(hwm),
            mb(sampled)
        );
        return;
    }
    if std::env::var("ZEL_BENCH_ONLY").as_deref() == Ok("soak") {
        let (at100k, peak, end, rate, anon) = soak(a.soak).await;
        println!(
            "soak {}: RSS at 100,000 {:.1} MB, peak after {:.1} MB, end {:.1} MB (heap peak {:.1} MB), {rate:.0} events/s",
            a.soak,
            mb(at100k),
            mb(peak),
            mb(end),
            mb(anon)
        );
        return;
    }
    if let Ok(k) = std::env::var("ZEL_BENCH_ONLY")
        .unwrap_or_default()
        .strip_prefix("listeners")
        .unwrap_or("x")
        .parse::<usize>()
    {
        // For profiling: ZEL_BENCH_ONLY=listeners16 (in-process, so perf
        // the benchmark itself).
        let (rate, server, process) = listeners_run(k, (n / 2).max(10_000)).await;
        println!("{k} listener(s): {rate:.0} events/s, server {server:.1} µs/event, process {process:.1} µs/event");
        return;
    }
    if let Some(k) = std::env::var("ZEL_BENCH_ONLY")
        .ok()
        .and_then(|s| s.strip_prefix("webhooks").map(str::to_owned))
    {
        // ZEL_BENCH_ONLY=webhooks: 1, 4 and 16 instances; webhooks16: one count.
        let counts = match k.parse::<usize>() {
            Ok(k) => vec![k],
            Err(_) => vec![1, 4, 16],
        };
        let wn = (n / 2).max(10_000);
        for k in counts {
            let (rate, requests) = webhooks::webhooks_run(k, wn).await;
            drop_pg("zel_bench_webhooks").await;
            quiesce().await;
            println!("{k} webhook instance(s), {wn} events: {rate:.0} events/s ({:.0} deliveries/s, {requests} requests)", rate * k as f64);
        }
        return;
    }
    if std::env::var("ZEL_BENCH_ONLY").as_deref() == Ok("exec") {
        let rate = exec::persistent_exec_run((n / 2).max(10_000)).await;
        println!("persistent exec: {rate:.0} runs/s");
        return;
    }
    if let Ok(only) = std::env::var("ZEL_BENCH_ONLY") {
        // For profiling one scenario: ZEL_BENCH_ONLY=postgres|sqlite|dry-run,
        // postgres-encrypted|sqlite-encrypted with encryption at rest.
        let (backend, encrypted) = match only.strip_suffix("-encrypted") {
            Some(b) => (b, true),
            None => (only.as_str(), false),
        };
        let url = match backend {
            "postgres" => Some(fresh_pg("zel_bench_pg").await),
            "sqlite" => Some(format!(
                "sqlite://{}/bench-only.db",
                std::env::temp_dir().display()
            )),
            _ => None,
        };
        let parsed = url.as_deref().map(|u| u.parse::<DatabaseUrl>().unwrap());
        if let Some(path) = parsed.as_ref().and_then(DatabaseUrl::sqlite_path) {
            let _ = std::fs::remove_file(path);
        }
        let m = backlog_run(&only, n, url.as_deref(), url.is_none(), encrypted).await;
        println!(
            "{only}: {:.0} events/s, peak RSS {:.1} MB, {:.2} CPU s / 100k events",
            m.events_per_s,
            mb(m.peak_rss),
            m.cpu_per_100k
        );
        return;
    }
    let copy_too = a.runs("copy");
    let mut copy = None;
    let pg = if a.runs("pg") || copy_too {
        let pg_url = fresh_pg("zel_bench_pg").await;
        let pg = backlog_run("postgres", n, Some(&pg_url), false, false).await;
        quiesce().await;
        if copy_too {
            copy = Some(copy_baseline(&pg_url).await);
        }
        drop_pg("zel_bench_pg").await;
        quiesce().await;
        Some(pg)
    } else {
        None
    };
    let peer = if a.runs("peer") {
        let m = peer::peer_run(a.peer.unwrap_or(n.min(30_000))).await;
        drop_pg("zel_bench_peer").await;
        quiesce().await;
        Some(m)
    } else {
        None
    };
    let pg_sealed = if a.runs("pg-enc") {
        let pg_url = fresh_pg("zel_bench_pg").await;
        let m = backlog_run("postgres-encrypted", n, Some(&pg_url), false, true).await;
        drop_pg("zel_bench_pg").await;
        quiesce().await;
        Some(m)
    } else {
        None
    };
    let mut sqlite_runs = Vec::new();
    for (name, label, encrypted) in [
        ("sqlite", "sqlite", false),
        ("sqlite-enc", "sqlite-encrypted", true),
    ] {
        if !a.runs(name) {
            sqlite_runs.push(None);
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
        sqlite_runs.push(Some(
            backlog_run(label, n, Some(&sqlite_url), false, encrypted).await,
        ));
        drop(dir);
        quiesce().await;
    }
    let sqlite_sealed = sqlite_runs.pop().flatten();
    let sqlite = sqlite_runs.pop().flatten();
    let dry = if a.runs("dry") {
        Some(backlog_run("dry-run", n, None, true, false).await)
    } else {
        None
    };
    let latency = if a.runs("latency") {
        let l = offered_load(5_000, 10).await;
        drop_pg("zel_bench_latency").await;
        quiesce().await;
        Some(l)
    } else {
        None
    };
    let ln = (n / 2).max(10_000);
    let mut listener_counts = Vec::new();
    if a.runs("listeners") {
        for k in [1, 4, 16] {
            listener_counts.push((k, listeners_run(k, ln).await));
            drop_pg("zel_bench_listeners").await;
            quiesce().await;
        }
    }
    let mut hooks = Vec::new();
    if a.runs("webhooks") {
        for k in [1, 4, 16] {
            let w = cpu::Window::start(cpu::own_cpu());
            let rate = webhooks::webhooks_run(k, ln).await.0;
            hooks.push((k, rate, w.per_event(cpu::own_cpu(), ln)));
            drop_pg("zel_bench_webhooks").await;
            quiesce().await;
        }
    }
    let exec_run = if a.runs("exec") {
        let w = cpu::Window::start(cpu::own_cpu());
        let rate = exec::persistent_exec_run(ln).await;
        let cpu = w.per_event(cpu::own_cpu(), ln);
        drop_pg("zel_bench_exec").await;
        quiesce().await;
        Some((rate, cpu))
    } else {
        None
    };
    let soak = if a.soak > 0 && a.runs("soak") {
        Some(soak(a.soak).await)
    } else {
        None
    };
    quiesce().await;
    let big = if a.big > 0 && a.runs("big") {
        Some(big_response::big_response(a.big).await)
    } else {
        None
    };

    let copy_rate = copy.map_or(f64::NAN, |c| c.1);
    println!();
    println!("| scenario | events/s | vs COPY | server CPU µs/event | daemon CPU µs/event | peak RSS MB | CPU s / 100k events |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, m) in [
        ("PostgreSQL, 2 listeners", &pg),
        ("PostgreSQL, 2 listeners, encrypted at rest", &pg_sealed),
        ("SQLite, 2 listeners", &sqlite),
        ("SQLite, 2 listeners, encrypted at rest", &sqlite_sealed),
        ("dry-run (no database)", &dry),
    ] {
        let Some(m) = m else { continue };
        println!(
            "| {label} | {:.0} | {:.0}% | {:.1} | {:.1} | {:.1} | {:.2} |",
            m.events_per_s,
            m.events_per_s / copy_rate * 100.0,
            m.server_us,
            m.daemon_us,
            mb(m.peak_rss),
            m.cpu_per_100k
        );
    }
    if let Some((copy_rows, copy_rate, copy_us)) = copy {
        println!("| raw COPY of the same {copy_rows} inbox rows | {copy_rate:.0} | 100% | {copy_us:.1} | | | |");
    }
    if let Some(p) = &peer {
        println!(
            "| Python-client peer (zulip get_events, one psycopg INSERT per event), {} events | {:.0} | {:.0}% | {:.1} | {:.1} (Python) | | |",
            p.events,
            p.events_per_s,
            p.events_per_s / copy_rate * 100.0,
            p.server_us,
            p.client_us
        );
    }
    if let Some(pg) = &pg {
        println!();
        if let Some(p) = &peer {
            println!(
                "PostgreSQL, 2 listeners / Python-client peer: {:.1}× (server CPU per event {:.2}× the peer's)",
                pg.events_per_s / p.events_per_s,
                pg.server_us / p.server_us
            );
        }
        if let Some((_, copy_rate, copy_us)) = copy {
            println!(
                "PostgreSQL, 2 listeners / raw COPY: {:.0}% of its rate, {:.1}× its server CPU per event",
                pg.events_per_s / copy_rate * 100.0,
                pg.server_us / copy_us
            );
        }
    }
    println!();
    println!("| measure | value |");
    println!("| --- | ---: |");
    if let Some((p50, p99, samples)) = latency {
        println!("| latency p50 at 5,000 events/s offered (push → last run committed), {samples} events | {p50:.1} ms |");
        println!("| latency p99 at 5,000 events/s offered | {p99:.1} ms |");
    }
    let l1 = listener_counts.first().map(|(_, (r, _, _))| *r);
    for (k, (rate, server, process)) in &listener_counts {
        let cost = match l1 {
            Some(l1) if *k > 1 => format!(", {:.2}× the cost of 1", l1 / rate),
            _ => String::new(),
        };
        println!("| events/s, {k} listener(s) ({ln} events, PostgreSQL, in-process) | {rate:.0} (server {server:.1} µs/event, process {process:.1} µs/event{cost}) |");
    }
    for (k, rate, (server, process)) in &hooks {
        println!(
            "| events/s, {k} webhook instance(s) ({ln} events, PostgreSQL, local receiver) | {rate:.0} ({:.0} deliveries/s; server {server:.1} µs/event, process {process:.1} µs/event, set-up included) |",
            rate * *k as f64
        );
    }
    if let Some((exec_rate, (server, process))) = exec_run {
        println!("| runs/s, one persistent exec child in Python ({ln} events, PostgreSQL) | {exec_rate:.0} (server {server:.1} µs/run, process {process:.1} µs/run, set-up included) |");
    }
    if let Some((at100k, peak, end, rate, anon)) = soak {
        println!(
            "| soak {} events: RSS at 100,000 | {:.1} MB |",
            a.soak,
            mb(at100k)
        );
        println!("| soak: peak RSS after 100,000 | {:.1} MB |", mb(peak));
        println!("| soak: RSS at the end | {:.1} MB |", mb(end));
        println!("| soak: peak anonymous RSS (heap, without the binary's code pages) after 100,000 | {:.1} MB |", mb(anon));
        println!("| soak: events/s (pushed in chunks, queue ≤ 2,000) | {rate:.0} |");
    }
    if let Some((rate, hwm, _)) = big {
        println!(
            "| one {}-event response: peak RSS (VmHWM) | {:.1} MB |",
            a.big,
            mb(hwm)
        );
        println!("| one {}-event response: events/s from start to the last run committed (PostgreSQL) | {rate:.0} |", a.big);
    }
    if a.runs("distributed") {
        distributed_figures().await;
    }
}

/// The distributed scenarios' figures (`distributed.rs`).
async fn distributed_figures() {
    const EVENTS: usize = 4_000;
    let mut one = None;
    for k in [1, 2, 4, 8] {
        let rate = distributed::workers_run(k, EVENTS).await;
        drop_pg("zel_bench_dist").await;
        let base = *one.get_or_insert(rate);
        println!("| events/s, {k} worker process(es), webhook answering after 50 ms ({EVENTS} events in 1,000 conversations, 16 partitions, 16 runs at once per worker) | {rate:.0} ({:.2}× one worker) |", rate / base);
    }
    let f = distributed::faults(20_000).await;
    drop_pg("zel_bench_faults").await;
    println!("| 20,000 messages through 2 ingests and 2 workers while a worker is SIGKILLed, the leader is SIGKILLed, RabbitMQ is stopped and started and every broker connection is cut | {} messages stored; {} without their run, {} run twice, {} out of conversation order; the receiver got {} requests for {} distinct keys, {} keys twice ({}); {:.0} s |", f.messages, f.lost, f.doubled, f.out_of_order, f.requests, f.effects, f.effects_doubled,
        f.doubled_by_fault.iter().map(|(what, n)| format!("{n} in the 2 s before {what}")).collect::<Vec<_>>().join(", "), f.seconds);
    let mut gaps = distributed::failover(5).await;
    drop_pg("zel_bench_failover").await;
    println!("| leader failover, last commit before a SIGKILL → first after, each of {} kills (lease 3 s) | {} s |", gaps.len(),
        gaps.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>().join(", "));
    gaps.sort_by(f64::total_cmp);
    if let Some(median) = gaps.get(gaps.len() / 2) {
        println!("| leader failover, median | {median:.2} s |");
    }
}
