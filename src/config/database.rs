//! `[database]`: which database holds the inbox, the event log and the
//! listeners' data (SQLite or PostgreSQL), and its pool size.

use toml::Table;

use super::database_url::DatabaseUrl;
use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "database";

/// The keys of `[database]`.
pub(super) const KNOWN: &[&str] = &["url", "max_connections"];

/// The database used when no configuration file names one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://zulip-event-listeners.db";

/// Largest pool; larger values are lowered to it.
const MAX_CONNECTIONS: u64 = 1000;

/// `[database]`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`, parsed.
    pub url: DatabaseUrl,
    /// Connection pool size.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            // A constant that parses (a unit test reads it).
            url: DatabaseUrl::parse(DEFAULT_DATABASE_URL).expect("the default database URL parses"),
            max_connections: 8,
        }
    }
}

/// Reads `[database]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut DatabaseConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "url" => {
                if let Some(url) = r.string(&key, v) {
                    match DatabaseUrl::parse(&url) {
                        Ok(url) => out.url = url,
                        Err(e) => r.problem(format!("`{key}` {e}")),
                    }
                }
            }
            "max_connections" => {
                if let Some(n) = r.positive_int(&key, v) {
                    out.max_connections = n.min(MAX_CONNECTIONS) as u32;
                }
            }
            _ => r.unknown_key(k),
        }
    }
}
