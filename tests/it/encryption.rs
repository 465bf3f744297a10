//! Encryption at rest (issue 14, item 4): with `encrypt_sensitive_data`
//! on, no database row holds a distinctive message in plain text, while
//! the responder still answers it (the reply sender reads the sealed
//! outbox) and `replay` reruns it; `rotate-key` moves every row, plain
//! ones too, to a new key, resumes after being killed between batches,
//! and runs while the daemon goes on answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::{Record, Registry, Reply, ReplyTo};
use zulip_event_listeners::store::{
    Aad, Cipher, CryptoError, Keyring, RunRecord, StoreError, StoreOptions,
};

use crate::replies::RESPONDER;
use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const SECRET_WORD: &str = "zebra-falcon-7731";

/// The id of the key written `hex`.
fn id_of(hex: &str) -> String {
    Keyring::parse(hex, "test").unwrap().primary().to_string()
}

/// A cipher over the keys written `hexes`, encrypting with the first.
fn cipher(hexes: &[&str]) -> Cipher {
    let ring = Keyring::parse(&hexes.join("\n"), "test").unwrap();
    Cipher::new(Some(Arc::new(ring)), true)
}

/// `[data_protection]` encrypting with the keys of `key_file`.
fn encrypting(key_file: &Path) -> String {
    format!(
        "[data_protection]\nencrypt_sensitive_data = true\nkey_file = \"{}\"\n",
        key_file.display()
    )
}

/// How many rows of `table` are under key `hex` ('' for plain ones).
async fn under(db: &TestDb, table: &str, hex: Option<&str>) -> i64 {
    let sql = match hex {
        Some(h) => format!("SELECT count(*) FROM {table} WHERE key_id = '{}'", id_of(h)),
        None => format!("SELECT count(*) FROM {table} WHERE key_id IS NULL"),
    };
    count(db, &sql).await
}

async fn sealed_rows_hold_no_plain_text_and_the_daemon_and_replay_read_them(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("keys");
    write_secret(&key_file, &format!("{OLD}\n"));
    let extra = format!("{RESPONDER}{}", encrypting(&key_file));
    let mut app = TestApp::new(backend, FakeOptions::default(), &extra).await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    let command = format!("!ping {SECRET_WORD}");
    fake.send_channel_message(7, "ada@example.com", "ops", "deploys", &command);
    assert!(
        eventually(WAIT, || async { fake.sent_messages().len() == 1 }).await,
        "the command is answered: the sender opened the sealed reply"
    );
    assert_eq!(
        fake.sent_messages()[0].content,
        format!("pong ada (deploys) {SECRET_WORD}")
    );
    let ops_runs = "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'ops'";
    assert!(eventually(WAIT, || async { count(&db, ops_runs).await >= 2 }).await);
    app.stop().await.expect("a clean stop");

    let leaks: Vec<String> = db
        .all_text()
        .await
        .into_iter()
        .filter(|t| t.contains(SECRET_WORD) || t.contains("pong ada"))
        .collect();
    assert!(leaks.is_empty(), "plain text in the database: {leaks:?}");
    let inbox = "event_listeners_inbox";
    assert_eq!(under(&db, inbox, None).await, 0);
    assert!(
        under(&db, inbox, Some(OLD)).await >= 2,
        "the command and the echo"
    );
    assert_eq!(
        under(&db, "event_listeners_replyoutbox", Some(OLD)).await,
        1
    );

    let command_row = db
        .scalar("SELECT min(id) FROM event_listeners_inbox WHERE event_type = 'message'")
        .await
        .to_string();
    let cfg = app.setup.config_path.display().to_string();
    let out = zel_async(args(
        &cfg,
        &["replay", "--listener", "ops", "--event", &command_row],
    ))
    .await;
    assert!(
        out.status.success(),
        "replay reads the sealed event: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Replayed 1 event(s) through `ops` for inbox event")
            && stdout.contains(": 1 succeeded, 0 failed"),
        "{stdout}"
    );
}

both_backends!(sealed_rows_hold_no_plain_text_and_the_daemon_and_replay_read_them =>
    sealed_rows_hold_no_plain_text_and_the_daemon_and_replay_read_them_on_sqlite,
    sealed_rows_hold_no_plain_text_and_the_daemon_and_replay_read_them_on_postgres);

/// A run of `listener` on `inbox_id` storing data `n` and replying `hello n`.
fn run_with_records(inbox_id: i64, n: i64) -> RunRecord {
    RunRecord {
        inbox_id,
        listener: "bot".into(),
        event_type: "message".into(),
        success: true,
        attempts: 1,
        error: None,
        duration: Duration::from_millis(1),
        finished_at: chrono::Utc::now(),
        records: vec![
            Record::Data {
                key: format!("k{n}"),
                value: serde_json::json!({ "n": n }),
            },
            Record::Reply(Reply {
                to: ReplyTo::Channel {
                    channel: "ops".into(),
                    topic: "t".into(),
                },
                content: format!("hello {n}"),
            }),
        ],
        dead_letter: None,
        fallback: Default::default(),
    }
}

/// Stores 20 plain events (with their listener data and replies), then 40
/// under the old key.
async fn mixed_rows(db: &TestDb) {
    let plain = db.store().await;
    let ids = append_messages(&plain, "default", 1, 20).await;
    let runs: Vec<RunRecord> = ids.iter().map(|&id| run_with_records(id, id)).collect();
    plain.record("default", &runs, None).await.unwrap();
    let opts = StoreOptions {
        cipher: cipher(&[OLD]),
        ..StoreOptions::default()
    };
    let old = open_migrated(&db.url, &opts).await;
    let ids = append_messages(&old, "default", 21, 40).await;
    let runs: Vec<RunRecord> = ids.iter().map(|&id| run_with_records(id, id)).collect();
    old.record("default", &runs, None).await.unwrap();
}

const SEALED: [&str; 3] = [
    "event_listeners_inbox",
    "event_listeners_listenerdata",
    "event_listeners_replyoutbox",
];

/// Rows of the three tables under `hex` (plain ones when `None`).
async fn total_under(db: &TestDb, hex: Option<&str>) -> i64 {
    let mut n = 0;
    for t in SEALED {
        n += under(db, t, hex).await;
    }
    n
}

fn rotate_args(cfg: &str, new_key_file: &Path, rest: &[&str]) -> Vec<String> {
    let file = new_key_file.display().to_string();
    let mut a = args(cfg, &["rotate-key", "--new-key-file", &file]);
    a.extend(rest.iter().map(|s| (*s).to_owned()));
    a
}

async fn rotate_key_moves_every_row_and_resumes_after_a_kill(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.migrate().await;
    mixed_rows(&db).await;
    assert_eq!(total_under(&db, None).await, 60);
    assert_eq!(total_under(&db, Some(OLD)).await, 120);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("keys");
    let new_key_file = keys.path().join("new.key");
    write_secret(&new_key_file, NEW);
    let s = setup(None, &db.url, &encrypting(&key_file));
    let cfg = s.config_path.display().to_string();

    // The new key must lead key_file, so that the daemon writes under it.
    write_secret(&key_file, &format!("{OLD}\n{NEW}\n"));
    let out = zel_async(rotate_args(&cfg, &new_key_file, &[])).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("key {} ", id_of(NEW))), "{err}");
    assert!(err.contains("is not the first key"), "{err}");
    write_secret(&key_file, &format!("{NEW}\n{OLD}\n"));

    let mut child = Command::new(bin())
        .args(rotate_args(
            &cfg,
            &new_key_file,
            &["--batch-size", "5", "--pause", "300ms"],
        ))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rotate-key");
    assert!(
        eventually(WAIT, || async { total_under(&db, Some(NEW)).await > 0 }).await,
        "a first batch commits"
    );
    child.kill().expect("kill rotate-key");
    child.wait().expect("reap rotate-key");
    let moved = total_under(&db, Some(NEW)).await;
    assert!(moved < 180, "killed before the end: {moved} rows moved");
    assert_eq!(moved % 5, 0, "whole batches only: {moved}");

    let out = zel_async(rotate_args(&cfg, &new_key_file, &[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} row(s) rewritten", 180 - moved)),
        "the run resumes where the killed one stopped: {stdout}"
    );
    assert!(stdout.contains("No row is under another key"), "{stdout}");
    assert_eq!(total_under(&db, Some(NEW)).await, 180);

    // Every row reads back under the new key alone, as it was written.
    let opts = StoreOptions {
        cipher: cipher(&[NEW]),
        ..StoreOptions::default()
    };
    let store = open_migrated(&db.url, &opts).await;
    let unfinished = store.unfinished("default").await.unwrap();
    assert_eq!(unfinished.len(), 60);
    for u in &unfinished {
        assert_eq!(
            u.stored.event.raw(),
            message_event(u.stored.event.id()).raw()
        );
    }
    let replies = store.open_replies("default", 100).await.unwrap();
    assert_eq!(replies.len(), 60);
    assert!(replies
        .iter()
        .all(|r| r.content == format!("hello {}", r.inbox_id)));
    let data: Vec<(String, String, String)> = db
        .rows("SELECT key, CAST(value AS TEXT), key_id FROM event_listeners_listenerdata")
        .await;
    let new_only = cipher(&[NEW]);
    for (key, value, key_id) in &data {
        let row = Aad::ListenerData {
            listener: "bot",
            key,
        };
        let plain = new_only.open_json(Some(key_id), &row, value).unwrap();
        let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(format!("k{}", plain["n"]), *key);
    }

    // The old key alone reads nothing, and says which key is missing.
    let opts = StoreOptions {
        cipher: cipher(&[OLD]),
        ..StoreOptions::default()
    };
    let old_only = open_migrated(&db.url, &opts).await;
    match old_only.unfinished("default").await {
        Err(StoreError::Crypto(CryptoError::UnknownKey(_, id, _))) => assert_eq!(id, id_of(NEW)),
        other => panic!("an unknown key is an error naming it: {other:?}"),
    }
    let audited = db
        .scalar("SELECT count(*) FROM event_listeners_audit WHERE action = 'rotate-key' AND outcome = 'ok'")
        .await;
    assert_eq!(
        audited, 1,
        "the finished run is audited (the killed one wrote nothing)"
    );
    db.drop_db().await;
}

both_backends!(rotate_key_moves_every_row_and_resumes_after_a_kill =>
    rotate_key_moves_every_row_and_resumes_after_a_kill_on_sqlite,
    rotate_key_moves_every_row_and_resumes_after_a_kill_on_postgres);

async fn the_daemon_answers_on_while_rotate_key_runs(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("keys");
    let new_key_file: PathBuf = keys.path().join("new.key");
    write_secret(&key_file, OLD);
    write_secret(&new_key_file, NEW);
    let extra = format!("{RESPONDER}{}", encrypting(&key_file));
    let mut app = TestApp::new(backend, FakeOptions::default(), &extra).await;
    app.db.migrate().await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let ping = |n: usize| {
        fake.send_channel_message(7, "ada@example.com", "ops", "t", &format!("echo {n}"));
    };
    for n in 0..20 {
        ping(n);
    }
    assert!(eventually(WAIT, || async { fake.sent_messages().len() == 20 }).await);
    app.stop().await.expect("a clean stop");

    // The operator's procedure: the new key first, the daemon restarted.
    write_secret(&key_file, &format!("{NEW}\n{OLD}\n"));
    app.start(Registry::builtin(), RunOptions::default()).await;
    let cfg = app.setup.config_path.display().to_string();
    let rotation = tokio::spawn(zel_async(rotate_args(
        &cfg,
        &new_key_file,
        &["--batch-size", "3", "--pause", "50ms"],
    )));
    for n in 20..40 {
        ping(n);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = rotation.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(WAIT, || async { fake.sent_messages().len() == 40 }).await,
        "every command is answered once: {}",
        fake.sent_messages().len()
    );
    let mut contents: Vec<String> = fake
        .sent_messages()
        .into_iter()
        .map(|m| m.content)
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..40).map(|n| format!("echo {n}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
    let ops_runs = "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'ops'";
    assert!(eventually(WAIT, || async { count(&db, ops_runs).await >= 80 }).await);
    app.stop().await.expect("a clean stop");
    assert_eq!(
        total_under(&db, Some(OLD)).await,
        0,
        "nothing is left under the old key"
    );
    assert_eq!(total_under(&db, None).await, 0);
}

both_backends!(the_daemon_answers_on_while_rotate_key_runs =>
    the_daemon_answers_on_while_rotate_key_runs_on_sqlite,
    the_daemon_answers_on_while_rotate_key_runs_on_postgres);
