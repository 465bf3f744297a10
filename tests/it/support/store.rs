//! The store as tests open it (the one place that calls the library's
//! `store::open`), and inbox fixtures: message events and appending them.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use zulip_event_listeners::event::Event;
use zulip_event_listeners::store::{self, Origin, Store, StoreOptions};

use super::db::{Backend, TestDb};

/// Opens the store at `url` with `opts` and runs its migrations.
pub async fn open_migrated(url: &str, opts: &StoreOptions) -> Arc<dyn Store> {
    let url = url.parse().expect("a database URL");
    let s = store::open(&url, opts).await.expect("open the store");
    s.migrate().await.expect("migrate");
    s
}

impl TestDb {
    /// Runs `migrate` (PostgreSQL databases are not migrated by `run`).
    pub async fn migrate(&self) {
        self.store().await;
    }

    /// Applies the backend's migrations older than `version` only (a
    /// database as an earlier release left it), so that a test can fill
    /// it in the old shape and then [`TestDb::migrate`] it.
    pub async fn migrate_before(&self, version: i64) {
        use sqlx::Connection as _;
        let folder = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder);
        let mut migrator = sqlx::migrate::Migrator::new(dir)
            .await
            .expect("read the migrations");
        migrator.migrations = migrator
            .migrations
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        match self.backend {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&self.url)
                    .expect("a SQLite URL")
                    .create_if_missing(true);
                let mut c = sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .expect("connect");
                migrator.run(&mut c).await.expect("the older migrations");
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                migrator.run(&mut c).await.expect("the older migrations");
            }
        }
    }

    /// The migrated store of this database, with default options.
    pub async fn store(&self) -> Arc<dyn Store> {
        open_migrated(&self.url, &StoreOptions::default()).await
    }
}

/// A channel message event with id `event_id`, message id `event_id + 1000`
/// and the content `hello <event_id>`.
pub fn message_event(event_id: i64) -> Event {
    Event::parse(&format!(
        r#"{{"type":"message","id":{event_id},"message":{{"id":{},"sender_id":3,"sender_email":"s@x","display_recipient":"general","subject":"t","timestamp":1790000000,"content":"hello {event_id}"}},"flags":[]}}"#,
        event_id + 1000
    ))
    .unwrap()
}

/// Appends `n` message events from `first_event_id` on to `instance`'s
/// inbox and returns their inbox ids.
pub async fn append_messages(
    s: &Arc<dyn Store>,
    instance: &str,
    first_event_id: i64,
    n: i64,
) -> Vec<i64> {
    let events: Vec<Event> = (first_event_id..first_event_id + n)
        .map(message_event)
        .collect();
    append_events(s, instance, &events).await
}

/// Appends `events` (all new) to `instance`'s inbox from queue `q` and
/// returns their inbox ids, in order.
pub async fn append_events(s: &Arc<dyn Store>, instance: &str, events: &[Event]) -> Vec<i64> {
    s.append(instance, &Origin::Queue("q".into()), events, None)
        .await
        .expect("append")
        .into_iter()
        .map(|id| id.expect("a new event is stored"))
        .collect()
}

/// The dead letter of a run whose tries failed as `class`, the first at `first`.
pub fn dead_letter_of(
    class: store::ErrorClass,
    first: chrono::DateTime<chrono::Utc>,
) -> Option<store::DeadLetterCause> {
    Some(store::DeadLetterCause {
        stage: store::Stage::Run,
        class,
        first_failed_at: first,
    })
}
