//! Operator state on both stores: dead letters written with their run and
//! replayed through a listener, listeners disabled and enabled with an
//! audit trail, the daemon leaving disabled listeners out; and the
//! `enable`, `disable`, `replay` and `list` commands of the binary.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::dispatch::replay::{self, ReplaySettings};
use zulip_event_listeners::store::{AuditAction, AuditEntry, AuditOutcome, ErrorClass, RunRecord};

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

/// A run of `listener` on `inbox_id`: failed and dead-lettered after
/// `attempts` tries when `dead` is set, otherwise successful.
fn run(inbox_id: i64, listener: &str, attempts: u32, dead: bool, at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: listener.into(),
        event_type: "message".into(),
        success: !dead,
        attempts,
        error: dead.then(|| "the downstream service is down".to_owned()),
        duration: Duration::from_millis(2),
        finished_at: at,
        records: vec![],
        dead_letter: if dead {
            dead_letter_of(ErrorClass::Transient, at)
        } else {
            None
        },
        fallback: Default::default(),
    }
}

fn settings() -> ReplaySettings {
    ReplaySettings {
        instance: "default".into(),
        timeout: Duration::from_secs(5),
    }
}

async fn dead_letters_are_written_with_their_run_and_read_back_with_their_event(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 3).await;
    let now = Utc::now();
    let hour_ago = now - chrono::Duration::hours(1);
    s.record(
        "default",
        &[
            run(ids[0], "failing", 3, true, hour_ago),
            run(ids[1], "failing", 3, true, now),
            run(ids[2], "failing", 1, false, now),
            run(ids[0], "counting", 1, false, now),
        ],
        Some(ids[2]),
    )
    .await
    .unwrap();

    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter")
            .await,
        2,
        "one dead letter per dead-lettered run, none for the others"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await,
        4
    );

    let letters = s.dead_letters("failing", None, None, false).await.unwrap();
    assert_eq!(letters.len(), 2);
    let first = &letters[0];
    assert_eq!(first.inbox_id, ids[0]);
    assert_eq!(first.attempts, 3);
    assert_eq!(first.event_type, "message");
    assert_eq!(
        first.error.as_deref(),
        Some("the downstream service is down")
    );
    assert_eq!(first.event.id(), 1, "the event is rebuilt from the inbox");
    assert_eq!(
        first.event.message().map(|m| m.content.as_str()),
        Some("hello 1")
    );
    assert!(first.replayed_at.is_none());

    let recent = s
        .dead_letters(
            "failing",
            Some(now - chrono::Duration::minutes(1)),
            None,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        recent.iter().map(|d| d.inbox_id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let one = s
        .dead_letters("failing", None, Some(ids[0]), false)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(s
        .dead_letters("counting", None, None, true)
        .await
        .unwrap()
        .is_empty());

    let overview = s
        .listener_overview(now - chrono::Duration::minutes(30))
        .await
        .unwrap();
    let failing = overview.iter().find(|o| o.listener == "failing").unwrap();
    assert_eq!(failing.failures, 1, "only the failure in the window counts");
    assert!(failing.last_success.is_some());
    db.drop_db().await;
}

both_backends!(dead_letters_are_written_with_their_run_and_read_back_with_their_event =>
    dead_letters_are_written_with_their_run_on_sqlite,
    dead_letters_are_written_with_their_run_on_postgres);

async fn replays_settle_dead_letters_or_write_new_ones(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 2).await;
    s.record(
        "default",
        &[
            run(ids[0], "counting", 3, true, Utc::now()),
            run(ids[1], "failing", 3, true, Utc::now()),
        ],
        Some(ids[1]),
    )
    .await
    .unwrap();
    let (registry, counter) = registry_with_test_listeners();

    // A listener that now succeeds: one success run, the letter settled.
    let counting = registry.get("counting").unwrap().clone();
    let items = replay::select(s.as_ref(), "default", "counting", None, None)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    let outcome = replay::replay_one(s.as_ref(), &counting, &items[0], &settings())
        .await
        .unwrap();
    assert!(outcome.success, "{:?}", outcome.error);
    assert_eq!(outcome.attempts, 4);
    assert_eq!(counter.load(Ordering::SeqCst), 1);
    assert_eq!(
        db.pairs(&format!(
            "SELECT CAST(attempts AS BIGINT), CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) FROM event_listeners_eventlog
             WHERE listener_name = 'counting' AND inbox_id = {} ORDER BY id",
            ids[0]
        ))
        .await,
        vec![(3, 0), (4, 1)],
        "the replay is a new logged run with one more attempt"
    );
    assert_eq!(
        db.pairs(
            "SELECT CAST(CASE WHEN replayed_at IS NULL THEN 0 ELSE 1 END AS BIGINT),
                    CAST(CASE WHEN replay_success THEN 1 ELSE 0 END AS BIGINT)
             FROM event_listeners_deadletter WHERE listener_name = 'counting'"
        )
        .await,
        vec![(1, 1)],
        "the dead letter is marked replayed, and no new one is written"
    );
    assert!(s
        .dead_letters("counting", None, None, false)
        .await
        .unwrap()
        .is_empty());

    // A listener that still fails: the old letter settled, a new one pending.
    let failing = registry.get("failing").unwrap().clone();
    let items = replay::select(s.as_ref(), "default", "failing", None, None)
        .await
        .unwrap();
    let outcome = replay::replay_one(s.as_ref(), &failing, &items[0], &settings())
        .await
        .unwrap();
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some("the downstream service is down")
    );
    let all = s.dead_letters("failing", None, None, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].replay_success, Some(false));
    assert!(all[0].replayed_at.is_some());
    assert_eq!(
        (all[1].attempts, all[1].replayed_at),
        (4, None),
        "the failed replay is a new pending dead letter"
    );
    assert_eq!(
        s.dead_letters("failing", None, None, false)
            .await
            .unwrap()
            .len(),
        1
    );

    // `--event` without a dead letter replays a logged run of the event.
    s.record(
        "default",
        &[run(ids[1], "counting", 1, false, Utc::now())],
        None,
    )
    .await
    .unwrap();
    let items = replay::select(s.as_ref(), "default", "counting", None, Some(ids[1]))
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].dead_letters.is_empty());
    assert_eq!(items[0].previous_attempts, 1);
    assert_eq!(items[0].event.id(), 2);
    assert!(
        replay::select(s.as_ref(), "default", "message_logger", None, Some(ids[1]))
            .await
            .unwrap()
            .is_empty(),
        "an event without any run of the listener is not replayed"
    );
    db.drop_db().await;
}

both_backends!(replays_settle_dead_letters_or_write_new_ones =>
    replays_settle_dead_letters_or_write_new_ones_on_sqlite,
    replays_settle_dead_letters_or_write_new_ones_on_postgres);

async fn listeners_are_disabled_and_enabled_with_an_audit_trail(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    assert!(s.listener_states().await.unwrap().is_empty());

    s.set_listener_enabled(
        "message_logger",
        false,
        Some("disk full"),
        "alice@box",
        true,
    )
    .await
    .unwrap();
    let states = s.listener_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].name, "message_logger");
    assert!(!states[0].enabled);
    assert_eq!(states[0].reason.as_deref(), Some("disk full"));
    assert_eq!(states[0].changed_by, "alice@box");
    assert!((Utc::now() - states[0].changed_at).num_seconds() < 60);

    s.set_listener_enabled("message_logger", true, None, "bob@box", true)
        .await
        .unwrap();
    let states = s.listener_states().await.unwrap();
    assert!(states[0].enabled);
    assert_eq!(states[0].reason, None);
    assert_eq!(states[0].changed_by, "bob@box");

    s.audit(&AuditEntry {
        actor: "carol",
        action: AuditAction::Replay,
        target: Some("failing"),
        detail: "3 events",
        outcome: AuditOutcome::Failed,
    })
    .await
    .unwrap();
    assert_eq!(
        db.text_pairs("SELECT action, detail FROM event_listeners_audit ORDER BY id")
            .await,
        vec![
            ("disable".to_owned(), Some("disk full".to_owned())),
            ("enable".to_owned(), Some(String::new())),
            ("replay".to_owned(), Some("3 events".to_owned())),
        ]
    );
    assert_eq!(
        db.text_pairs("SELECT actor, target FROM event_listeners_audit ORDER BY id")
            .await,
        vec![
            ("alice@box".to_owned(), Some("message_logger".to_owned())),
            ("bob@box".to_owned(), Some("message_logger".to_owned())),
            ("carol".to_owned(), Some("failing".to_owned())),
        ]
    );
    db.drop_db().await;
}

both_backends!(listeners_are_disabled_and_enabled_with_an_audit_trail =>
    listeners_are_disabled_and_enabled_with_an_audit_trail_on_sqlite,
    listeners_are_disabled_and_enabled_with_an_audit_trail_on_postgres);

#[tokio::test]
async fn a_listener_disabled_in_the_store_runs_nothing_and_its_events_wait_for_replay() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"message_logger\", \"counting\"]",
    )
    .await;
    let db = app.db.clone();
    let s = db.store().await;
    s.set_listener_enabled("counting", false, Some("too noisy"), "alice", true)
        .await
        .unwrap();
    let (registry, counter) = registry_with_test_listeners();
    let opts = RunOptions {
        events_file: Some(repo().join("examples/sample-events.jsonl")),
        ..RunOptions::default()
    };
    app.start(registry, opts).await;
    let report = app.wait().await.expect("run");
    assert!(report.recorder.recorded > 0);
    assert_eq!(
        counter.load(Ordering::SeqCst),
        0,
        "the disabled listener never ran"
    );
    let skipped = db
        .scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'counting' AND error LIKE 'skipped: the listener is disabled (too noisy)%' AND attempts = 0")
        .await;
    assert!(skipped > 0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'counting'")
            .await,
        skipped,
        "every run of the disabled listener is recorded as skipped"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter WHERE listener_name = 'counting' AND replayed_at IS NULL")
            .await,
        skipped,
        "and kept for replay"
    );
    assert!(
        db.scalar(
            "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'message_logger'"
        )
        .await
            > 0
    );
}

#[tokio::test]
async fn disable_then_list_shows_the_listener_disabled_with_the_reason() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(None, &db.url, "");
    let cfg = s.config_path.display().to_string();

    let out = zel_async(args(&cfg, &["disable", "message_logger", "--reason", "x"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Disabled `message_logger` as alice"));

    let out = zel_async(args(&cfg, &["list"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("message_logger"))
        .expect(&stdout);
    assert!(lines[i].contains(" disabled "), "{stdout}");
    assert!(
        lines[i + 1].contains("disabled by alice") && lines[i + 1].ends_with(": x"),
        "{stdout}"
    );
    let tracker = lines
        .iter()
        .find(|l| l.starts_with("user_activity_tracker"))
        .expect(&stdout);
    assert!(
        tracker.contains(" yes ") && tracker.contains(" never "),
        "{tracker}"
    );

    let out = zel_async(args(&cfg, &["enable", "message_logger"])).await;
    assert!(out.status.success());
    let out = zel_async(args(&cfg, &["list"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("disabled"), "{stdout}");
    assert_eq!(
        db.text_pairs("SELECT action, actor FROM event_listeners_audit ORDER BY id")
            .await
            .into_iter()
            .map(|(a, who)| (a, who.map(|w| w.starts_with("alice"))))
            .collect::<Vec<_>>(),
        vec![
            ("disable".to_owned(), Some(true)),
            ("enable".to_owned(), Some(true))
        ]
    );
}

#[tokio::test]
async fn unknown_listeners_exit_2_naming_the_available_ones_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("never.db");
    let s = setup(None, &format!("sqlite://{}", db_path.display()), "");
    let cfg = s.config_path.display().to_string();
    for rest in [
        vec!["replay", "--listener", "nope"],
        vec!["disable", "nope"],
        vec!["enable", "nope"],
    ] {
        let out = zel_async(args(&cfg, &rest)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rest:?}: {stderr}");
        assert!(
            stderr.contains("`nope`") && stderr.contains("message_logger"),
            "{stderr}"
        );
    }
    let out = zel_async(args(&cfg, &["list"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("there is no database at"), "{stdout}");
    assert!(
        !db_path.exists(),
        "neither a refused command nor list creates a database"
    );
}

async fn replay_command_reruns_dead_letters(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 1).await;
    s.record(
        "default",
        &[run(ids[0], "message_logger", 2, true, Utc::now())],
        Some(ids[0]),
    )
    .await
    .unwrap();
    let setup = setup(None, &db.url, "");
    let cfg = setup.config_path.display().to_string();

    let out = zel_async(args(
        &cfg,
        &["replay", "--listener", "message_logger", "--since", "1h"],
    ))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "inbox {} (message, dead letter 1): succeeded on attempt 3",
            ids[0]
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("Replayed 1 event(s) through `message_logger`"),
        "{stdout}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        1,
        "the replayed run's records are committed with it"
    );
    assert_eq!(
        db.text_pairs("SELECT action, target FROM event_listeners_audit")
            .await,
        vec![("replay".to_owned(), Some("message_logger".to_owned()))]
    );

    // Nothing pending now; asking for an event without any run is an error.
    let out = zel_async(args(&cfg, &["replay", "--listener", "message_logger"])).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("No pending dead letters"));
    let out = zel_async(args(
        &cfg,
        &[
            "replay",
            "--listener",
            "user_activity_tracker",
            "--event",
            &ids[0].to_string(),
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    db.drop_db().await;
}

both_backends!(replay_command_reruns_dead_letters =>
    replay_command_reruns_dead_letters_on_sqlite,
    replay_command_reruns_dead_letters_on_postgres);
