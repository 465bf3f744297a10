//! Cursor control (issue 15, item 3): `cursor show` prints the stored
//! queue position; `cursor rewind` re-runs exactly the chosen range for the
//! chosen listeners at the next start, and nothing else; `cursor skip`
//! keeps one event from running again for one listener and is audited;
//! both are refused while a daemon holds the instance lock.

use std::time::Duration;

use serde_json::Value;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// Runs the binary with `rest` on `cfg`: (success, stdout, stderr).
async fn cursor(cfg: &str, rest: &[&str]) -> (bool, String, String) {
    let out = zel_async(args(cfg, rest)).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary with `rest` on `cfg`; panics unless it succeeds.
async fn ok(cfg: &str, rest: &[&str]) -> String {
    let (success, stdout, stderr) = cursor(cfg, rest).await;
    assert!(success, "{rest:?}: {stdout}{stderr}");
    stdout
}

/// Runs of `listener` logged for inbox id `id`.
async fn runs(db: &TestDb, listener: &str, id: i64) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM event_listeners_eventlog
             WHERE listener_name = '{listener}' AND inbox_id = {id}"
        ),
    )
    .await
}

/// Waits until every stored event's runs are recorded.
async fn settled(db: &TestDb) -> bool {
    eventually(WAIT, || async {
        let max = count(db, "SELECT COALESCE(MAX(id), 0) FROM event_listeners_inbox").await;
        max > 0
            && count(
                db,
                "SELECT COALESCE(MAX(dispatched_through), 0) FROM event_listeners_dispatched",
            )
            .await
                == max
    })
    .await
}

both_backends!(rewind_reruns_the_chosen_range_for_the_chosen_listener_and_skip_holds =>
    rewind_reruns_the_chosen_range_on_sqlite,
    rewind_reruns_the_chosen_range_on_postgres);

async fn rewind_reruns_the_chosen_range_for_the_chosen_listener_and_skip_holds(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    app.db.migrate().await;
    let cfg = app.setup.config_path.display().to_string();
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for topic in ["one", "two", "three", "four"] {
        fake.send_channel_message(10, "a@example.com", "general", topic, "hello");
    }
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await == 4
        })
        .await
    );
    assert!(settled(&db).await, "the first runs are recorded");
    let ids: Vec<i64> = db
        .pairs("SELECT id, id FROM event_listeners_inbox ORDER BY id")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let logged = count(&db, "SELECT count(*) FROM event_listeners_eventlog").await;

    // Refused while the daemon holds the lock; nothing is written.
    let third = ids[2].to_string();
    let (success, _, stderr) = cursor(&cfg, &["cursor", "rewind", "--to-inbox-id", &third]).await;
    assert!(!success, "a rewind under a running daemon is refused");
    assert!(
        stderr.contains("another zulip-event-listeners is running"),
        "{stderr}"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_listeners_rewind").await,
        0
    );

    // show: the stored cursor.
    let text = ok(&cfg, &["cursor", "show"]).await;
    let last = ids[3].to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("dispatched through") && l.ends_with(&format!(" {last}"))),
        "{text}"
    );
    let json: Value = serde_json::from_str(&ok(&cfg, &["cursor", "show", "--json"]).await).unwrap();
    assert_eq!(json["cursor"]["dispatched_through"], ids[3]);
    assert!(
        json["cursor"]["queue_id"]
            .as_str()
            .is_some_and(|q| !q.is_empty()),
        "{json}"
    );
    assert!(
        text.contains(json["cursor"]["queue_id"].as_str().unwrap()),
        "{text}"
    );
    assert!(json["cursor"]["last_event_id"].as_i64().is_some(), "{json}");

    // rewind from the third event, for the message logger only.
    ok(
        &cfg,
        &[
            "cursor",
            "rewind",
            "--to-inbox-id",
            &third,
            "--listener",
            "message_logger",
        ],
    )
    .await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(settled(&db).await, "the rewound runs are recorded");
    app.stop().await.expect("clean stop");
    for (i, id) in ids.iter().enumerate() {
        let again = i64::from(i >= 2);
        assert_eq!(
            runs(&db, "message_logger", *id).await,
            1 + again,
            "inbox id {id}"
        );
        assert_eq!(
            runs(&db, "user_activity_tracker", *id).await,
            1,
            "inbox id {id}"
        );
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_listeners_eventlog").await,
        logged + 2,
        "nothing else ran"
    );

    // skip the last event for the message logger, then rewind it for both:
    // only the tracker runs it again.
    ok(
        &cfg,
        &[
            "cursor",
            "rewind",
            "--to-inbox-id",
            &last,
            "--listener",
            "message_logger",
            "--listener",
            "user_activity_tracker",
        ],
    )
    .await;
    ok(
        &cfg,
        &[
            "cursor",
            "skip",
            "--inbox-id",
            &last,
            "--listener",
            "message_logger",
        ],
    )
    .await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(settled(&db).await, "the rewound runs are recorded");
    app.stop().await.expect("clean stop");
    assert_eq!(runs(&db, "user_activity_tracker", ids[3]).await, 2);
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM event_listeners_eventlog
                 WHERE listener_name = 'message_logger' AND inbox_id = {last} AND attempts > 0"
            ),
        )
        .await,
        2,
        "the skipped event did not run again for the message logger"
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM event_listeners_eventlog
                 WHERE listener_name = 'message_logger' AND inbox_id = {last}
                   AND attempts = 0 AND success AND error LIKE 'skipped by operator alice%'"
            ),
        )
        .await,
        1
    );

    let audit: Vec<Value> = serde_json::from_str(&ok(&cfg, &["audit", "--json"]).await).unwrap();
    let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["cursor-rewind", "cursor-rewind", "cursor-skip"],
        "{audit:?}"
    );
    assert_eq!(audit[2]["target"], "message_logger");
    assert!(
        audit[2]["detail"].as_str().unwrap().contains(&last),
        "{}",
        audit[2]
    );

    // An event that is not stored is refused, and audited as failed.
    let (success, _, stderr) = cursor(
        &cfg,
        &[
            "cursor",
            "skip",
            "--inbox-id",
            "999999",
            "--listener",
            "message_logger",
        ],
    )
    .await;
    assert!(!success && stderr.contains("no stored event"), "{stderr}");

    // --since: by the inbox rows' time.
    let rows = count(&db, "SELECT count(*) FROM event_listeners_rewind").await;
    let later = ok(
        &cfg,
        &["cursor", "rewind", "--since", "2999-01-01T00:00:00Z"],
    )
    .await;
    assert!(later.contains("nothing changed"), "{later}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_listeners_rewind").await,
        rows
    );
    let all = ok(
        &cfg,
        &[
            "cursor",
            "rewind",
            "--since",
            "1h",
            "--listener",
            "user_activity_tracker",
        ],
    )
    .await;
    assert!(
        all.contains(&format!("4 stored event(s) from inbox id {} on", ids[0])),
        "{all}"
    );
}
