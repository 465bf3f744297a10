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
    // A home without a ~/.zuliprc: no credentials either.
    let home = dir.path().display().to_string();
    let out = zel_env(
        &["--config", &path.display().to_string(), "check-config"],
        &[("HOME", &home)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "performance.handler_timeout",
        "logging.colour",
        "spam_filter",
        "credentials: Zulip API key (ZULIP_API_KEY) and email (ZULIP_EMAIL) not specified",
        "5 problem(s)",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
}

/// A config naming `zuliprc` (with `zuliprc_text` there, unless `None`)
/// and `database_url`.
fn config_with(dir: &std::path::Path, zuliprc_text: Option<&str>, database_url: &str) -> String {
    let zuliprc = dir.join("zuliprc");
    if let Some(text) = zuliprc_text {
        write_secret(&zuliprc, text);
    }
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{database_url}\"\n",
            zuliprc.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn check_config_fails_as_run_would_on_a_missing_zuliprc_or_one_without_a_site() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("e.db").display());
    let missing = config_with(dir.path(), None, &db);
    let out = zel(&["--config", &missing, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "2 problem(s)",
        "zuliprc does not exist",
        "missing Zulip server URL",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }

    let no_site = config_with(dir.path(), Some("[api]\nemail=bot@x.org\nkey=k\n"), &db);
    let out = zel(&["--config", &no_site, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing Zulip server URL"), "{stderr}");

    let good = config_with(
        dir.path(),
        Some("[api]\nemail=bot@x.org\nkey=k\nsite=chat.x.org\n"),
        &db,
    );
    let out = zel(&["--config", &good, "check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Zulip credentials load: bot@x.org at https://chat.x.org/api/v1/"),
        "{stdout}"
    );
}

#[test]
fn check_config_fails_on_a_log_file_run_could_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("e.db").display());
    let cfg = config_with(
        dir.path(),
        Some("[api]\nemail=bot@x.org\nkey=k\nsite=chat.x.org\n"),
        &db,
    );
    // A directory where the log file should be.
    let log = dir.path().join("logs");
    std::fs::create_dir(&log).unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("[logging]\nfile = \"{}\"\n", log.display()));
    std::fs::write(&cfg, text).unwrap();
    let out = zel(&["--config", &cfg, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot open the log file"), "{stderr}");
}

#[test]
fn check_config_reports_a_bad_database_url_and_bad_credentials_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        Some("[api]\nemail=bot@x.org\nkey=k\nsite=chat.x.org\ninsecure=perhaps\n"),
        "mysql://db.example.com/events",
    );
    let out = zel(&["--config", &cfg, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "2 problem(s)",
        "database.url",
        "must start with sqlite:",
        "insecure to \"perhaps\"",
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
        format!(
            "{}[network]\nmax_retries = 3\n[error_handling]\ndegraded_after = \"1m\"\n",
            zulip_section(dir.path())
        ),
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
    // Their zuliprc (/etc/zulip-event-listeners/zuliprc) is not on the test
    // machine: the environment supplies the credentials instead, as it may
    // in production.
    let creds = [
        ("ZULIP_EMAIL", "listener-bot@chat.example.com"),
        ("ZULIP_API_KEY", "0123456789abcdef"),
        ("ZULIP_SITE", "https://chat.example.com"),
    ];
    for name in ["config/example.toml", "config/production.toml"] {
        let out = zel_env(
            &[
                "--config",
                &repo().join(name).display().to_string(),
                "check-config",
            ],
            &creds,
        );
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
    // The event log is a view of two tables on PostgreSQL.
    sqlx::query("UPDATE event_listeners_eventlog_rows SET timestamp = now() - interval '10 days' WHERE id % 3 = 0")
        .execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE event_listeners_eventruns SET logged_at = now() - interval '10 days' WHERE id % 3 = 0")
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

/// `test` routes recorded events through the configured instances and
/// their filters, prints what runs, and checks the pairs against a file.
#[test]
fn test_prints_which_instances_run_each_event_and_checks_the_expected_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"
[listeners]
enabled = ["support_log", "user_activity_tracker"]
[listeners.support_log]
kind = "message_logger"
channels = ["support"]
"#,
    )
    .unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        [
            r#"{"type":"message","id":1,"message":{"id":11,"sender_id":3,"sender_email":"a@x","display_recipient":"support","subject":"t","timestamp":1790000000,"content":"help"}}"#,
            r#"{"type":"message","id":2,"message":{"id":12,"sender_id":3,"sender_email":"a@x","display_recipient":"general","subject":"t","timestamp":1790000000,"content":"hi"}}"#,
            r#"{"type":"realm_emoji","op":"update","id":3,"realm_emoji":{}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let (cfg, ev) = (config.display().to_string(), events.display().to_string());

    let out = zel(&["--config", &cfg, "test", &ev, "--run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("line 1 (id 1, message in #support > t"),
        "{stdout}"
    );
    assert!(
        lines[0].ends_with("support_log, user_activity_tracker"),
        "{stdout}"
    );
    assert!(
        stdout.contains("support_log: message log row for message 11"),
        "{stdout}"
    );
    let general = lines.iter().find(|l| l.starts_with("line 2")).unwrap();
    assert!(
        general.contains("skipped: support_log (listener_filter)"),
        "{general}"
    );
    assert!(!stdout.contains("message 12"), "{stdout}");

    let pairs = zel(&["--config", &cfg, "test", &ev, "--pairs"]);
    let pairs_text = String::from_utf8_lossy(&pairs.stdout).to_string();
    assert_eq!(
        pairs_text,
        "1 support_log\n1 user_activity_tracker\n2 user_activity_tracker\n"
    );
    let expect = dir.path().join("expected.txt");
    std::fs::write(&expect, format!("# reviewed\n{pairs_text}")).unwrap();
    let e = expect.display().to_string();
    assert!(zel(&["--config", &cfg, "test", &ev, "--expect", &e])
        .status
        .success());

    std::fs::write(&expect, "1 support_log\n2 support_log\n").unwrap();
    let differ = zel(&["--config", &cfg, "test", &ev, "--expect", &e]);
    assert_eq!(differ.status.code(), Some(1));
    let err = String::from_utf8_lossy(&differ.stderr);
    assert!(err.contains("expected, not run: 2 support_log"), "{err}");
    assert!(
        err.contains("run, not expected: 1 user_activity_tracker"),
        "{err}"
    );
}

/// `test` reads its file as `run --events` does: a line that is not UTF-8
/// or is over the 16 MiB line limit is skipped and named with its number,
/// the lines after it still run, and the exit is 1.
#[test]
fn test_skips_a_line_that_is_not_utf8_or_too_long_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[listeners]\nenabled = [\"user_activity_tracker\"]\n",
    )
    .unwrap();
    let event = |id: i64, pad: usize| {
        format!(
            r#"{{"type":"message","id":{id},"message":{{"id":{id},"sender_id":3,"sender_email":"a@x","display_recipient":"general","subject":"t","timestamp":1790000000,"content":"{}"}}}}"#,
            "x".repeat(pad)
        )
    };
    let mut text = Vec::new();
    text.extend_from_slice(event(1, 1).as_bytes());
    text.extend_from_slice(b"\n{\"type\":\"x\",\"id\":2,\"s\":\"\xff\"}\n");
    // A valid event, but longer than the limit: never held whole.
    text.extend_from_slice(event(3, 17 << 20).as_bytes());
    text.extend_from_slice(b"\n{not json\n");
    text.extend_from_slice(event(5, 1).as_bytes());
    text.push(b'\n');
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, &text).unwrap();
    let (cfg, ev) = (config.display().to_string(), events.display().to_string());

    let out = zel(&["--config", &cfg, "test", &ev]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("line 1 (id 1, message"), "{stdout}");
    let in_file = event(1, 1).len() + 1 + 24;
    assert_eq!(
        lines[1],
        format!("line 2: skipped: not UTF-8: byte 0xFF at byte 24 of the line (byte {in_file} of the file)"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("line 3: skipped: longer than the 16 MiB line limit ("),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("line 4: malformed, skipped: "),
        "{stdout}"
    );
    assert!(lines[4].starts_with("line 5 (id 5, message"), "{stdout}");
    assert!(stderr.contains("3 line(s) skipped"), "{stderr}");
}

/// The example binary registers its own listener, runs the daemon's whole
/// command line, and its `Record::Data` rows are written with its runs.
#[test]
fn a_custom_listener_binary_runs_every_subcommand_and_stores_its_data() {
    let example = repo().join("target/debug/examples/custom_listener");
    assert!(
        example.exists(),
        "{} is missing: build the examples first (`cargo test --all-targets`, as ./scripts/test does)",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data.db");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[listeners]\nenabled = [\"last_word\", \"message_logger\"]\n",
            db.display()
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(&example)
            .args(["--config", &cfg])
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let list = run(&["list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("last_word ") && l.contains(" yes ")),
        "{listed}"
    );
    let sample = repo().join("examples/sample-events.jsonl");
    let out = run(&["run", "--events", &sample.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Twice: the second run stores nothing new and writes no data twice.
    let again = run(&["run", "--events", &sample.display().to_string()]);
    assert!(again.status.success());

    let rows: Vec<(String, String)> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query_as("SELECT key, value FROM event_listeners_listenerdata WHERE listener_name = 'last_word' ORDER BY key")
            .fetch_all(&pool)
            .await
            .unwrap()
    });
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"channel:general"), "{rows:?}");
    let general: serde_json::Value =
        serde_json::from_str(&rows[keys.iter().position(|k| *k == "channel:general").unwrap()].1)
            .unwrap();
    // The last message of #general in the sample is the one the data keeps.
    let last_general = std::fs::read_to_string(&sample)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "message" && e["message"]["display_recipient"] == "general")
        .map(|e| e["message"]["id"].as_i64().unwrap())
        .next_back()
        .unwrap();
    assert_eq!(general["message_id"].as_i64(), Some(last_general));
}

/// `completions` and `man` come from the clap definitions and need no
/// configuration: a config path that does not exist is never read.
#[test]
fn completions_and_the_man_page_print_without_a_config_file() {
    let missing = "/nonexistent/zulip-event-listeners.toml";
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(["--config", missing])
            .args(args)
            .env_remove("ZULIP_EVENT_LISTENERS_CONFIG")
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("rotate-key"), "{bash}");
    assert!(bash.contains("--allow-insecure-permissions"), "{bash}");
    for shell in ["zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(script.contains("rotate-key"), "{shell}: {script}");
    }
    let man = run(&["man"]);
    assert!(man.contains("\n.TH zulip-event-listeners 1"), "{man}");
    assert!(man.contains(".SH SYNOPSIS"), "{man}");
    assert!(man.contains("new\\-key\\-file"), "{man}");
}
