//! [`DatabaseUrl`]: the `[database] url` setting parsed once, when the
//! configuration is read, into the backend it names and that backend's
//! connection options, so nothing else sniffs URL prefixes and a malformed
//! URL is a configuration problem, reported with the others. A leaf: it
//! uses sqlx and nothing else of the crate.

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

/// A database URL, parsed: its text, and which backend with what
/// connection options.
///
/// Its [`Display`](fmt::Display) and `Debug` forms carry no password.
#[derive(Clone)]
pub struct DatabaseUrl {
    text: String,
    backend: Backend,
}

/// The backend a [`DatabaseUrl`] names, with its connection options.
#[derive(Clone)]
pub enum Backend {
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
        let backend = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map(Backend::Sqlite)
                .map_err(malformed("sqlite"))?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url)
                .map(Backend::Postgres)
                .map_err(malformed("postgres"))?
        } else {
            return Err(UrlError::UnsupportedScheme(url.to_owned()));
        };
        Ok(DatabaseUrl {
            text: url.to_owned(),
            backend,
        })
    }

    /// The backend and its connection options.
    pub fn options(&self) -> &Backend {
        &self.backend
    }

    /// The same URL text with other connection options (a password read
    /// from its file).
    pub(super) fn with_backend(&self, backend: Backend) -> DatabaseUrl {
        DatabaseUrl {
            text: self.text.clone(),
            backend,
        }
    }

    /// Whether the URL's text carries a password (`user:PASSWORD@` or a
    /// `password=` query parameter).
    pub fn has_password(&self) -> bool {
        let query_password = self.text.split_once('?').is_some_and(|(_, q)| {
            q.split('&')
                .any(|p| p.to_ascii_lowercase().starts_with("password="))
        });
        query_password || self.redacted() != self.text
    }

    /// The URL as written, with its password (if any) replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.text;
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &url[scheme + 3..at];
                match userinfo.find(':') {
                    Some(colon) => format!(
                        "{}{}:***{}",
                        &url[..scheme + 3],
                        &userinfo[..colon],
                        &url[at..]
                    ),
                    None => url.clone(),
                }
            }
            _ => url.clone(),
        }
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The SQLite database file, as the URL names it; `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(o) => Some(o.get_filename()),
            Backend::Postgres(_) => None,
        }
    }

    /// Where the data lives, without credentials: the SQLite file's
    /// absolute path, or `postgres://user@host:port/database`.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(o) => absolute(o.get_filename()).display().to_string(),
            Backend::Postgres(o) => format!(
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

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &DatabaseUrl) -> bool {
        self.text == other.text
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
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
    fn a_password_in_the_userinfo_or_the_query_is_seen() {
        for url in [
            "postgres://u:pw@h/db",
            "postgres://u@h/db?sslmode=require&password=pw",
        ] {
            assert!(DatabaseUrl::parse(url).unwrap().has_password(), "{url}");
        }
        for url in ["postgres://u@h/db", "postgres://h/db", "sqlite://x.db"] {
            assert!(!DatabaseUrl::parse(url).unwrap().has_password(), "{url}");
        }
    }

    #[test]
    fn the_redacted_form_is_the_url_as_written_without_its_password() {
        let pg = DatabaseUrl::parse("postgres://u:secret@h:5432/db").unwrap();
        assert_eq!(pg.redacted(), "postgres://u:***@h:5432/db");
        let sqlite = DatabaseUrl::parse("sqlite://x.db").unwrap();
        assert_eq!(sqlite.redacted(), "sqlite://x.db");
    }

    /// Two URLs are equal when they are the same text.
    #[test]
    fn urls_compare_by_their_text() {
        let a = DatabaseUrl::parse("postgres://user@host/db").unwrap();
        assert_eq!(a, "postgres://user@host/db");
        assert_ne!(a, DatabaseUrl::parse("postgres://user@host/other").unwrap());
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
