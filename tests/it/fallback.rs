//! Fallback listeners (`[listeners.NAME] fallback`) through the whole
//! daemon: a webhook whose receiver always answers 500 hands every event
//! to a responder, exactly once through SIGKILLs of the daemon binary; an
//! exec fallback reads the failure in its envelope; `replay` of the
//! primary still works; `check-config` refuses cycles and `list` shows the
//! chains.

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::replies::copies;
use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(90);
const USER: i64 = 7;

/// A webhook `ticket` (to `url`, quick retries) falling back to the
/// responder `ops`, which answers `echo N` with `echo N`.
fn ticket_with_ops_fallback(url: &str) -> String {
    format!(
        r#"
[listeners]
enabled = ["ticket"]

[listeners.ticket]
kind = "webhook"
url = "{url}"
event_types = ["message"]
retry.max_attempts = 2
retry.initial_delay = 0.01
retry.max_delay = 0.01
fallback = "ops"

[listeners.ops]
kind = "responder"
rate_limit_per_conversation = 100000
rules = [{{ match = "^echo (?P<n>\\d+)$", reply = "echo {{n}}" }}]

[network]
read_timeout = 3
"#
    )
}

fn log(app: &TestApp) -> std::path::PathBuf {
    app.setup.dir.path().join("stderr.log")
}

fn spawn(app: &TestApp) -> Child {
    spawn_daemon(&app.setup.config_path, &log(app))
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

async fn sent_at_least(fake: &FakeZulip, n: usize) -> bool {
    eventually(WAIT, || async { fake.sent_messages().len() >= n }).await
}

/// Inbox message events without exactly one `ticket` dead letter marked
/// `ops` / `ran_ok`, or without exactly one `ops` run.
async fn events_not_handled_once(db: &TestDb) -> i64 {
    db.scalar(
        "SELECT count(*) FROM event_listeners_inbox i
         WHERE i.event_type = 'message' AND (
           (SELECT count(*) FROM event_listeners_deadletter d
             WHERE d.inbox_id = i.id AND d.listener_name = 'ticket'
               AND d.fallback_listener = 'ops' AND d.fallback_outcome = 'ran_ok') <> 1
           OR (SELECT count(*) FROM event_listeners_deadletter d
             WHERE d.inbox_id = i.id AND d.listener_name = 'ticket') <> 1
           OR (SELECT count(*) FROM event_listeners_eventlog e
             WHERE e.inbox_id = i.id AND e.listener_name = 'ops') <> 1)",
    )
    .await
}

async fn every_failed_webhook_event_gets_one_fallback_reply_through_sigkills(backend: Backend) {
    const TOTAL: usize = 60;
    let receiver = Receiver::start(|_| Answer::status(500)).await;
    let config = ticket_with_ops_fallback(&receiver.url("/ticket"));
    let app = TestApp::new(backend, FakeOptions::default(), &config).await;
    app.db.migrate().await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let mut child = spawn(&app);
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    let stream = {
        let fake = fake.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let topic = format!("topic {}", i % 5);
                fake.send_channel_message(
                    USER,
                    "ada@example.com",
                    "support",
                    &topic,
                    &format!("echo {i}"),
                );
                if i % 5 == 4 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        })
    };
    // Kills at several points: after some replies, and at once after a
    // restart (the primary's failure and the fallback's run in flight).
    for (n, at) in [Some(5), None, Some(25), None, Some(45)]
        .into_iter()
        .enumerate()
    {
        match at {
            Some(at) => {
                let _ = sent_at_least(&fake, at).await;
            }
            None => tokio::time::sleep(Duration::from_millis(60 + 30 * n as u64)).await,
        }
        kill(&mut child);
        child = spawn(&app);
    }
    stream.await.expect("the messages are sent");
    let all_sent = eventually(WAIT, || async {
        db.scalar("SELECT count(*) FROM event_listeners_replyoutbox WHERE status = 'sent'")
            .await
            == TOTAL as i64
    })
    .await;
    let settled = eventually(WAIT, || async { events_not_handled_once(&db).await == 0 }).await;
    kill(&mut child);
    assert!(
        all_sent && settled,
        "every event is dead-lettered once with its fallback run ({} not); stderr:\n{}",
        events_not_handled_once(&db).await,
        stderr_of(&log(&app))
    );
    let sent = fake.sent_messages();
    let wrong: Vec<(usize, usize)> = (0..TOTAL)
        .map(|i| (i, copies(&sent, &format!("echo {i}"))))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "(event, replies) not exactly one: {wrong:?}"
    );
    assert_eq!(sent.len(), TOTAL, "nothing else was sent");
    let commands = db
        .scalar("SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = 'ticket'")
        .await;
    assert!(commands >= TOTAL as i64, "{commands} dead letters");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = 'ops'")
            .await,
        0,
        "the fallback never failed"
    );
    assert!(
        !receiver.deliveries_to("/ticket").is_empty(),
        "the webhook was tried"
    );
}

both_backends!(every_failed_webhook_event_gets_one_fallback_reply_through_sigkills =>
    every_failed_webhook_event_gets_one_fallback_reply_through_sigkills_on_sqlite,
    every_failed_webhook_event_gets_one_fallback_reply_through_sigkills_on_postgres);

/// A python script that appends each envelope it reads on stdin to `out`.
fn recorder_script(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let out = dir.join("envelopes.jsonl");
    let script = dir.join("fallback.py");
    std::fs::write(
        &script,
        format!(
            "import sys\nwith open({:?}, 'a') as f:\n    f.write(sys.stdin.read().strip() + '\\n')\n",
            out.display().to_string()
        ),
    )
    .expect("write the script");
    let command = format!("[\"python3\", {:?}]", script.display().to_string());
    (command, out)
}

async fn an_exec_fallback_reads_the_failure_and_replay_of_the_primary_still_works(
    backend: Backend,
) {
    // Arrange: a webhook answered 500 (until `healthy`), falling back to
    // an exec command that keeps its envelopes.
    let healthy = Arc::new(AtomicBool::new(false));
    let switch = healthy.clone();
    let receiver = Receiver::start(move |_| {
        if switch.load(Ordering::SeqCst) {
            Answer::ok()
        } else {
            Answer::text(500, "ticketing is down")
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (command, out) = recorder_script(dir.path());
    let config = format!(
        r#"
[listeners]
enabled = ["ticket"]

[listeners.ticket]
kind = "webhook"
url = "{}"
event_types = ["message"]
retry.max_attempts = 1
fallback = "local"

[listeners.local]
kind = "exec"
command = {command}
"#,
        receiver.url("/ticket")
    );
    let mut app = TestApp::new(backend, FakeOptions::default(), &config).await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    fake.lose_echoes(true);
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    // Act: one message, failed by the webhook.
    fake.send_channel_message(USER, "ada@example.com", "support", "t", "hello");
    let marked = "SELECT count(*) FROM event_listeners_deadletter
                  WHERE listener_name = 'ticket' AND fallback_listener = 'local'
                    AND fallback_outcome = 'ran_ok'";
    assert!(
        eventually(WAIT, || async { db.scalar(marked).await == 1 }).await,
        "the webhook's dead letter says the fallback ran"
    );

    // Assert: the exec fallback got the failure in its envelope.
    let lines = std::fs::read_to_string(&out).expect("the fallback ran");
    let envelopes: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("an envelope"))
        .collect();
    assert_eq!(envelopes.len(), 1, "{lines}");
    let of = &envelopes[0]["fallback_of"];
    assert_eq!(of["listener"], "ticket");
    assert_eq!(of["class"], "transient");
    assert!(
        of["error"].as_str().unwrap_or_default().contains("500"),
        "{of}"
    );
    assert_eq!(envelopes[0]["listener"], "local");
    assert_eq!(envelopes[0]["event"]["message"]["content"], "hello");
    let local_runs = "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'local'";
    assert_eq!(db.scalar(local_runs).await, 1);
    app.stop().await.expect("a clean stop");

    // Act: the ticketing system is back; replay the webhook's dead letter.
    healthy.store(true, Ordering::SeqCst);
    let cfg = app.setup.config_path.display().to_string();
    let replay = zel_async(args(&cfg, &["replay", "--listener", "ticket"])).await;

    // Assert: the primary ran again and succeeded; the fallback did not.
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let replayed = "SELECT count(*) FROM event_listeners_deadletter
                    WHERE listener_name = 'ticket' AND replay_success";
    assert_eq!(db.scalar(replayed).await, 1);
    assert_eq!(receiver.delivered_keys().len(), 1, "one delivery accepted");
    assert_eq!(
        db.scalar(local_runs).await,
        1,
        "replay runs the primary only"
    );
    assert_eq!(
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count(),
        1
    );
}

both_backends!(an_exec_fallback_reads_the_failure_and_replay_of_the_primary_still_works =>
    an_exec_fallback_reads_the_failure_and_replay_of_the_primary_still_works_on_sqlite,
    an_exec_fallback_reads_the_failure_and_replay_of_the_primary_still_works_on_postgres);

const HOOK: &str = "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n";

#[test]
fn check_config_refuses_fallback_cycles_with_every_other_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let zulip = zulip_section(dir.path());
    let tables = format!(
        "[listeners]\nenabled = [\"a\", \"c\"]\n\
         [listeners.a]\n{HOOK}fallback = \"b\"\n\
         [listeners.b]\n{HOOK}fallback = \"a\"\n\
         [listeners.c]\n{HOOK}fallback = \"nobody\"\n\
         [listeners.d]\n{HOOK}fallback = \"d\"\n\
         [performance]\nmax_concurrent_handlers = \"x\"\n"
    );
    std::fs::write(&path, format!("{zulip}{tables}")).unwrap();

    let out = zel(&["--config", &path.display().to_string(), "check-config"]);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "cycle: a → b → a",
        "`listeners.c.fallback` names `nobody`",
        "`listeners.d.fallback` names `d` itself",
        "performance.max_concurrent_handlers",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
}

#[test]
fn check_config_and_list_show_a_fallback_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let zulip = zulip_section(dir.path());
    let db = dir.path().join("none.db");
    let tables = format!(
        "[database]\nurl = \"sqlite://{}\"\n\
         [listeners]\nenabled = [\"a\"]\n\
         [listeners.a]\n{HOOK}fallback = \"b\"\n\
         [listeners.b]\n{HOOK}fallback = \"message_logger\"\n",
        db.display()
    );
    std::fs::write(&path, format!("{zulip}{tables}")).unwrap();
    let cfg = path.display().to_string();

    let check = zel(&["--config", &cfg, "check-config"]);
    let list = zel(&["--config", &cfg, "list"]);

    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains("Fallback chain: a → b → message_logger"),
        "{stdout}"
    );
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(listed.contains("    fallback: b\n"), "{listed}");
    assert!(
        listed.contains("    fallback of: a (runs only as a fallback)"),
        "{listed}"
    );
}
