//! Replies through SIGKILLs of the daemon binary: killed between a POST
//! that Zulip processed and the commit of `sent` (the restart finds the
//! echo on the resumed queue and sends nothing again), the same with the
//! queue lost meanwhile (at most one duplicate, as documented), and many
//! kills while commands keep coming (every command answered exactly once).

use std::process::Child;
use std::time::Duration;

use crate::replies::{copies, RESPONDER};
use crate::support::fake_zulip::{FakeOptions, FakeZulip, SendFault};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
const USER: i64 = 7;

/// A fake Zulip and a fresh migrated database with [`RESPONDER`], and the
/// daemon binary running on them, its queue registered.
async fn spawned(backend: Backend) -> (TestApp, Child) {
    // A short request timeout: a reply the daemon died while posting is
    // resent (if its echo never came) once a POST cannot still be running.
    let config = format!("{RESPONDER}\n[network]\nread_timeout = 3\n");
    let app = TestApp::new(backend, FakeOptions::default(), &config).await;
    app.db.migrate().await;
    let child = spawn(&app);
    let fake = app.fake.clone();
    assert!(
        eventually(WAIT, || async { fake.register_count() == 1 }).await,
        "the daemon registers a queue"
    );
    (app, child)
}

fn spawn(app: &TestApp) -> Child {
    spawn_daemon(&app.setup.config_path, &log(app))
}

fn log(app: &TestApp) -> std::path::PathBuf {
    app.setup.dir.path().join("stderr.log")
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

async fn sent_at_least(fake: &FakeZulip, n: usize) -> bool {
    eventually(WAIT, || async { fake.sent_messages().len() >= n }).await
}

async fn outbox(db: &TestDb, status: &str) -> i64 {
    count(
        db,
        &format!("SELECT count(*) FROM event_listeners_replyoutbox WHERE status = '{status}'"),
    )
    .await
}

async fn a_daemon_killed_between_the_post_and_its_commit_finds_the_echo_and_sends_nothing_again(
    backend: Backend,
) {
    let (app, mut child) = spawned(backend).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    // Zulip sends the reply (and its echo) but the daemon never hears back.
    fake.fail_next_sends(1, SendFault::ProcessThenHang);
    fake.send_channel_message(USER, "ada@example.com", "ops", "t", "!ping");
    assert!(sent_at_least(&fake, 1).await, "Zulip received the reply");
    kill(&mut child);
    assert_eq!(
        outbox(&db, "sending").await,
        1,
        "the crash left the reply's outcome unknown"
    );

    let mut child = spawn(&app);
    let confirmed = eventually(WAIT, || async { outbox(&db, "sent").await == 1 }).await;
    // The command and the reply's echo have both run: nothing more comes.
    let ran = eventually(WAIT, || async {
        count(
            &db,
            "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'ops'",
        )
        .await
            >= 2
    })
    .await;
    kill(&mut child);
    assert!(
        confirmed && ran,
        "the restart confirms the reply; stderr:\n{}",
        stderr_of(&log(&app))
    );
    let sent = fake.sent_messages();
    assert_eq!(
        sent.len(),
        1,
        "the reply reached Zulip exactly once: {sent:?}"
    );
    assert_eq!(
        db.pairs("SELECT CAST(attempts AS BIGINT), message_id FROM event_listeners_replyoutbox")
            .await,
        vec![(1, sent[0].id)],
        "one POST, confirmed as the message Zulip made"
    );
    assert_eq!(fake.register_count(), 1, "the restart resumed the queue");
}

both_backends!(a_daemon_killed_between_the_post_and_its_commit_finds_the_echo_and_sends_nothing_again =>
    a_daemon_killed_between_the_post_and_its_commit_finds_the_echo_and_sends_nothing_again_on_sqlite,
    a_daemon_killed_between_the_post_and_its_commit_finds_the_echo_and_sends_nothing_again_on_postgres);

#[tokio::test]
async fn with_the_queue_lost_a_reply_in_flight_is_sent_at_most_twice() {
    let (app, mut child) = spawned(Backend::Sqlite).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    // Zulip sends the reply; its echo is lost with the queue, then the daemon dies.
    fake.lose_echoes(true);
    fake.fail_next_sends(1, SendFault::ProcessThenHang);
    fake.send_channel_message(USER, "ada@example.com", "ops", "t", "!ping");
    assert!(sent_at_least(&fake, 1).await, "Zulip received the reply");
    kill(&mut child);
    fake.expire_all_queues();
    fake.lose_echoes(false);

    let mut child = spawn(&app);
    let resent = eventually(WAIT, || async { outbox(&db, "sent").await == 1 }).await;
    kill(&mut child);
    assert!(
        resent,
        "the reply is sent again on the new queue; stderr:\n{}",
        stderr_of(&log(&app))
    );
    let sent = fake.sent_messages();
    assert_eq!(
        copies(&sent, "pong ada (t) "),
        2,
        "the one documented duplicate: the reply was in flight when its queue was lost"
    );
    assert_eq!(sent[0].local_id, sent[1].local_id, "the same outbox row");
    assert_eq!(
        db.pairs("SELECT CAST(attempts AS BIGINT), message_id FROM event_listeners_replyoutbox")
            .await,
        vec![(2, sent[1].id)]
    );
    assert_eq!(
        fake.register_count(),
        2,
        "a new queue replaced the lost one"
    );
}

#[tokio::test]
async fn every_command_is_answered_exactly_once_through_several_sigkills() {
    const TOTAL: usize = 200;
    let (app, mut child) = spawned(Backend::Postgres).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    let stream = {
        let fake = fake.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let topic = format!("topic {}", i % 10);
                fake.send_channel_message(
                    USER,
                    "ada@example.com",
                    "ops",
                    &topic,
                    &format!("echo {i}"),
                );
                if i % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
        })
    };
    // Where each kill lands: once this many replies reached Zulip (with
    // the next one processed by Zulip and left unanswered, when `hang`),
    // or, for `None`, right after the restart.
    let kills: [(Option<usize>, bool); 6] = [
        (Some(15), false),
        (None, false),
        (Some(60), true),
        (Some(100), false),
        (None, false),
        (Some(150), true),
    ];
    for (n, (at, hang)) in kills.into_iter().enumerate() {
        match at {
            Some(at) => {
                let _ = sent_at_least(&fake, at).await;
                if hang {
                    let before = fake.sent_messages().len();
                    fake.fail_next_sends(1, SendFault::ProcessThenHang);
                    let _ = sent_at_least(&fake, before + 1).await;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50 + 40 * n as u64)).await,
        }
        kill(&mut child);
        child = spawn(&app);
    }
    stream.await.expect("the commands are sent");
    let done = eventually(WAIT, || async { outbox(&db, "sent").await == TOTAL as i64 }).await;
    let still_running = child.try_wait().expect("try_wait").is_none();
    kill(&mut child);
    assert!(
        done && still_running,
        "every reply is sent ({} of {TOTAL}); stderr:\n{}",
        outbox(&db, "sent").await,
        stderr_of(&log(&app))
    );
    let sent = fake.sent_messages();
    let wrong: Vec<(usize, usize)> = (0..TOTAL)
        .map(|i| (i, copies(&sent, &format!("echo {i}"))))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "(command, replies) not answered exactly once: {wrong:?}"
    );
    assert_eq!(sent.len(), TOTAL, "nothing else was sent");
    assert_eq!(outbox(&db, "failed").await, 0);
    assert_eq!(
        fake.register_count(),
        1,
        "every restart resumed the same queue"
    );
}
