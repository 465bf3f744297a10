//! The binary's subcommands and exit codes.

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

#[tokio::test]
async fn a_wrong_api_key_exits_with_code_3_and_one_clear_line() {
    let fake = FakeZulip::start(FakeOptions::default()).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup_with_key(Some(&fake), &db.url, "", Some("wrong-key".into()));
    let cfg = s.config_path.display().to_string();
    let out = zel_async(["--config", &cfg, "run"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("401"), "{stderr}");
    assert!(
        !stderr.contains("wrong-key"),
        "the key never appears in output"
    );
    assert_eq!(
        fake.register_count(),
        0,
        "no queue is registered with bad credentials"
    );
}

#[test]
fn check_config_names_every_mistake_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[performance]\nhandler_timeout = \"soon\"\n[logging]\nlevel = \"WARNING\"\ncolour = true\n[listeners]\nenabled = [\"message_logger\", \"spam_filter\"]\n",
    )
    .unwrap();
    let out = zel(&["--config", &path.display().to_string(), "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "performance.handler_timeout",
        "logging.colour",
        "spam_filter",
        "3 problem(s)",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
}

#[test]
fn check_config_says_the_guides_network_max_retries_is_no_longer_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guide.toml");
    std::fs::write(
        &path,
        "[network]\nmax_retries = 3\n[error_handling]\ndegraded_after = \"1m\"\n",
    )
    .unwrap();
    let out = zel(&["--config", &path.display().to_string(), "check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[network] max_retries is no longer used") && stdout.contains("(1m)"),
        "{stdout}"
    );
}

#[test]
fn the_shipped_configs_are_valid() {
    for name in ["config/example.toml", "config/production.toml"] {
        let out = zel(&[
            "--config",
            &repo().join(name).display().to_string(),
            "check-config",
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn list_shows_each_listener_with_its_types_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[listeners]\nenabled = [\"message_logger\"]\n").unwrap();
    let out = zel(&["--config", &path.display().to_string(), "list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let logger = stdout
        .lines()
        .find(|l| l.starts_with("message_logger"))
        .expect(&stdout);
    assert!(
        logger.contains("yes") && logger.contains("message"),
        "{logger}"
    );
    let tracker = stdout
        .lines()
        .find(|l| l.starts_with("user_activity_tracker"))
        .expect(&stdout);
    assert!(
        tracker.contains(" no ") && tracker.contains("reaction"),
        "{tracker}"
    );
}

#[tokio::test]
async fn migrate_applies_once_then_reports_up_to_date_and_cleanup_counts_rows() {
    let db = TestDb::new(Backend::Postgres).await;
    let s = setup(None, &db.url, "");
    let cfg = s.config_path.display().to_string();
    let first = zel_async(["--config", &cfg, "migrate"]).await;
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(out.contains("Applied 20261127000001 initial"), "{out}");
    let second = zel_async(["--config", &cfg, "migrate"]).await;
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));

    // Old rows go, new rows stay.
    let sample = repo()
        .join("examples/sample-events.jsonl")
        .display()
        .to_string();
    let run = zel_async(["--config", &cfg, "run", "--events", &sample]).await;
    assert!(run.status.success());
    let inbox = db
        .scalar("SELECT count(*) FROM event_listeners_inbox")
        .await;
    let log = db
        .scalar("SELECT count(*) FROM event_listeners_eventlog")
        .await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query("UPDATE event_listeners_inbox SET received_at = now() - interval '10 days' WHERE id % 2 = 0")
        .execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE event_listeners_eventlog SET timestamp = now() - interval '10 days' WHERE id % 3 = 0")
        .execute(&mut conn).await.unwrap();
    let old_inbox = db
        .scalar("SELECT count(*) FROM event_listeners_inbox WHERE id % 2 = 0")
        .await;
    let old_log = db
        .scalar("SELECT count(*) FROM event_listeners_eventlog WHERE id % 3 = 0")
        .await;
    let cleanup = zel_async(["--config", &cfg, "cleanup", "--days", "7"]).await;
    let out = String::from_utf8_lossy(&cleanup.stdout);
    assert!(
        cleanup.status.success(),
        "{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    assert!(
        out.contains(&format!(
            "Deleted {old_log} event log row(s) and {old_inbox} inbox row(s)"
        )),
        "{out}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox")
            .await,
        inbox - old_inbox
    );
    assert!(
        db.scalar("SELECT count(*) FROM event_listeners_eventlog")
            .await
            <= log - old_log
    );
    db.drop_db().await;
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n",
            dir.path().join("events.db").display()
        ),
    )
    .unwrap();
    let sample = repo().join("examples/sample-events.jsonl");
    let out = std::process::Command::new(bin())
        .args(["--config", &cfg.display().to_string(), "run", "--events"])
        .arg(&sample)
        .env("RUST_LOG", "info")
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Starting"),
        "info lines are logged: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI escape codes when stderr is not a terminal (journald, redirects): {stderr:?}"
    );
}
