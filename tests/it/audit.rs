//! The audit trail (issue 14, item 4): `migrate`, `disable`, `enable`,
//! `replay` and `cleanup` from the command line are one row each under
//! the Unix user, an automatic disable one under `auto-disable`; `audit
//! --since` lists them newest last (as text or `--json`); with
//! `[data_protection] audit_trail = false` nothing is written.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;
use zulip_event_listeners::app::RunOptions;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

/// Runs the binary with `rest` on `cfg`; panics unless it succeeds.
async fn ok(cfg: &str, rest: &[&str]) -> String {
    let out = zel_async(args(cfg, rest)).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{rest:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn command_line_actions_are_listed_by_audit_with_the_unix_user(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = setup(None, &db.url, "");
    let cfg = s.config_path.display().to_string();
    ok(&cfg, &["migrate"]).await;
    ok(
        &cfg,
        &["disable", "message_logger", "--reason", "disk full"],
    )
    .await;
    ok(&cfg, &["enable", "message_logger"]).await;
    ok(&cfg, &["replay", "--listener", "message_logger"]).await;
    ok(&cfg, &["cleanup", "--days", "30"]).await;

    let text = ok(&cfg, &["audit", "--since", "1h"]).await;
    let lines: Vec<&str> = text.lines().collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(4).unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        ["migrate", "disable", "enable", "replay", "cleanup"],
        "newest last:\n{text}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.split_whitespace().nth(3).unwrap().starts_with("alice")),
        "every row names the Unix user:\n{text}"
    );
    assert!(
        lines[1].contains(" message_logger ") && lines[1].ends_with(" ok      disk full"),
        "{}",
        lines[1]
    );

    let json: Vec<Value> = serde_json::from_str(&ok(&cfg, &["audit", "--json"]).await).unwrap();
    assert_eq!(json.len(), 5);
    assert_eq!(json[1]["action"], "disable");
    assert_eq!(json[1]["target"], "message_logger");
    assert_eq!(json[1]["outcome"], "ok");
    assert!(
        json[0]["detail"].as_str().unwrap().starts_with("applied "),
        "{}",
        json[0]
    );

    let later = ok(&cfg, &["audit", "--since", "2999-01-01T00:00:00Z"]).await;
    assert!(
        later.starts_with("No audit rows since 2999-01-01"),
        "{later}"
    );
    db.drop_db().await;
}

both_backends!(command_line_actions_are_listed_by_audit_with_the_unix_user =>
    command_line_actions_are_listed_by_audit_on_sqlite,
    command_line_actions_are_listed_by_audit_on_postgres);

async fn with_the_audit_trail_off_nothing_is_written(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = setup(None, &db.url, "[data_protection]\naudit_trail = false\n");
    let cfg = s.config_path.display().to_string();
    ok(&cfg, &["migrate"]).await;
    ok(&cfg, &["disable", "message_logger"]).await;
    ok(&cfg, &["cleanup", "--days", "30"]).await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_audit")
            .await,
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_listenerstate WHERE NOT enabled")
            .await,
        1,
        "the disable itself is done"
    );
    let text = ok(&cfg, &["audit"]).await;
    assert!(text.contains("audit_trail is off"), "{text}");
    db.drop_db().await;
}

both_backends!(with_the_audit_trail_off_nothing_is_written =>
    with_the_audit_trail_off_nothing_is_written_on_sqlite,
    with_the_audit_trail_off_nothing_is_written_on_postgres);

#[tokio::test]
async fn an_automatic_disable_is_audited_under_auto_disable() {
    let extra = "[listeners]\nenabled = [\"failing\"]\n[error_handling]\ncircuit_breaker_threshold = 0\nauto_disable_threshold = 2\n";
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), extra).await;
    let (registry, _) = registry_with_test_listeners();
    let opts = RunOptions {
        events_file: Some(repo().join("examples/sample-events.jsonl")),
        ..RunOptions::default()
    };
    app.start(registry, opts).await;
    app.wait().await.expect("the file run succeeds");
    assert_eq!(
        app.db
            .text_pairs("SELECT actor, action || ' ' || target || ' ' || outcome FROM event_listeners_audit")
            .await,
        vec![(
            "auto-disable".to_owned(),
            Some("disable failing ok".to_owned())
        )]
    );
}

#[tokio::test]
async fn admin_api_calls_are_listed_by_audit_with_the_token_name() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let path = app.setup.dir.path().join("tokens");
    std::fs::write(&path, "deploy-bot:0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.setup.config.http.admin_token_file = Some(path);
    app.start(
        zulip_event_listeners::listeners::Registry::builtin(),
        RunOptions::default(),
    )
    .await;
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/listeners/message_logger/disable",
            app.address()
        ))
        .bearer_auth("0123456789abcdef0123")
        .json(&serde_json::json!({"reason": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let cfg = app.setup.config_path.display().to_string();
    let text = ok(&cfg, &["audit", "--since", "1h"]).await;
    let line = text.lines().next().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words[3..],
        [
            "token:deploy-bot",
            "disable",
            "message_logger",
            "ok",
            "maintenance"
        ],
        "{text}"
    );
    app.stop().await.expect("clean stop");
}
