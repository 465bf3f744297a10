//! Fresh databases, daemon set-ups and polling helpers.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use zulip_event_listeners::app::{self, AppError, RunOptions, RunReport};
use zulip_event_listeners::config::Config;
use zulip_event_listeners::listeners::Registry;

use super::fake_zulip::FakeZulip;

/// The PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of either backend; PostgreSQL ones are dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("events.db").display());
                TestDb {
                    url,
                    backend,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL tests need a server: cannot connect to {admin}: {e}.\n\
                         Start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                         or run ./scripts/test, which does) or set TEST_DATABASE_URL to a server where the user may CREATE DATABASE."
                    )
                });
                let name = format!("zel_test_{}", rand_suffix());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("CREATE DATABASE");
                let url = match admin.rfind('/') {
                    Some(i) if admin[..i].contains("://") && i > admin.find("://").unwrap() + 2 => {
                        format!("{}/{name}", &admin[..i])
                    }
                    _ => format!("{admin}/{name}"),
                };
                TestDb {
                    url,
                    backend,
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// Drops a PostgreSQL database (no-op for SQLite, whose temp dir goes away).
    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }

    /// Runs `migrate` (PostgreSQL databases are not migrated by `run`).
    pub async fn migrate(&self) {
        let url = self.url.parse().expect("database URL");
        let store = zulip_event_listeners::store::open(&url, &Default::default())
            .await
            .expect("open store");
        store.migrate().await.expect("migrate");
    }

    /// One integer from a query such as `SELECT count(*) FROM …`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("sqlite");
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect(sql)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("postgres");
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect(sql)
            }
        }
    }

    /// Like [`TestDb::scalar`], but `None` while the database or table does
    /// not exist yet (the daemon creates them), for polling.
    pub async fn try_scalar(&self, sql: &str) -> Option<i64> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                if !Path::new(path).exists() {
                    return None;
                }
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.ok()?;
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .ok()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.ok()?;
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .ok()
            }
        }
    }

    /// `(a, b)` integer rows of a query.
    pub async fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("sqlite");
                sqlx::query_as::<_, (i64, i64)>(sql)
                    .fetch_all(&mut c)
                    .await
                    .expect(sql)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("postgres");
                sqlx::query_as::<_, (i64, i64)>(sql)
                    .fetch_all(&mut c)
                    .await
                    .expect(sql)
            }
        }
    }

    /// `(text, text)` rows of a query.
    pub async fn text_pairs(&self, sql: &str) -> Vec<(String, Option<String>)> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("sqlite");
                sqlx::query_as(sql).fetch_all(&mut c).await.expect(sql)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("postgres");
                sqlx::query_as(sql).fetch_all(&mut c).await.expect(sql)
            }
        }
    }
}

fn rand_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// A directory with a zuliprc for `fake` and a config file.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
}

/// Writes a zuliprc for `fake` (or a bogus one) and a config using `db_url`,
/// with `extra` TOML appended to the `[performance]`-less base.
pub fn setup(fake: Option<&FakeZulip>, db_url: &str, extra: &str) -> Setup {
    setup_with_key(fake, db_url, extra, fake.map(|f| f.api_key().to_owned()))
}

pub fn setup_with_key(
    fake: Option<&FakeZulip>,
    db_url: &str,
    extra: &str,
    key: Option<String>,
) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let zuliprc = dir.path().join("zuliprc");
    let (email, site) = match fake {
        Some(f) => (f.email().to_owned(), f.site()),
        None => (
            "nobody@example.com".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
    };
    std::fs::write(
        &zuliprc,
        format!(
            "[api]\nemail={email}\nkey={}\nsite={site}\n",
            key.unwrap_or_else(|| "x".into())
        ),
    )
    .expect("write zuliprc");
    let text = format!(
        "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{db_url}\"\n[http]\nbind = \"off\"\n{}{extra}\n",
        zuliprc.display(),
        reliability_defaults(extra)
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &text).expect("write config");
    let config = Config::parse(&text, &known_listener_names()).expect("valid test config");
    Setup {
        dir,
        config_path,
        config,
    }
}

/// Tests see each failure as it happens: no retries and no circuit
/// breaker, unless the test configures `[queue]` or `[error_handling]`.
fn reliability_defaults(extra: &str) -> String {
    let mut s = String::new();
    if !extra.contains("[queue]") {
        s.push_str("[queue]\nmax_retries = 0\n");
    }
    if !extra.contains("[error_handling]") {
        s.push_str("[error_handling]\ncircuit_breaker_threshold = 0\n");
    }
    s
}

fn known_listener_names() -> Vec<&'static str> {
    vec![
        "message_logger",
        "user_activity_tracker",
        "failing",
        "panicking",
        "hanging",
        "counting",
        "flaky",
        "order_probe",
    ]
}

/// The daemon running in-process.
pub struct Running {
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<RunReport, AppError>>,
}

impl Running {
    /// Asks for shutdown and waits for the report.
    pub async fn stop(self) -> Result<RunReport, AppError> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("daemon stops within a minute")
            .expect("daemon task does not panic")
    }
}

/// Starts `app::run` in a task.
pub fn start(config: &Config, registry: Registry, opts: RunOptions) -> Running {
    let token = CancellationToken::new();
    let config = config.clone();
    let t = token.clone();
    let handle = tokio::spawn(async move { app::run(&config, &registry, &opts, t).await });
    Running { token, handle }
}

/// Polls `check` every 50 ms until it returns true; false after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon binary built by cargo for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zulip-event-listeners"))
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Shared handle used by test listeners to count calls.
pub type Counter = Arc<std::sync::atomic::AtomicU64>;
