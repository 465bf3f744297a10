//! Dead-letter triage on both stores: what a dead letter records (stage,
//! class, first and last failure), the filters of `deadletters
//! list|retry|delete`, the retention, a refused reply as a stage-`reply`
//! dead letter put back in the outbox by a retry, older rows filled in by
//! the migration, the `deadletters_pending` gauge, and the binary's
//! `deadletters` commands.

use std::time::Duration;

use chrono::{DateTime, Utc};
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::{Record, Registry, Reply, ReplyTo};
use zulip_event_listeners::store::{
    DeadLetterFilter, DeadLetterStatus, ErrorClass, RunRecord, Stage, Store,
};

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

/// A run of `listener` on `inbox_id` that failed for the last time at
/// `last` as `class`, its first try at `first`; successful without a class.
fn run(
    inbox_id: i64,
    listener: &str,
    class: Option<ErrorClass>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: listener.into(),
        event_type: "message".into(),
        success: class.is_none(),
        attempts: 3,
        error: class.map(|c| format!("failed as {c}")),
        duration: Duration::from_millis(2),
        finished_at: last,
        records: vec![],
        dead_letter: class.and_then(|c| dead_letter_of(c, first)),
        fallback: Default::default(),
    }
}

fn filter() -> DeadLetterFilter {
    DeadLetterFilter::default()
}

/// Inbox ids of the dead letters `f` selects on `s`, as listed.
async fn listed(s: &dyn Store, f: DeadLetterFilter) -> Vec<i64> {
    s.list_dead_letters(&f)
        .await
        .unwrap()
        .iter()
        .map(|d| d.inbox_id)
        .collect()
}

async fn filters_select_the_same_rows_to_list_delete_and_retain(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 4).await;
    let now = Utc::now();
    let old = now - chrono::Duration::days(3);
    s.record(
        "default",
        &[
            run(
                ids[0],
                "hook",
                Some(ErrorClass::Transient),
                old - chrono::Duration::hours(1),
                old,
            ),
            run(ids[1], "hook", Some(ErrorClass::Timeout), now, now),
            run(ids[2], "other", Some(ErrorClass::Permanent), now, now),
            run(ids[3], "hook", None, now, now),
        ],
        Some(ids[3]),
    )
    .await
    .unwrap();

    let all = s.list_dead_letters(&filter()).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.inbox_id).collect::<Vec<_>>(),
        [ids[2], ids[1], ids[0]],
        "pending ones, newest first; the success is none"
    );
    let first = &all[2];
    assert_eq!(
        (first.stage, first.error_class),
        (Stage::Run, ErrorClass::Transient)
    );
    assert_eq!(first.status, DeadLetterStatus::Pending);
    assert_eq!(first.attempts, 3);
    assert_eq!(first.organization, "default");
    let span = first.last_failed_at - first.first_failed_at;
    assert!(
        (span.num_seconds() - 3600).abs() <= 1,
        "first and last failure an hour apart: {span}"
    );

    let hook = || DeadLetterFilter {
        listener: Some("hook".into()),
        ..filter()
    };
    assert_eq!(listed(s.as_ref(), hook()).await, [ids[1], ids[0]]);
    let timeout = DeadLetterFilter {
        class: Some(ErrorClass::Timeout),
        ..filter()
    };
    assert_eq!(listed(s.as_ref(), timeout).await, [ids[1]]);
    let recent = DeadLetterFilter {
        since: Some(now - chrono::Duration::hours(1)),
        ..filter()
    };
    assert_eq!(listed(s.as_ref(), recent).await, [ids[2], ids[1]]);
    let newest = DeadLetterFilter {
        limit: Some(1),
        ..hook()
    };
    assert_eq!(listed(s.as_ref(), newest).await, [ids[1]]);
    assert!(s.dead_letter(all[0].id).await.unwrap().is_some());
    assert!(s.dead_letter(999_999).await.unwrap().is_none());

    // A retried one is resolved, not gone.
    s.mark_replayed(&[all[1].id], true).await.unwrap();
    assert_eq!(listed(s.as_ref(), filter()).await, [ids[2], ids[0]]);
    let status = |status| DeadLetterFilter { status, ..filter() };
    assert_eq!(
        listed(s.as_ref(), status(DeadLetterStatus::Resolved)).await,
        [ids[1]]
    );
    assert_eq!(
        listed(s.as_ref(), status(DeadLetterStatus::Failed)).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        listed(s.as_ref(), status(DeadLetterStatus::Any))
            .await
            .len(),
        3
    );
    let mut counts = s.pending_dead_letter_counts().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("default".to_owned(), "hook".to_owned(), 1),
            ("default".to_owned(), "other".to_owned(), 1)
        ]
    );

    let permanent = DeadLetterFilter {
        class: Some(ErrorClass::Permanent),
        status: DeadLetterStatus::Any,
        ..filter()
    };
    assert_eq!(s.delete_dead_letters(&permanent).await.unwrap(), 1);
    assert_eq!(s.delete_dead_letters(&permanent).await.unwrap(), 0);
    // Retention: any status, by the last failure.
    assert_eq!(
        s.retain_dead_letters(now - chrono::Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        listed(s.as_ref(), status(DeadLetterStatus::Any)).await,
        [ids[1]],
        "the recent resolved one is kept"
    );
    db.drop_db().await;
}

both_backends!(filters_select_the_same_rows_to_list_delete_and_retain =>
    filters_select_the_same_rows_to_list_delete_and_retain_on_sqlite,
    filters_select_the_same_rows_to_list_delete_and_retain_on_postgres);

/// Stores a message and a run of `ops` on it with one reply; its inbox id.
async fn queue_reply(s: &std::sync::Arc<dyn Store>) -> i64 {
    let inbox_id = append_messages(s, "default", 1, 1).await[0];
    let reply = Record::Reply(Reply {
        to: ReplyTo::Channel {
            channel: "ops".into(),
            topic: "t".into(),
        },
        content: "hi".into(),
    });
    let mut ok = run(inbox_id, "ops", None, Utc::now(), Utc::now());
    ok.records = vec![reply];
    s.record("default", &[ok], None).await.unwrap();
    inbox_id
}

async fn a_refused_reply_is_a_reply_dead_letter_that_a_retry_requeues(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let inbox_id = queue_reply(&s).await;
    let row = s.open_replies("default", 10).await.unwrap().remove(0);
    s.mark_reply_failed(row.id, "STREAM_DOES_NOT_EXIST")
        .await
        .unwrap();
    s.mark_reply_failed(row.id, "STREAM_DOES_NOT_EXIST")
        .await
        .unwrap();

    let letters = s.list_dead_letters(&filter()).await.unwrap();
    assert_eq!(
        letters.len(),
        1,
        "one dead letter, however often it is marked"
    );
    let d = &letters[0];
    assert_eq!(
        (d.stage, d.error_class),
        (Stage::Reply, ErrorClass::Permanent)
    );
    assert_eq!((d.listener.as_str(), d.inbox_id), ("ops", inbox_id));
    assert_eq!(d.error.as_deref(), Some("STREAM_DOES_NOT_EXIST"));
    assert!(
        s.dead_letters("ops", None, None, false)
            .await
            .unwrap()
            .is_empty(),
        "`replay` leaves refused replies to the reply sender"
    );

    assert_eq!(s.requeue_failed_replies("ops", inbox_id).await.unwrap(), 1);
    assert_eq!(
        s.open_replies("default", 10).await.unwrap().len(),
        1,
        "open again"
    );
    assert_eq!(s.requeue_failed_replies("ops", inbox_id).await.unwrap(), 0);
    db.drop_db().await;
}

both_backends!(a_refused_reply_is_a_reply_dead_letter_that_a_retry_requeues =>
    a_refused_reply_is_a_reply_dead_letter_that_a_retry_requeues_on_sqlite,
    a_refused_reply_is_a_reply_dead_letter_that_a_retry_requeues_on_postgres);

/// Dead letters written before the triage columns get a stage, a class
/// read from their error, and their created_at as both failure times.
async fn older_dead_letters_are_filled_in_by_the_migration(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.migrate_before(20261203000007).await;
    let at = "2026-11-30T12:00:00Z";
    db.execute(&format!(
        "INSERT INTO event_listeners_inbox (id, instance, queue_id, event_id, event_type, raw, received_at)
         VALUES (1, 'default', 'q', 1, 'message', '{{}}', '{at}')"
    ))
    .await;
    let rows = [
        ("skipped: the listener''s circuit is open", 0),
        ("timed out after 30.000 s", 1),
        ("panicked: boom", 1),
        ("HTTP 503", 3),
        ("HTTP 400", 1),
    ];
    for (error, attempts) in rows {
        db.execute(&format!(
            "INSERT INTO event_listeners_deadletter (listener_name, inbox_id, event_type, error, attempts, created_at)
             VALUES ('hook', 1, 'message', '{error}', {attempts}, '{at}')"
        ))
        .await;
    }

    db.migrate().await;

    let s = db.store().await;
    let mut letters = s.list_dead_letters(&filter()).await.unwrap();
    letters.reverse();
    assert_eq!(
        letters.iter().map(|d| d.error_class).collect::<Vec<_>>(),
        [
            ErrorClass::Circuit,
            ErrorClass::Timeout,
            ErrorClass::Panic,
            ErrorClass::Transient,
            ErrorClass::Permanent
        ]
    );
    let created: DateTime<Utc> = at.parse().unwrap();
    for d in &letters {
        assert_eq!(d.stage, Stage::Run);
        assert_eq!((d.first_failed_at, d.last_failed_at), (created, created));
    }
    db.drop_db().await;
}

both_backends!(older_dead_letters_are_filled_in_by_the_migration =>
    older_dead_letters_are_filled_in_by_the_migration_on_sqlite,
    older_dead_letters_are_filled_in_by_the_migration_on_postgres);

async fn the_pending_gauge_counts_each_listeners_dead_letters(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    let s = app.db.store().await;
    let ids = append_messages(&s, "default", 1, 2).await;
    let now = Utc::now();
    s.record(
        "default",
        &[
            run(
                ids[0],
                "message_logger",
                Some(ErrorClass::Transient),
                now,
                now,
            ),
            run(ids[1], "message_logger", Some(ErrorClass::Panic), now, now),
        ],
        Some(ids[1]),
    )
    .await
    .unwrap();
    app.start(Registry::builtin(), RunOptions::default()).await;

    let gauge = "zulip_event_listeners_deadletters_pending";
    let app_ref = &app;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            app_ref
                .metrics()
                .await
                .sample(gauge, &[("listener", "message_logger")])
                == Some(2.0)
        })
        .await,
        "two pending dead letters of message_logger"
    );
    assert_eq!(
        app.metrics()
            .await
            .sample(gauge, &[("listener", "user_activity_tracker")]),
        Some(0.0),
        "a listener without dead letters is shown at 0"
    );
    app.stop().await.expect("clean stop");
}

both_backends!(the_pending_gauge_counts_each_listeners_dead_letters =>
    the_pending_gauge_counts_each_listeners_dead_letters_on_sqlite,
    the_pending_gauge_counts_each_listeners_dead_letters_on_postgres);

fn out(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn the_deadletters_commands_list_show_retry_and_delete_by_filter(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 3).await;
    let now = Utc::now();
    s.record(
        "default",
        &[
            run(
                ids[0],
                "message_logger",
                Some(ErrorClass::Transient),
                now,
                now,
            ),
            run(
                ids[1],
                "message_logger",
                Some(ErrorClass::Permanent),
                now,
                now,
            ),
            run(
                ids[2],
                "user_activity_tracker",
                Some(ErrorClass::Timeout),
                now,
                now,
            ),
        ],
        Some(ids[2]),
    )
    .await
    .unwrap();
    let setup = setup(None, &db.url, "");
    let cfg = setup.config_path.display().to_string();
    let zel = |rest: &[&str]| zel_async(args(&cfg, rest));

    let o = zel(&["deadletters", "list", "--listener", "message_logger"]).await;
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(
        stdout
            .contains("2 dead letter(s) (status pending, listener message_logger, the newest 100)"),
        "{stdout}"
    );
    assert!(!stdout.contains("user_activity_tracker"), "{stdout}");

    let o = zel(&[
        "deadletters",
        "list",
        "--class",
        "timeout",
        "--since",
        "1h",
        "--json",
    ])
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON array");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["listener"], "user_activity_tracker");
    assert_eq!(listed[0]["error_class"], "timeout");
    assert_eq!(listed[0]["stage"], "run");
    let o = zel(&["deadletters", "list", "--class", "fatal"]).await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown class is a usage error"
    );

    let id = listed[0]["id"].as_i64().unwrap().to_string();
    let o = zel(&["deadletters", "show", &id]).await;
    let (stdout, _) = out(&o);
    assert!(stdout.contains("error class:     timeout"), "{stdout}");
    assert!(
        stdout.contains(&format!("inbox event:     {} (message)", ids[2])),
        "{stdout}"
    );
    assert_eq!(
        zel(&["deadletters", "show", "999999"]).await.status.code(),
        Some(1)
    );

    // RUST_LOG=info: the progress lines are info lines.
    let retry: Vec<String> = args(
        &cfg,
        &[
            "deadletters",
            "retry",
            "--listener",
            "message_logger",
            "--class",
            "transient",
        ],
    );
    let retry: Vec<&str> = retry.iter().map(String::as_str).collect();
    let o = zel_env(&retry, &[("RUST_LOG", "info")]);
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Retried 1 dead letter(s)"), "{stdout}");
    assert!(stdout.contains("1 resolved, 0 failed"), "{stdout}");
    assert!(
        stderr.contains("Retrying dead letters: started")
            && stderr.contains("Retrying dead letters: done"),
        "off a terminal, plain log lines: {stderr}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_messagelog")
            .await,
        1,
        "the retried run's rows are committed"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter WHERE replay_success")
            .await,
        1,
        "resolved, not deleted"
    );
    let o = zel(&["deadletters", "list", "--status", "resolved"]).await;
    assert!(
        out(&o)
            .0
            .contains("1 dead letter(s) (status resolved, the newest 100)"),
        "{}",
        out(&o).0
    );

    let o = zel(&["deadletters", "delete"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).1.contains("needs a filter"), "{}", out(&o).1);
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter")
            .await,
        3
    );
    let o = zel(&["deadletters", "delete", "--class", "timeout"]).await;
    assert!(
        out(&o)
            .0
            .contains("Deleted 1 dead letter(s) (status any, class timeout)."),
        "{}",
        out(&o).0
    );
    let o = zel(&["deadletters", "delete", "--all"]).await;
    assert!(
        out(&o).0.contains("Deleted 2 dead letter(s)"),
        "{}",
        out(&o).0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_deadletter")
            .await,
        0
    );
    assert_eq!(
        db.text_pairs("SELECT action, outcome FROM event_listeners_audit ORDER BY id")
            .await,
        [
            ("retry-deadletters", "ok"),
            ("delete-deadletters", "ok"),
            ("delete-deadletters", "ok")
        ]
        .map(|(a, o)| (a.to_owned(), Some(o.to_owned())))
        .to_vec()
    );
    db.drop_db().await;
}

both_backends!(the_deadletters_commands_list_show_retry_and_delete_by_filter =>
    the_deadletters_commands_list_show_retry_and_delete_by_filter_on_sqlite,
    the_deadletters_commands_list_show_retry_and_delete_by_filter_on_postgres);

async fn cleanup_applies_the_deadletter_retention(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    let ids = append_messages(&s, "default", 1, 2).await;
    let now = Utc::now();
    let old = now - chrono::Duration::days(10);
    s.record(
        "default",
        &[
            run(
                ids[0],
                "message_logger",
                Some(ErrorClass::Transient),
                old,
                old,
            ),
            run(
                ids[1],
                "message_logger",
                Some(ErrorClass::Transient),
                now,
                now,
            ),
        ],
        Some(ids[1]),
    )
    .await
    .unwrap();
    let setup = setup(
        None,
        &db.url,
        "[error_handling]\ndeadletter_retention_days = 7\n",
    );
    let cfg = setup.config_path.display().to_string();
    let o = zel_async(args(&cfg, &["cleanup", "--days", "365"])).await;
    let (stdout, stderr) = out(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("Deleted 1 dead letter(s) whose last failure is older than 7 day(s)"),
        "{stdout}"
    );
    assert_eq!(
        listed(s.as_ref(), filter()).await,
        [ids[1]],
        "the recent one is kept"
    );
    db.drop_db().await;
}

both_backends!(cleanup_applies_the_deadletter_retention =>
    cleanup_applies_the_deadletter_retention_on_sqlite,
    cleanup_applies_the_deadletter_retention_on_postgres);
