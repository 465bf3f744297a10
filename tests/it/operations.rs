//! Operating the daemon: `/metrics` counts exactly, `/health` reports
//! heartbeats, listener errors and draining, and SIGHUP reopens the log file.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

fn send_message(fake: &FakeZulip, i: usize) {
    let sender = 10 + (i % 4) as i64;
    let email = format!("user{sender}@example.com");
    if i % 3 == 0 {
        fake.send_direct_message(sender, &email, &[20], &format!("dm {i}"));
    } else {
        fake.send_channel_message(sender, &email, "general", "t", &format!("m{i}"));
    }
}

fn looks_like_an_id(value: &str) -> bool {
    let all_digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let uuid = value.len() == 36
        && value.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        });
    all_digits || uuid
}

#[tokio::test]
async fn metrics_count_exactly_what_was_sent() {
    const N: usize = 40;
    const M: usize = 15;
    let mut daemon = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let (fake, db) = (daemon.fake.clone(), daemon.db.clone());
    daemon
        .start(Registry::builtin(), RunOptions::default())
        .await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for i in 0..N.max(M) {
        if i < N {
            send_message(&fake, i);
        }
        if i < M {
            react(&fake, 10 + (i % 4) as i64);
        }
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == (2 * N + M) as i64
        })
        .await,
        "every run is logged"
    );
    let m = daemon.metrics().await;
    let queue = fake.queue_ids().pop().expect("the queue");
    daemon.stop().await.expect("clean stop");

    let received = "zulip_event_listeners_events_received_total";
    assert_eq!(m.sample(received, &[("type", "message")]), Some(N as f64));
    assert_eq!(m.sample(received, &[("type", "reaction")]), Some(M as f64));
    let all_received: f64 = m
        .samples
        .iter()
        .filter(|s| s.metric == received)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => panic!("{received} is a counter"),
        })
        .sum();
    assert_eq!(
        all_received,
        (N + M) as f64,
        "nothing else (heartbeats) is counted as received"
    );
    let processed = "zulip_event_listeners_events_processed_total";
    assert_eq!(
        m.sample(
            processed,
            &[("listener", "message_logger"), ("outcome", "success")]
        ),
        Some(N as f64)
    );
    assert_eq!(
        m.sample(
            processed,
            &[
                ("listener", "user_activity_tracker"),
                ("outcome", "success")
            ]
        ),
        Some((N + M) as f64)
    );
    assert_eq!(
        m.sample("zulip_event_listeners_queue_registrations_total", &[]),
        Some(1.0)
    );
    let duration = "zulip_event_listeners_listener_run_duration_seconds";
    assert_eq!(
        m.sample(
            &format!("{duration}_count"),
            &[("listener", "message_logger")]
        ),
        Some(N as f64),
        "one duration observation per message_logger run"
    );
    let buckets = m
        .samples
        .iter()
        .find(|s| s.metric == duration && s.labels.get("listener") == Some("user_activity_tracker"))
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(b) => b.clone(),
            other => panic!("{duration} is a histogram: {other:?}"),
        })
        .expect("a duration histogram for user_activity_tracker");
    let inf = buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .expect("a +Inf bucket");
    assert_eq!(inf.count, (N + M) as f64);
    assert_eq!(
        m.sample("zulip_event_listeners_build_info", &[]),
        Some(1.0),
        "build_info is exported"
    );

    for s in &m.samples {
        for (name, value) in s.labels.iter() {
            assert!(
                !looks_like_an_id(value) && !value.contains(&queue),
                "{}{{{name}=\"{value}\"}}: a label value must never be an id",
                s.metric
            );
        }
    }
}

#[tokio::test]
async fn health_turns_degraded_when_heartbeats_stop_and_503_while_draining() {
    // Heartbeats every 0.3 s and a 1 s long-poll timeout: healthy means a
    // successful poll in the last 2 s. A poll without a heartbeat is
    // abandoned after 1 + 5 s and retried, which is no successful poll.
    let handler_timeout = 4;
    let mut daemon = TestApp::new(
        Backend::Sqlite,
        FakeOptions {
            heartbeat: Duration::from_millis(300),
            longpoll_timeout_seconds: 1,
            ..FakeOptions::default()
        },
        &format!(
            "[listeners]\nenabled = [\"hanging\", \"message_logger\"]\n[performance]\nhandler_timeout = {handler_timeout}\n"
        ),
    )
    .await;
    let (fake, db) = (daemon.fake.clone(), daemon.db.clone());
    let (registry, _) = registry_with_test_listeners();
    daemon.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    let healthy = |Health { code, body }: &Health| {
        *code == 200
            && body["status"] == "healthy"
            && body["seconds_since_last_poll"].as_f64().is_some()
    };
    assert!(
        eventually(WAIT, || async { healthy(&daemon.health().await) }).await,
        "healthy while heartbeats arrive: {:?}",
        daemon.health().await
    );
    let body = daemon.health().await.body;
    assert_eq!(body["queue"]["longpoll_timeout_seconds"], 1);
    assert_eq!(body["draining"], false);

    fake.pause_heartbeats(true);
    let last = std::sync::Mutex::new((0, Value::Null));
    let degraded = eventually(Duration::from_secs(15), || async {
        let Health { code, body } = daemon.health().await;
        let hit = code == 200
            && body["status"] == "degraded"
            && body["reasons"].to_string().contains("heartbeat");
        *last.lock().unwrap() = (code, body);
        hit
    })
    .await;
    let last = last.into_inner().unwrap();
    assert!(
        degraded,
        "degraded, naming the missing heartbeats, once no poll succeeded for 2 long-poll timeouts: {last:?}"
    );
    assert!(last.1["seconds_since_last_poll"].as_f64().unwrap() > 2.0);

    fake.pause_heartbeats(false);
    assert!(
        eventually(WAIT, || async { healthy(&daemon.health().await) }).await,
        "healthy again once heartbeats resume: {:?}",
        daemon.health().await
    );

    // A run that will only end at its timeout, then shutdown.
    send_message(&fake, 1);
    assert!(
        eventually(WAIT, || async {
            daemon.health().await.body["runs_in_flight"].as_i64() >= Some(1)
        })
        .await,
        "the hanging run is in flight"
    );
    daemon.cancel();
    let seen = std::sync::Mutex::new(None);
    let draining = eventually(Duration::from_secs(handler_timeout), || async {
        if daemon.is_finished() {
            return false;
        }
        let Health { code, body } = daemon.health().await;
        let hit = code == 503 && body["draining"] == true;
        *seen.lock().unwrap() = Some(body);
        hit
    })
    .await;
    assert!(
        draining,
        "/health answers 503 with draining: true while in-flight runs finish"
    );
    let body = seen.into_inner().unwrap().expect("a health report");
    assert_eq!(body["status"], "unhealthy");
    assert!(
        body["reasons"].to_string().contains("shutting down"),
        "{body}"
    );
    assert!(
        !daemon.is_finished(),
        "the daemon was still draining when /health said so"
    );
    let report = daemon.stop().await.expect("a clean stop");
    assert_eq!(
        report.recorder.recorded, 2,
        "both runs of the message are recorded, the timed-out one included"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'hanging' AND NOT success"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_failing_listener_raises_the_error_rate_and_degrades_health() {
    let mut daemon = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"failing\"]\n",
    )
    .await;
    let (fake, db) = (daemon.fake.clone(), daemon.db.clone());
    let (registry, _) = registry_with_test_listeners();
    daemon.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    // Healthy once the first poll is under way (it reports `starting`, 503,
    // between the register and that poll).
    assert!(eventually(WAIT, || async { daemon.health().await.code == 200 }).await);
    let Health { body, .. } = daemon.health().await;
    assert_eq!(body["error_rate"], 0.0, "{body}");
    for i in 0..10 {
        send_message(&fake, i);
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_eventlog").await == 10
        })
        .await,
        "every failed run is logged"
    );
    let Health { code, body } = daemon.health().await;
    assert_eq!(code, 200, "degraded still answers 200: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(body["error_rate"].as_f64().unwrap() > 0.5, "{body}");
    assert!(body["reasons"].to_string().contains("error rate"), "{body}");
    daemon
        .stop()
        .await
        .expect("a failing listener never stops the daemon");
}

/// The binary on `config`, logging as its configuration says (no RUST_LOG).
fn spawn_logging_daemon(config: &Path, stderr_log: &Path) -> Child {
    let log = std::fs::File::create(stderr_log).expect("create the stderr log");
    daemon_command(config)
        .env_remove("RUST_LOG")
        .stderr(log)
        .spawn()
        .expect("spawn the daemon")
}

/// The timestamp at the start of a text log line.
fn timestamp(line: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()
}

#[tokio::test]
async fn the_log_file_is_reopened_on_sighup_and_no_line_is_lost() {
    let logs = tempfile::tempdir().expect("temp dir");
    let log = logs.path().join("zel.log");
    let rotated = logs.path().join("zel.log.1");
    let app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        &format!(
            "[logging]\nfile = \"{}\"\nlevel = \"warn,zulip_event_listeners=debug\"\n",
            log.display()
        ),
    )
    .await;
    let (fake, db, s) = (app.fake.clone(), app.db.clone(), &app.setup);
    let stderr_log = s.dir.path().join("stderr.log");
    let mut child = spawn_logging_daemon(&s.config_path, &stderr_log);
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    let mut sent = 0;
    let mut events = 0;
    let mut burst = |fake: &FakeZulip, n: usize| {
        for _ in 0..n {
            send_message(fake, sent);
            events += 1;
            if sent % 7 == 0 {
                react(fake, 10 + (sent % 4) as i64);
                events += 1;
            }
            sent += 1;
        }
    };
    for _ in 0..10 {
        burst(&fake, 10);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // logrotate without copytruncate: move the file, then signal.
    std::fs::rename(&log, &rotated).expect("rotate the log");
    burst(&fake, 10);
    signal(&child, "-HUP");
    let reopened = std::sync::atomic::AtomicBool::new(false);
    for _ in 0..30 {
        burst(&fake, 5);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Reopened the log file")) {
            reopened.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let reopened = reopened.into_inner()
        || eventually(WAIT, || async {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Reopened the log file"))
        })
        .await;
    assert!(
        reopened,
        "SIGHUP reopens the log file; stderr: {}",
        std::fs::read_to_string(&stderr_log).unwrap_or_default()
    );
    for _ in 0..5 {
        burst(&fake, 10);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sent, events) = (sent as i64, events as i64);
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await == events
        })
        .await,
        "every event is stored"
    );
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exits with 0: {status:?}; stderr: {}",
        std::fs::read_to_string(&stderr_log).unwrap_or_default()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        sent
    );

    let new = std::fs::read_to_string(&log).expect("the new log file exists");
    let old = std::fs::read_to_string(&rotated).expect("the rotated log file exists");
    let reopen_line = new
        .lines()
        .find(|l| l.contains("Reopened the log file"))
        .expect("the new file holds the reopen line");
    let reopened_at = timestamp(reopen_line).expect("a timestamped reopen line");
    assert!(
        !old.contains("Reopened the log file"),
        "the reopen line went to the old file"
    );
    let after: Vec<&str> = new
        .lines()
        .skip_while(|l| !l.contains("Reopened the log file"))
        .skip(1)
        .collect();
    assert!(
        after.iter().any(|l| l.contains("Received an event")),
        "events after the reopen are logged to the new file"
    );
    if let Some(late) = old
        .lines()
        .find(|l| timestamp(l).is_some_and(|t| t > reopened_at))
    {
        panic!("the rotated file got a line after the reopen ({reopen_line}): {late}");
    }
    let received = |text: &str| {
        text.lines()
            .filter(|l| l.contains("Received an event"))
            .count()
    };
    assert!(
        received(&old) > 0,
        "the rotated file holds the first events"
    );
    assert_eq!(
        (received(&old) + received(&new)) as i64,
        events,
        "one \"Received an event\" line per event sent, across both files"
    );
}
