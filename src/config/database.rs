//! `[database]`: which database holds the inbox, the event log and the
//! listeners' data (SQLite or PostgreSQL), its pool size, and where the
//! PostgreSQL password comes from (`password_file` / `password_env`, never
//! the URL in this file).

use secrecy::ExposeSecret as _;
use toml::Table;

use super::database_url::{Backend, DatabaseUrl};
use super::permissions::FilePermissions;
use super::reader::Reader;
use super::secret::{read_secret, SecretError, SecretSource};

/// The section's name.
pub(super) const SECTION: &str = "database";

/// The keys of `[database]`.
pub(super) const KNOWN: &[&str] = &[
    "url",
    "max_connections",
    "password",
    "password_file",
    "password_env",
];

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
    /// Where the PostgreSQL password is read from, if it needs one.
    pub password: Option<SecretSource>,
}

impl DatabaseConfig {
    /// The URL to connect with: [`DatabaseConfig::url`] with the password
    /// read from its source merged into the connection options (the URL's
    /// text, shown by `Display` and `redacted`, stays without it).
    ///
    /// # Errors
    ///
    /// [`SecretError`] when the password cannot be read.
    pub fn connect_url(&self, policy: FilePermissions) -> Result<DatabaseUrl, SecretError> {
        let Some(source) = &self.password else {
            return Ok(self.url.clone());
        };
        let password = source.read(policy)?;
        Ok(self.url.with_backend(match self.url.options() {
            // sqlx keeps the password in a String of its own options.
            Backend::Postgres(o) => Backend::Postgres(o.clone().password(password.expose_secret())),
            sqlite => sqlite.clone(),
        }))
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            // A constant that parses (a unit test reads it).
            url: DatabaseUrl::parse(DEFAULT_DATABASE_URL).expect("the default database URL parses"),
            max_connections: 8,
            password: None,
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
                        Ok(url) if url.has_password() => r.problem(format!(
                            "`{key}` has a password in it, which would put a secret in the config file: take it out of the URL and write it to a file readable by the daemon only, named by `database.password_file`, or set `database.password_env` to an environment variable's name"
                        )),
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
            "password" | "password_file" | "password_env" => {}
            _ => r.unknown_key(k),
        }
    }
    out.password = read_secret(r, SECTION, t, "password");
    if out.password.is_some() && out.url.backend() == "sqlite" {
        r.problem("`database.password_file`/`password_env` is for PostgreSQL; a SQLite database has no password".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::config::Config;

    #[test]
    fn a_password_in_the_url_is_refused_naming_password_file_without_echoing_it() {
        let err =
            Config::parse("[database]\nurl = \"postgres://u:hunter2@h/db\"\n", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`database.url` has a password"), "{text}");
        assert!(text.contains("database.password_file"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let err = Config::parse("[database]\npassword = \"hunter2\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("`database.password_env`"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn the_password_file_is_merged_into_the_connect_options_not_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "[database]\nurl = \"postgres://u@h/db\"\npassword_file = \"{}\"\n",
            path.display()
        );
        let cfg = Config::parse(&text, &[]).unwrap();
        let url = cfg.database.connect_url(FilePermissions::Enforce).unwrap();
        let Backend::Postgres(o) = url.options() else {
            panic!("postgres")
        };
        assert!(format!("{o:?}").contains("hunter2"), "the options carry it");
        assert_eq!(url.redacted(), "postgres://u@h/db");
        assert!(!format!("{url:?} {url}").contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = cfg
            .database
            .connect_url(FilePermissions::Enforce)
            .unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_password_for_sqlite_is_refused() {
        let err = Config::parse(
            "[database]\nurl = \"sqlite://x.db\"\npassword_env = \"PGPASSWORD\"\n",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("a SQLite database has no password"),
            "{err}"
        );
    }
}
