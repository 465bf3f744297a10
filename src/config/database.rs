//! `[database]`: which database holds the inbox, the event log and the
//! listeners' data (SQLite or PostgreSQL), and its pool size.

use toml::Table;

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
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: DEFAULT_DATABASE_URL.to_owned(),
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
                    if url.starts_with("sqlite:")
                        || url.starts_with("postgres://")
                        || url.starts_with("postgresql://")
                    {
                        out.url = url;
                    } else {
                        r.problem(format!(
                            "`{key}` must start with sqlite:, postgres:// or postgresql://, got `{url}`"
                        ));
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
