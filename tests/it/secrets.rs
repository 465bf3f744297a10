//! Secrets never leak, and never sit where others can read them: the API
//! key, the Basic-auth value carrying it (base64 of `email:key`) and a
//! webhook secret are nowhere in the daemon's output at trace level, its
//! errors, `/health`, `/metrics`, `list` or any database row, through
//! register, polls, a 429, a dropped connection, a 5xx, a webhook failure,
//! a panicking listener and a 401; secret files others may read, and plain
//! http to another host, are refused at `check-config`.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zulip_event_listeners::app::{AppError, RunOptions};

use crate::support::fake_zulip::{FakeOptions, FakeZulip, Fault, FaultPlan};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
const WEBHOOK_SECRET: &str = "whsec-never-logged-4242";

/// Standard base64 (with padding), for the Basic-auth value.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What must never appear: the key, the Basic-auth value, the webhook secret.
fn forbidden(fake: &FakeZulip) -> Vec<String> {
    let basic = base64(format!("{}:{}", fake.email(), fake.api_key()).as_bytes());
    vec![fake.api_key().to_owned(), basic, WEBHOOK_SECRET.to_owned()]
}

/// Panics naming the place and the line where a forbidden string is.
fn assert_clean(place: &str, text: &str, forbidden: &[String]) {
    for secret in forbidden {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{place} holds a secret: {line}");
        }
    }
}

/// Faults on the event queue: a 429, a dropped connection and a 500 among
/// the polls.
fn poll_faults() -> FaultPlan {
    FaultPlan {
        every: vec![
            (3, Fault::RateLimit { retry_after: 0.05 }),
            (4, Fault::DropConnection),
            (5, Fault::ServerError),
        ],
        only_paths: Some(vec!["/events".to_owned()]),
    }
}

fn unauthorized() -> FaultPlan {
    FaultPlan {
        every: vec![(1, Fault::Unauthorized)],
        only_paths: None,
    }
}

async fn get_text(url: &str) -> String {
    let response = reqwest::get(url).await.expect(url);
    response.text().await.expect(url)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

#[tokio::test]
async fn the_binary_at_trace_level_never_shows_the_key_in_logs_health_metrics_list_or_rows() {
    let fake = FakeZulip::start(FakeOptions::default()).await;
    let receiver = Receiver::start(|_| Answer::text(500, "receiver is down")).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let s = setup(Some(&fake), &db.url, "");
    let secret = s.dir.path().join("hook.secret");
    write_secret(&secret, &format!("{WEBHOOK_SECRET}\n"));
    let port = free_port();
    let config = s.dir.path().join("trace.toml");
    std::fs::write(
        &config,
        format!(
            "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{}\"\n[http]\nbind = \"127.0.0.1:{port}\"\n\
             [logging]\nlevel = \"trace\"\n[network]\nbackoff_cap = 0.05\n[queue]\nmax_retries = 0\n\
             [error_handling]\ncircuit_breaker_threshold = 0\n\
             [listeners]\nenabled = [\"message_logger\", \"hook\"]\n\
             [listeners.hook]\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
            s.dir.path().join("zuliprc").display(),
            db.url,
            receiver.url("/hook"),
            secret.display()
        ),
    )
    .unwrap();
    let log = s.dir.path().join("stderr.log");
    let mut child = daemon_command(&config)
        .env("RUST_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn the daemon");

    assert!(eventually(WAIT, || async { fake.register_count() >= 1 }).await);
    fake.set_faults(poll_faults());
    for i in 0..6 {
        fake.send_channel_message(
            10 + i,
            &format!("u{i}@example.com"),
            "general",
            "t",
            "hello",
        );
    }
    let faulted = || {
        let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
        statuses.contains(&429) && statuses.contains(&500)
    };
    assert!(
        eventually(WAIT, || async {
            count(&db, "SELECT count(*) FROM event_listeners_inbox").await >= 6
                && receiver.deliveries().len() >= 6
                && faulted()
        })
        .await,
        "the events are stored and the webhook failed, through the faults: {}",
        stderr_of(&log)
    );
    let base = format!("http://127.0.0.1:{port}");
    let health = get_text(&format!("{base}/health")).await;
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(metrics.contains("zulip_event_listeners_"), "{metrics}");

    fake.set_faults(unauthorized());
    let status = wait_exit(&mut child, WAIT)
        .await
        .expect("a 401 stops the daemon");
    assert_eq!(status.code(), Some(3), "{}", stderr_of(&log));
    let out = zel_async(args(&config.display().to_string(), &["list"])).await;
    let list = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(list.contains("hook"), "{list}");
    let rows = db.all_text().await.join("\n");
    let stderr = stderr_of(&log);

    // The capture really is at trace level, down to the HTTP stack.
    assert!(stderr.contains("TRACE"), "trace lines are written");
    assert!(
        stderr.contains("hyper") || stderr.contains("reqwest"),
        "HTTP stack traced"
    );
    assert!(
        stderr.contains("401") || stderr.contains("nauthorized"),
        "{stderr}"
    );
    assert!(
        rows.contains("receiver is down"),
        "the webhook failure is recorded"
    );
    let forbidden = forbidden(&fake);
    assert_clean("the daemon's stderr", &stderr, &forbidden);
    assert_clean("/health", &health, &forbidden);
    assert_clean("/metrics", &metrics, &forbidden);
    assert_clean("`list`", &list, &forbidden);
    assert_clean("the database", &rows, &forbidden);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn a_panicking_listener_and_a_401_leak_nothing(backend: Backend) {
    // On this test's single-threaded runtime every task of the daemon runs
    // on this thread, under this subscriber.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let extra = "[listeners]\nenabled = [\"panicking\", \"message_logger\"]\n[network]\nbackoff_cap = 0.05\n";
    let mut app = TestApp::new(backend, FakeOptions::default(), extra).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    db.migrate().await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() >= 1 }).await);
    fake.set_faults(poll_faults());
    for i in 0..4 {
        fake.send_channel_message(10 + i, "u@example.com", "general", "t", "boom");
    }
    let panicked = "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = 'panicking' AND NOT success";
    assert!(
        eventually(WAIT, || async { count(&db, panicked).await >= 4 }).await,
        "every run of the panicking listener is recorded as failed"
    );
    let base = format!("http://{}", app.address());
    let health = get_text(&format!("{base}/health")).await;
    let metrics = get_text(&format!("{base}/metrics")).await;
    fake.set_faults(unauthorized());
    assert!(eventually(WAIT, || async { app.is_finished() }).await);
    let err = app.wait().await.expect_err("a 401 stops the daemon");
    assert!(matches!(err, AppError::Auth(_)), "{err:?}");
    let error = format!("{err}\n{err:?}\n{:?}", app.setup.config);
    let rows = db.all_text().await.join("\n");
    let logs = captured.text();

    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "captured");
    assert!(rows.contains("panick"), "the panic is recorded: {rows}");
    let forbidden = forbidden(&fake);
    assert_clean("the logs", &logs, &forbidden);
    assert_clean("the error", &error, &forbidden);
    assert_clean("/health", &health, &forbidden);
    assert_clean("/metrics", &metrics, &forbidden);
    assert_clean("the database", &rows, &forbidden);
    std::io::stderr().flush().ok();
}

both_backends!(a_panicking_listener_and_a_401_leak_nothing =>
    a_panicking_listener_and_a_401_leak_nothing_on_sqlite,
    a_panicking_listener_and_a_401_leak_nothing_on_postgres);

#[test]
fn check_config_refuses_a_zuliprc_others_may_read_naming_the_chmod_unless_allowed() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let zulip = zulip_section(dir.path());
    let zuliprc = dir.path().join("zuliprc");
    std::fs::set_permissions(&zuliprc, std::fs::Permissions::from_mode(0o644)).unwrap();
    let password = dir.path().join("db.password");
    std::fs::write(&password, "pw\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o640)).unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "{zulip}[database]\nurl = \"postgres://u@127.0.0.1:1/db\"\npassword_file = \"{}\"\n",
            password.display()
        ),
    )
    .unwrap();
    let cfg = path.display().to_string();
    let out = zel(&["--config", &cfg, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for file in [&zuliprc, &password] {
        assert!(
            stderr.contains(&format!("run `chmod 600 {}`", file.display())),
            "both files are named at once: {stderr}"
        );
    }
    let out = zel(&[
        "--allow-insecure-permissions",
        "--config",
        &cfg,
        "check-config",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("--allow-insecure-permissions"), "{stdout}");
}

#[test]
fn check_config_refuses_a_plain_http_site_on_another_host_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let zuliprc = dir.path().join("zuliprc");
    write_secret(
        &zuliprc,
        "[api]\nemail=bot@example.com\nkey=k\nsite=http://chat.example.com\n",
    );
    let path = dir.path().join("c.toml");
    let zulip = format!("[zulip]\nzuliprc = \"{}\"\n", zuliprc.display());
    std::fs::write(&path, &zulip).unwrap();
    let cfg = path.display().to_string();
    let out = zel(&["--config", &cfg, "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("http://chat.example.com/api/v1/ is plain http:// on another host"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_insecure_http = true"), "{stderr}");
    std::fs::write(&path, format!("{zulip}allow_insecure_http = true\n")).unwrap();
    let out = zel(&["--config", &cfg, "check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
