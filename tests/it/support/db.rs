//! Fresh databases: a SQLite file in a temporary directory or a new
//! PostgreSQL database, gone when the [`TestDb`] is dropped (also when the
//! test panics), and the queries tests read them with.

use std::path::Path;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, FromRow};

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

/// A fresh, empty database of either backend. Dropping it drops a
/// PostgreSQL database (and removes a SQLite file with its directory).
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

/// Runs `$body` with `$c` bound to a new connection to `$db`, of its backend.
macro_rules! with_connection {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db.backend {
            Backend::Sqlite => {
                let mut $c = sqlx::SqliteConnection::connect(&$db.url)
                    .await
                    .expect("connect to SQLite");
                $body
            }
            Backend::Postgres => {
                let mut $c = sqlx::PgConnection::connect(&$db.url)
                    .await
                    .expect("connect to PostgreSQL");
                $body
            }
        }
    };
}

impl TestDb {
    /// A new database; for PostgreSQL, panics saying how to provide a
    /// server when none answers.
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

    /// A SQLite database at `path`, in a directory the caller owns (and
    /// removes).
    pub fn sqlite_at(path: &Path) -> TestDb {
        TestDb {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite,
            pg_name: None,
            _dir: None,
        }
    }

    /// The file of a SQLite database.
    pub fn sqlite_path(&self) -> &Path {
        assert_eq!(self.backend, Backend::Sqlite, "a SQLite database");
        Path::new(self.url.trim_start_matches("sqlite://"))
    }

    /// Drops the database now, awaiting it (dropping the value does the
    /// same, blocking).
    pub async fn drop_db(mut self) {
        if let Some(name) = self.pg_name.take() {
            drop_pg_database(&name).await;
        }
    }

    /// One integer from a query such as `SELECT count(*) FROM …`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        with_connection!(self, |c| sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut c)
            .await
            .expect(sql))
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

    /// Every row of a query, as `T`.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        with_connection!(self, |c| sqlx::query_as::<_, T>(sql)
            .fetch_all(&mut c)
            .await
            .expect(sql))
    }

    /// `(a, b)` integer rows of a query.
    pub async fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        self.rows(sql).await
    }

    /// `(text, text)` rows of a query.
    pub async fn text_pairs(&self, sql: &str) -> Vec<(String, Option<String>)> {
        self.rows(sql).await
    }

    /// Runs a statement.
    pub async fn execute(&self, sql: &str) {
        with_connection!(self, |c| {
            sqlx::query(sql).execute(&mut c).await.expect(sql);
        })
    }

    /// Every text (and blob, read as UTF-8) value of every row of every
    /// table, each as `table: value`: what a leak check greps.
    pub async fn all_text(&self) -> Vec<String> {
        use sqlx::{Column as _, Row as _};
        let mut out = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let tables: Vec<(String,)> = self
                    .rows("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .await;
                with_connection!(self, |c| for (table,) in tables {
                    let sql = format!("SELECT * FROM \"{table}\"");
                    for row in sqlx::query(&sql).fetch_all(&mut c).await.expect(&sql) {
                        for col in row.columns() {
                            let i = col.ordinal();
                            if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                                out.push(format!("{table}: {text}"));
                            } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                                out.push(format!("{table}: {}", String::from_utf8_lossy(&bytes)));
                            }
                        }
                    }
                })
            }
            Backend::Postgres => {
                let tables: Vec<(String,)> = self
                    .rows("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
                    .await;
                with_connection!(self, |c| for (table,) in tables {
                    // A whole row as text: every column, whatever its type.
                    let sql = format!("SELECT CAST(t AS text) FROM \"{table}\" t");
                    for (row,) in sqlx::query_as::<_, (String,)>(&sql)
                        .fetch_all(&mut c)
                        .await
                        .expect(&sql)
                    {
                        out.push(format!("{table}: {row}"));
                    }
                })
            }
        }
        out
    }

    /// Runs a statement with one timestamp parameter, written `$1` (and
    /// sent as `?1` to SQLite).
    pub async fn execute_at(&self, sql: &str, t: DateTime<Utc>) {
        match self.backend {
            Backend::Sqlite => {
                let sql = sql.replace("$1", "?1");
                with_connection!(self, |c| {
                    sqlx::query(&sql).bind(t).execute(&mut c).await.expect(&sql);
                })
            }
            Backend::Postgres => with_connection!(self, |c| {
                sqlx::query(sql).bind(t).execute(&mut c).await.expect(sql);
            }),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            block_on_admin(move || async move { drop_pg_database(&name).await });
        }
    }
}

/// Runs `work` to its end on a thread with its own runtime: a `Drop` may
/// run on the test's runtime, or while a panic unwinds it, where no future
/// can be blocked on.
fn block_on_admin<F, Fut>(work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            runtime.block_on(work());
        }
    });
    let _ = worker.join();
}

/// `DROP DATABASE … WITH (FORCE)`, closing whatever still uses it.
async fn drop_pg_database(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// A PostgreSQL login role allowed no connection at all (`CONNECTION
/// LIMIT 0`): the server refuses it with "too many connections for role",
/// as a full server does. Dropped with the value (also when the test panics).
pub struct FullRole {
    pub name: String,
    /// The test server's URL with this role as its user.
    pub url: String,
}

impl FullRole {
    /// A new such role on the test server.
    pub async fn new() -> FullRole {
        let admin = pg_admin_url();
        let name = format!("zel_full_{}", rand_suffix());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE ROLE {name} LOGIN CONNECTION LIMIT 0"))
            .execute(&mut conn)
            .await
            .expect("CREATE ROLE");
        let (scheme, rest) = admin.split_once("://").expect("a URL");
        let server = rest.rsplit_once('@').map_or(rest, |(_, server)| server);
        let url = format!("{scheme}://{name}@{server}");
        FullRole { name, url }
    }
}

impl Drop for FullRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_admin(move || async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

/// The integer a query gives, or -1 while the database or table does not
/// exist yet (for polling what the daemon writes).
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    db.try_scalar(sql).await.unwrap_or(-1)
}

pub(crate) fn rand_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}
