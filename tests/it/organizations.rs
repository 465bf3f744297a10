//! Several organizations in one process: two `[[zulip]]` entries on two
//! fake Zulip servers share one database and one HTTP server; each one's
//! events are stored under its name and dispatched to its listeners; a key
//! revoked in one stops that one (unhealthy in `/health`) while the other
//! stores every event; `[security] allowed_realms` refuses an organization
//! at `check-config`; a single `[zulip]` reports as before; the built-in
//! message log and user activity keep each organization's rows apart when
//! both reuse a message id and a user id.

use std::time::Duration;

use chrono::Utc;
use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::store::RunRecord;

use crate::support::fake_zulip::{FakeOptions, FakeZulip, Fault, FaultPlan};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// Messages of organization `instance` in the inbox.
async fn stored(db: &TestDb, instance: &str) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM event_listeners_inbox WHERE instance = '{instance}' AND event_type = 'message'"
    ))
    .await
}

/// Runs of `listener` recorded for organization `instance`'s events.
async fn runs(db: &TestDb, instance: &str, listener: &str) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM event_listeners_eventlog l JOIN event_listeners_inbox i ON i.id = l.inbox_id
         WHERE i.instance = '{instance}' AND l.listener_name = '{listener}' AND l.success"
    ))
    .await
}

fn send(fake: &FakeZulip, n: usize, topic: &str) {
    for k in 0..n {
        fake.send_channel_message(7, "user@example.com", "general", topic, &format!("m{k}"));
    }
}

/// The `/health` section of organization `name`.
fn section<'a>(health: &'a Health, name: &str) -> &'a serde_json::Value {
    let orgs = health.body["organizations"]
        .as_array()
        .expect("a list of organizations");
    orgs.iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no section for {name}: {}", health.body))
}

async fn a_revoked_key_stops_its_organization_only(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    let acme = app.fake.clone();
    let globex = FakeZulip::start(FakeOptions::default()).await;
    app.setup = setup_organizations(
        &[
            ("acme", &acme, ""),
            ("globex", &globex, "listeners = [\"counting\"]"),
        ],
        &app.db.url,
        "[listeners]\nenabled = [\"counting\", \"message_logger\"]\n",
    );
    let db = app.db.clone();
    db.migrate().await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async {
            acme.register_count() == 1 && globex.register_count() == 1
        })
        .await
    );

    // Arrange: both flow, each under its own name, to its own listeners.
    send(&acme, 10, "a");
    send(&globex, 10, "g");
    assert!(
        eventually(WAIT, || async {
            runs(&db, "acme", "counting").await == 10 && runs(&db, "globex", "counting").await == 10
        })
        .await,
        "each organization's events are stored under its name and dispatched"
    );
    assert!(
        eventually(WAIT, || async {
            runs(&db, "acme", "message_logger").await == 10
        })
        .await
    );
    assert_eq!(
        runs(&db, "globex", "message_logger").await,
        0,
        "globex selects counting only"
    );
    let metrics = app.metrics().await;
    for org in ["acme", "globex"] {
        assert_eq!(
            metrics.sample(
                "zulip_event_listeners_events_received_total",
                &[("org", org), ("type", "message")]
            ),
            Some(10.0),
            "{org}"
        );
        assert!(metrics
            .sample("zulip_event_listeners_polls_total", &[("org", org)])
            .is_some());
    }
    let health = app.health().await;
    assert_eq!(
        section(&health, "acme")["status"],
        "healthy",
        "{}",
        health.body
    );
    assert_eq!(
        section(&health, "globex")["status"],
        "healthy",
        "{}",
        health.body
    );

    // Act: globex's key is revoked mid-stream; acme goes on.
    globex.set_faults(FaultPlan {
        every: vec![(1, Fault::Unauthorized)],
        only_paths: None,
    });
    send(&acme, 40, "a");

    // Assert: globex stopped, loudly, in /health; acme stored everything.
    assert!(
        eventually(WAIT, || async {
            let health = app.health().await;
            section(&health, "globex")["status"] == "unhealthy"
        })
        .await,
        "the refused organization is unhealthy"
    );
    // Sent once refused: Zulip keeps them for a fixed key, none is stored.
    send(&globex, 5, "g");
    let health = app.health().await;
    assert_eq!(health.code, 200, "the daemon still works: {}", health.body);
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    let globex_reasons = section(&health, "globex")["reasons"].to_string();
    assert!(
        globex_reasons.contains("intake stopped"),
        "{globex_reasons}"
    );
    assert!(
        eventually(WAIT, || async { runs(&db, "acme", "counting").await == 50 }).await,
        "the other organization loses nothing"
    );
    send(&acme, 10, "a");
    assert!(
        eventually(WAIT, || async {
            runs(&db, "acme", "message_logger").await == 60
        })
        .await
    );
    assert!(
        !app.is_finished(),
        "one refused organization does not stop the daemon"
    );

    app.stop()
        .await
        .expect("a clean stop: one organization ran to the end");
    assert_eq!(
        stored(&db, "acme").await,
        60,
        "each acme message stored once"
    );
    assert_eq!(
        stored(&db, "globex").await,
        10,
        "nothing of globex's after its key was revoked"
    );
    assert_eq!(runs(&db, "globex", "counting").await, 10);
}

both_backends!(a_revoked_key_stops_its_organization_only =>
    a_revoked_key_stops_its_organization_only_on_sqlite,
    a_revoked_key_stops_its_organization_only_on_postgres);

/// One integer of organization `instance`'s row of `table` for `key`.
async fn column(db: &TestDb, table: &str, column: &str, instance: &str, key: &str) -> i64 {
    db.scalar(&format!(
        "SELECT CAST({column} AS BIGINT) FROM event_listeners_{table} WHERE instance = '{instance}' AND {key}"
    ))
    .await
}

async fn two_organizations_reusing_ids_keep_their_own_rows(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), "").await;
    let acme = app.fake.clone();
    let globex = FakeZulip::start(FakeOptions::default()).await;
    app.setup = setup_organizations(
        &[("acme", &acme, ""), ("globex", &globex, "")],
        &app.db.url,
        "[listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\"]\n",
    );
    let db = app.db.clone();
    db.migrate().await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async {
            acme.register_count() == 1 && globex.register_count() == 1
        })
        .await
    );

    // Arrange: each fake numbers its messages from 1, and user 7 is a
    // different person in each organization.
    let a = acme.send_channel_message(7, "user@acme.example", "general", "a", "hello");
    let g = globex.send_channel_message(7, "user@globex.example", "sales", "g", "hi there");
    assert_eq!(a, g, "both organizations use the same message id");
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_messagelog").await == 2
        })
        .await,
        "each organization's message is logged (the second one was dropped)"
    );
    let id = format!("message_id = {a}");
    assert_eq!(
        column(&db, "messagelog", "content_length", "acme", &id).await,
        5
    );
    assert_eq!(
        column(&db, "messagelog", "content_length", "globex", &id).await,
        8
    );

    // Act: acme's message is edited.
    acme.edit_message(a, 7, "hello, edited at acme");
    assert!(
        eventually(WAIT, || async {
            column(&db, "messagelog", "content_length", "acme", &id).await == 21
        })
        .await,
        "acme's row follows its edit"
    );

    // Assert: globex's message of the same id is as it was.
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM event_listeners_messagelog
             WHERE instance = 'globex' AND {id} AND content_length = 8 AND edited_at IS NULL
               AND channel = 'sales' AND topic = 'g'"
        ))
        .await,
        1,
        "an edit in acme leaves globex's message alone"
    );
    assert!(
        eventually(WAIT, || async {
            column(&db, "useractivity", "edit_count", "acme", "user_id = 7").await == 1
        })
        .await
    );
    for org in ["acme", "globex"] {
        assert_eq!(
            column(&db, "useractivity", "message_count", org, "user_id = 7").await,
            1,
            "{org}'s user 7 is counted apart"
        );
    }
    assert_eq!(
        column(&db, "useractivity", "edit_count", "globex", "user_id = 7").await,
        0
    );
    let _ = app.stop().await;
}

both_backends!(two_organizations_reusing_ids_keep_their_own_rows =>
    two_organizations_reusing_ids_keep_their_own_rows_on_sqlite,
    two_organizations_reusing_ids_keep_their_own_rows_on_postgres);

/// A database of the release before the organizations' keys, with rows of
/// acme and globex (or of acme alone), migrated: each message-log row
/// takes its inbox row's organization; user activity (and a message whose
/// inbox row is gone) the only organization's name, else ''.
async fn rows_logged_before_the_migration_get_their_organization(backend: Backend) {
    for (orgs, alone) in [(&["acme", "globex"][..], ""), (&["acme"][..], "acme")] {
        let db = TestDb::new(backend).await;
        db.migrate_before(20261203000005).await;
        let at = "2026-12-01T00:00:00Z";
        for (k, org) in orgs.iter().enumerate() {
            let id = k + 1;
            db.execute(&format!(
                "INSERT INTO event_listeners_cursor (instance, updated_at) VALUES ('{org}', '{at}')"
            ))
            .await;
            db.execute(&format!(
                "INSERT INTO event_listeners_inbox (id, instance, queue_id, event_id, event_type, raw, received_at)
                 VALUES ({id}, '{org}', 'q', {id}, 'message', '{{}}', '{at}')"
            ))
            .await;
            db.execute(&format!(
                "INSERT INTO event_listeners_messagelog
                   (message_id, inbox_id, sender_id, sender_email, recipient_type, content_length, sent_at)
                 VALUES ({id}, {id}, 7, 'a@example.com', 'stream', 1, '{at}')"
            ))
            .await;
        }
        db.execute(&format!(
            "INSERT INTO event_listeners_messagelog
               (message_id, inbox_id, sender_id, sender_email, recipient_type, content_length, sent_at)
             VALUES (9, 99, 7, 'a@example.com', 'stream', 1, '{at}')"
        ))
        .await;
        db.execute(&format!(
            "INSERT INTO event_listeners_useractivity (user_id, last_seen, message_count) VALUES (7, '{at}', 3)"
        ))
        .await;

        db.migrate().await;

        for (k, org) in orgs.iter().enumerate() {
            let id = k + 1;
            assert_eq!(
                column(
                    &db,
                    "messagelog",
                    "inbox_id",
                    org,
                    &format!("message_id = {id}")
                )
                .await,
                id as i64,
                "{orgs:?}: message {id} is {org}'s"
            );
        }
        assert_eq!(
            column(&db, "messagelog", "inbox_id", alone, "message_id = 9").await,
            99,
            "{orgs:?}: a message without its inbox row"
        );
        assert_eq!(
            column(&db, "useractivity", "message_count", alone, "user_id = 7").await,
            3,
            "{orgs:?}: user activity"
        );
        db.drop_db().await;
    }
}

both_backends!(rows_logged_before_the_migration_get_their_organization =>
    rows_logged_before_the_migration_get_their_organization_on_sqlite,
    rows_logged_before_the_migration_get_their_organization_on_postgres);

/// `message_logger`'s run on `inbox_id`, failed for good (a dead letter).
fn dead_run(inbox_id: i64) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: "message_logger".into(),
        event_type: "message".into(),
        success: false,
        attempts: 2,
        error: Some("down".to_owned()),
        duration: Duration::from_millis(2),
        finished_at: Utc::now(),
        records: vec![],
        dead_letter: dead_letter_of(
            zulip_event_listeners::store::ErrorClass::Transient,
            Utc::now(),
        ),
        fallback: Default::default(),
    }
}

/// Pending dead letters of organization `instance`.
async fn pending(db: &TestDb, instance: &str) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM event_listeners_deadletter d JOIN event_listeners_inbox i ON i.id = d.inbox_id
         WHERE i.instance = '{instance}' AND d.replayed_at IS NULL"
    ))
    .await
}

/// `replay --org` replays that organization's dead letters only, recorded
/// under its name; without it, the first organization's; an unknown name
/// is refused.
async fn replay_acts_on_the_organization_it_names(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store().await;
    // The same event and message ids in both organizations.
    let a = append_messages(&s, "acme", 1, 1).await[0];
    let g = append_messages(&s, "globex", 1, 1).await[0];
    s.record("acme", &[dead_run(a)], Some(a)).await.unwrap();
    s.record("globex", &[dead_run(g)], Some(g)).await.unwrap();
    let (acme, globex) = (
        FakeZulip::start(FakeOptions::default()).await,
        FakeZulip::start(FakeOptions::default()).await,
    );
    let setup = setup_organizations(&[("acme", &acme, ""), ("globex", &globex, "")], &db.url, "");
    let cfg = setup.config_path.display().to_string();
    let replay = |org: Option<&'static str>| {
        let mut args = vec!["--config", &cfg, "replay", "--listener", "message_logger"];
        if let Some(org) = org {
            args.extend(["--org", org]);
        }
        zel_async(args.into_iter().map(str::to_owned).collect::<Vec<_>>())
    };

    let out = replay(Some("initech")).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no organization is named `initech`; the organizations are: acme, globex"),
        "{stderr}"
    );

    let out = replay(Some("globex")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("inbox {g} ")), "{stdout}");
    assert!(!stdout.contains(&format!("inbox {a} ")), "{stdout}");
    assert!(stdout.contains("of organization globex"), "{stdout}");
    assert_eq!(
        (pending(&db, "acme").await, pending(&db, "globex").await),
        (1, 0)
    );
    let logged = "SELECT count(*) FROM event_listeners_messagelog WHERE instance =";
    assert_eq!(db.scalar(&format!("{logged} 'globex'")).await, 1);
    assert_eq!(db.scalar(&format!("{logged} 'acme'")).await, 0);

    let out = replay(None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pending(&db, "acme").await, 0, "the first organization's");
    assert_eq!(db.scalar(&format!("{logged} 'acme'")).await, 1);
    db.drop_db().await;
}

both_backends!(replay_acts_on_the_organization_it_names =>
    replay_acts_on_the_organization_it_names_on_sqlite,
    replay_acts_on_the_organization_it_names_on_postgres);

#[tokio::test]
async fn every_organization_refused_at_start_fails_the_start_with_the_auth_error() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let acme = app.fake.clone();
    let globex = FakeZulip::start(FakeOptions::default()).await;
    for fake in [&acme, &globex] {
        fake.set_faults(FaultPlan {
            every: vec![(1, Fault::Unauthorized)],
            only_paths: None,
        });
    }
    app.setup = setup_organizations(
        &[("acme", &acme, ""), ("globex", &globex, "")],
        &app.db.url,
        "",
    );
    let (registry, _) = registry_with_test_listeners();
    let err = app
        .try_start(registry, RunOptions::default())
        .await
        .expect_err("no organization can run");
    assert!(
        matches!(err, zulip_event_listeners::app::AppError::Auth(_)),
        "{err}"
    );
}

#[test]
fn check_config_refuses_an_organization_outside_allowed_realms() {
    let dir = tempfile::tempdir().unwrap();
    let rc = |name: &str| {
        let path = dir.path().join(format!("{name}.zuliprc"));
        write_secret(
            &path,
            &format!("[api]\nemail=bot@{name}.example\nkey=k\nsite=https://{name}.example\n"),
        );
        path.display().to_string()
    };
    let orgs = format!(
        "[[zulip]]\nname = \"acme\"\nzuliprc = \"{}\"\n[[zulip]]\nname = \"globex\"\nzuliprc = \"{}\"\n",
        rc("acme"),
        rc("globex")
    );
    let check = |security: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!("{orgs}[database]\nurl = \"sqlite::memory:\"\n{security}"),
        )
        .unwrap();
        zel(&["--config", &path.display().to_string(), "check-config"])
    };

    let refused = check("[security]\nallowed_realms = [\"acme\"]\n");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("organization `globex` is not in `security.allowed_realms`"),
        "{stderr}"
    );
    assert!(!stderr.contains("`acme` is not"), "{stderr}");

    let allowed = check("[security]\nallowed_realms = [\"acme\", \"globex\"]\n");
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(
        stdout.contains("Zulip credentials of organization acme load: bot@acme.example"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Zulip credentials of organization globex load: bot@globex.example"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_single_zulip_table_has_one_section_and_no_org_label() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let fake = app.fake.clone();
    app.start(
        zulip_event_listeners::listeners::Registry::builtin(),
        RunOptions::default(),
    )
    .await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    assert!(eventually(WAIT, || async { app.health().await.code == 200 }).await);
    let health = app.health().await;
    assert_eq!(
        section(&health, "default")["status"],
        "healthy",
        "{}",
        health.body
    );
    assert_eq!(health.body["queue"]["instance"], "default");
    let metrics = app.metrics().await;
    let polls: Vec<_> = metrics
        .samples
        .iter()
        .filter(|s| s.metric == "zulip_event_listeners_polls_total")
        .collect();
    assert_eq!(polls.len(), 1);
    assert!(
        polls[0].labels.get("org").is_none(),
        "no org label with one organization"
    );
    app.stop().await.expect("clean stop");
}
