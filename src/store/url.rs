//! [`DatabaseUrl`]: the `[database] url` setting parsed once into the
//! backend it names and that backend's connection options, so nothing else
//! sniffs URL prefixes. A leaf: it uses sqlx and nothing else of the crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// Why a database URL was rejected.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The URL names no supported backend.
    #[error("must start with sqlite:, postgres:// or postgresql://, got `{0}`")]
    UnsupportedScheme(String),
    /// The scheme is known but the rest does not parse.
    #[error("is not a valid {backend} URL: {source}")]
    Malformed {
        /// `"postgres"` or `"sqlite"`.
        backend: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
}

/// A database URL, parsed: which backend and its connection options.
///
/// Its [`Display`](fmt::Display) and `Debug` forms carry no password.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// `sqlite:PATH` or `sqlite://PATH`: the embedded backend.
    Sqlite(SqliteConnectOptions),
    /// `postgres://…` or `postgresql://…`.
    Postgres(PgConnectOptions),
}

impl DatabaseUrl {
    /// Parses `url`; the same as [`str::parse`].
    ///
    /// # Errors
    ///
    /// [`UrlError`] when the scheme is unsupported or the rest malformed.
    pub fn parse(url: &str) -> Result<DatabaseUrl, UrlError> {
        let malformed = |backend| move |source| UrlError::Malformed { backend, source };
        if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map(DatabaseUrl::Sqlite)
                .map_err(malformed("sqlite"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url)
                .map(DatabaseUrl::Postgres)
                .map_err(malformed("postgres"))
        } else {
            Err(UrlError::UnsupportedScheme(url.to_owned()))
        }
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }

    /// The SQLite database file, as the URL names it; `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DatabaseUrl::Sqlite(o) => Some(o.get_filename()),
            DatabaseUrl::Postgres(_) => None,
        }
    }

    /// Where the data lives, without credentials: the SQLite file's
    /// absolute path, or `postgres://user@host:port/database`.
    pub fn location(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(o) => absolute(o.get_filename()).display().to_string(),
            DatabaseUrl::Postgres(o) => format!(
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or(o.get_username())
            ),
        }
    }
}

/// `path` made absolute against the working directory, when that works.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

impl FromStr for DatabaseUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<DatabaseUrl, UrlError> {
        DatabaseUrl::parse(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({}: {})", self.backend(), self.location())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_names_its_backend() {
        let sqlite: DatabaseUrl = "sqlite://data/events.db".parse().unwrap();
        assert_eq!(sqlite.backend(), "sqlite");
        assert_eq!(sqlite.sqlite_path(), Some(Path::new("data/events.db")));
        for url in ["postgres://u@h/db", "postgresql://u@h/db"] {
            let pg = DatabaseUrl::parse(url).unwrap();
            assert_eq!((pg.backend(), pg.sqlite_path()), ("postgres", None));
        }
    }

    #[test]
    fn the_display_form_carries_no_password() {
        let pg = DatabaseUrl::parse("postgres://alice:secret@db.example:6543/events").unwrap();
        assert_eq!(pg.to_string(), "postgres://alice@db.example:6543/events");
        assert!(!format!("{pg:?}").contains("secret"));
    }

    #[test]
    fn an_unknown_scheme_is_rejected_with_the_accepted_ones() {
        let e = DatabaseUrl::parse("mysql://h/db").unwrap_err();
        assert_eq!(
            e.to_string(),
            "must start with sqlite:, postgres:// or postgresql://, got `mysql://h/db`"
        );
    }
}
