//! `contrib/backup.sh` and the README's restore steps, for real: a running
//! daemon's database is backed up while events flow, restored into a fresh
//! database, and a daemon started on it against the same fake Zulip must
//! end with every message once, on both backends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
const LOGGER: &str = "[listeners]\nenabled = [\"message_logger\"]\n";

/// Runs `contrib/backup.sh --config CONFIG --out OUT` to its end (with
/// `path` as its `PATH` when given) and returns the directory it wrote,
/// which it names on its first line.
async fn backup(config: &Path, out: &Path, path: Option<&Path>) -> PathBuf {
    let (config, out, path) = (config.to_owned(), out.to_owned(), path.map(Path::to_owned));
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(repo().join("contrib/backup.sh"));
        command.arg("--config").arg(&config).arg("--out").arg(&out);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        command.output().expect("run contrib/backup.sh")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "backup.sh failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    let dir = first
        .strip_prefix("zulip-event-listeners backup in ")
        .and_then(|d| d.strip_suffix(':'))
        .unwrap_or_else(|| panic!("backup.sh names its directory: {stdout}"));
    PathBuf::from(dir)
}

/// The README's restore: the SQLite file copied into place, or
/// `pg_restore` into the (fresh) database.
fn restore(dir: &Path, into: &TestDb) {
    match into.backend {
        Backend::Sqlite => {
            std::fs::copy(dir.join("events.db"), into.sqlite_path()).expect("copy the backup");
        }
        Backend::Postgres => {
            let status = Command::new("pg_restore")
                .args(["--clean", "--if-exists", "--no-owner", "--exit-on-error"])
                .arg(format!("--dbname={}", into.url))
                .arg(dir.join("database.pgdump"))
                .status()
                .expect("run pg_restore");
            assert!(status.success(), "pg_restore succeeds");
        }
    }
}

/// A directory to be the whole `PATH` of a host without `sqlite3`: the
/// tools `backup.sh` needs besides it, python3 included.
fn path_without_sqlite3() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let which = |tool: &str| {
        let out = Command::new("which").arg(tool).output().expect("run which");
        assert!(out.status.success(), "{tool} is installed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    for tool in ["env", "bash", "sed", "date", "mkdir", "cp", "chmod", "head"] {
        std::os::unix::fs::symlink(which(tool), dir.path().join(tool)).unwrap();
    }
    // The interpreter itself, not a shim that looks for others on PATH.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("run python3");
    let python = PathBuf::from(String::from_utf8(python.stdout).unwrap().trim());
    std::os::unix::fs::symlink(python, dir.path().join("python3")).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("a backed-up file")
        .permissions()
        .mode()
        & 0o777
}

/// The message ids in the message log, in order.
async fn logged(db: &TestDb) -> Vec<i64> {
    let rows: Vec<(i64,)> = db
        .rows("SELECT message_id FROM event_listeners_messagelog ORDER BY message_id")
        .await;
    rows.into_iter().map(|(id,)| id).collect()
}

/// Every message once: in the inbox, in the message log, and with one
/// `message_logger` run each.
async fn assert_each_once(db: &TestDb, sent: &[i64]) {
    assert_eq!(
        logged(db).await,
        sent,
        "the message log holds each message once"
    );
    let inbox: Vec<(i64,)> = db
        .rows("SELECT message_id FROM event_listeners_inbox WHERE event_type = 'message' ORDER BY message_id")
        .await;
    let inbox: Vec<i64> = inbox.into_iter().map(|(id,)| id).collect();
    assert_eq!(inbox, sent, "the inbox holds each message once");
    let runs = db
        .scalar(
            "SELECT count(*) FROM event_listeners_eventlog e JOIN event_listeners_inbox i ON i.id = e.inbox_id \
             WHERE e.listener_name = 'message_logger' AND i.event_type = 'message'",
        )
        .await;
    assert_eq!(
        runs,
        sent.len() as i64,
        "message_logger ran once per message"
    );
}

fn send(fake: &FakeZulip, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| fake.send_channel_message(10, "a@example.com", "general", "t", &format!("m{i}")))
        .collect()
}

async fn wait_logged(db: &TestDb, n: usize) {
    assert!(
        eventually(WAIT, || async {
            db.try_scalar("SELECT count(*) FROM event_listeners_messagelog")
                .await
                == Some(n as i64)
        })
        .await,
        "{n} messages are logged"
    );
}

/// A fresh database holding the backup in `dir`, on the same fake Zulip.
async fn restored(app: &TestApp, dir: &Path) -> TestApp {
    let fresh = TestDb::new(app.db.backend).await;
    restore(dir, &fresh);
    app.on_same_zulip(fresh, LOGGER)
}

/// Backed up while messages arrive, then more messages acknowledged to
/// Zulip after the backup, then more while the daemon is stopped: the
/// restored cursor is older than what Zulip pruned, so the queue is lost
/// and `GET /messages` backfills what came after the backup. Every
/// message ends up once.
async fn a_backup_taken_while_events_flow_restores_every_message_once(backend: Backend) {
    let mut app = TestApp::new(backend, FakeOptions::default(), LOGGER).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let mut sent = send(&fake, 5);
    wait_logged(&db, 5).await;

    // Messages keep coming while the backup runs.
    let flowing = Arc::new(AtomicBool::new(true));
    let sender = tokio::spawn({
        let (fake, flowing) = (fake.clone(), flowing.clone());
        async move {
            let mut ids = Vec::new();
            while flowing.load(Ordering::Relaxed) {
                ids.extend(send(&fake, 1));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        }
    });
    let out = tempfile::tempdir().unwrap();
    let dir = backup(&app.setup.config_path, out.path(), None).await;
    flowing.store(false, Ordering::Relaxed);
    sent.extend(sender.await.unwrap());
    // Stored and acknowledged after the backup.
    sent.extend(send(&fake, 3));
    wait_logged(&db, sent.len()).await;
    let queue = fake.queue_ids().pop().expect("the daemon's queue");
    assert!(eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await);
    app.stop().await.expect("clean stop");
    // Zulip holds these for the stopped daemon.
    sent.extend(send(&fake, 2));

    assert_eq!(mode(&dir.join("config.toml")), 0o600);
    assert_eq!(mode(&dir.join("zuliprc")), 0o600);
    assert_eq!(
        std::fs::read(dir.join("zuliprc")).unwrap(),
        std::fs::read(app.setup.dir.path().join("zuliprc")).unwrap()
    );

    let mut back = restored(&app, &dir).await;
    let in_backup = back
        .db
        .pairs("SELECT id, message_id FROM event_listeners_inbox ORDER BY id")
        .await;
    assert!(in_backup.len() >= 5, "the backup holds the first messages");
    assert!(
        in_backup.len() < sent.len(),
        "the messages after the backup are not in it"
    );
    let (registry, _) = registry_with_test_listeners();
    back.start(registry, RunOptions::default()).await;
    wait_logged(&back.db, sent.len()).await;
    back.stop().await.expect("clean stop");

    assert_each_once(&back.db, &sent).await;
    let after = back
        .db
        .pairs("SELECT id, message_id FROM event_listeners_inbox ORDER BY id")
        .await;
    assert!(
        in_backup.iter().all(|row| after.contains(row)),
        "the backup's rows are kept as they were"
    );
    assert_eq!(fake.register_count(), 2, "the pruned queue was replaced");
    assert!(
        back.db
            .scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled")
            .await
            > 0,
        "the messages after the backup were backfilled"
    );
}

both_backends!(a_backup_taken_while_events_flow_restores_every_message_once =>
    a_backup_taken_while_events_flow_restores_every_message_once_on_sqlite,
    a_backup_taken_while_events_flow_restores_every_message_once_on_postgres);

/// Nothing acknowledged after the backup: the restored daemon resumes the
/// same queue at the backup's cursor and gets what Zulip held meanwhile,
/// with no backfill. (On SQLite, the backup is made without `sqlite3`.)
async fn a_restored_backup_resumes_the_queue_zulip_still_holds(backend: Backend) {
    // No heartbeat is acknowledged after the backup either.
    let opts = FakeOptions {
        heartbeat: Duration::from_secs(3600),
        ..FakeOptions::default()
    };
    let mut app = TestApp::new(backend, opts, LOGGER).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let mut sent = send(&fake, 4);
    wait_logged(&db, 4).await;
    let queue = fake.queue_ids().pop().expect("the daemon's queue");
    // Acknowledged: the daemon's next poll pruned them.
    assert!(eventually(WAIT, || async { fake.pending(&queue) == Some(0) }).await);
    let out = tempfile::tempdir().unwrap();
    // On SQLite, the backup python3 makes where sqlite3 is not installed.
    let path = (backend == Backend::Sqlite).then(path_without_sqlite3);
    let dir = backup(
        &app.setup.config_path,
        out.path(),
        path.as_ref().map(|p| p.path()),
    )
    .await;
    app.stop().await.expect("clean stop");
    sent.extend(send(&fake, 3));
    assert_eq!(fake.pending(&queue), Some(3), "Zulip holds them");

    let mut back = restored(&app, &dir).await;
    let (registry, _) = registry_with_test_listeners();
    back.start(registry, RunOptions::default()).await;
    wait_logged(&back.db, sent.len()).await;
    back.stop().await.expect("clean stop");

    assert_each_once(&back.db, &sent).await;
    assert_eq!(fake.register_count(), 1, "the queue was resumed");
    assert_eq!(
        back.db
            .scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled")
            .await,
        0,
        "all came from the queue"
    );
}

both_backends!(a_restored_backup_resumes_the_queue_zulip_still_holds =>
    a_restored_backup_resumes_the_queue_zulip_still_holds_on_sqlite,
    a_restored_backup_resumes_the_queue_zulip_still_holds_on_postgres);
