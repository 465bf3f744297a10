//! `[http]`: the address of the `/health`, `/metrics` and admin API
//! server, or `off`; its bounds against slow or too many clients; and the
//! admin tokens: the file that holds them ([`read_admin_tokens`] reads it,
//! at start and in `check-config`, never when the configuration is loaded)
//! and whether `/health` and `/metrics` need one too; and whether the tap
//! may show content when asked (`tap_show_content`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use toml::Table;

use super::permissions::{read_secret_file, FilePermissions, SecretFileError};
use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "http";

/// The keys of `[http]`.
pub(super) const KNOWN: &[&str] = &[
    "bind",
    "header_read_timeout",
    "max_connections",
    "admin_token_file",
    "health_requires_token",
    "metrics_requires_token",
    "tap_show_content",
];

/// The port of the default `bind`.
const DEFAULT_PORT: u16 = 9187;

/// Shortest admin token accepted.
const MIN_TOKEN_CHARS: usize = 16;

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address of the `/health` and `/metrics` server; `None` disables it.
    /// Left out, it is 127.0.0.1:9187, plus the instance's index when
    /// `[scaling] total_instances` > 1 (instance 2 of 3: 9188), so
    /// instances configured alike but for `instance_id` run on one host.
    pub bind: Option<SocketAddr>,
    /// `bind` was written in the file (and is used as it is).
    pub bind_configured: bool,
    /// How long a client may take to send a request's headers before its
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog
    /// (using no descriptor of the daemon's) until one closes.
    pub max_connections: usize,
    /// The file of `name:token` lines that enables the admin API; `None`
    /// leaves the `/admin` routes out.
    pub admin_token_file: Option<PathBuf>,
    /// `/health` answers only with an admin token.
    pub health_requires_token: bool,
    /// `/metrics` answers only with an admin token.
    pub metrics_requires_token: bool,
    /// The tap (`GET /admin/tap`, the `tap` subcommand) may show content,
    /// topics, emails and names when asked (`--show-content`).
    pub tap_show_content: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))),
            bind_configured: false,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 64,
            admin_token_file: None,
            health_requires_token: false,
            metrics_requires_token: false,
            tap_show_content: false,
        }
    }
}

/// Reads `[http]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut HttpConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "bind" => match r.string(&key, v).as_deref().inspect(|_| out.bind_configured = true) {
                Some("" | "off") => out.bind = None,
                Some(s) => match s.parse::<SocketAddr>() {
                    Ok(a) => out.bind = Some(a),
                    Err(_) => r.problem(format!(
                        "`{key}` must be an address such as \"127.0.0.1:9187\" (or \"off\"), got `{s}`"
                    )),
                },
                None => {}
            },
            "header_read_timeout" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.header_read_timeout = d;
                }
            }
            "max_connections" => match r.positive_int(&key, v) {
                Some(n) if n <= 10_000 => out.max_connections = n as usize,
                Some(n) => r.problem(format!("`{key}` must be at most 10000, got {n}")),
                None => {}
            },
            "admin_token_file" => match r.string(&key, v).as_deref() {
                Some("") => r.problem(format!("`{key}` must be a path (or be left out)")),
                Some(path) => out.admin_token_file = Some(PathBuf::from(path)),
                None => {}
            },
            "health_requires_token" => {
                if let Some(b) = r.bool(&key, v) {
                    out.health_requires_token = b;
                }
            }
            "metrics_requires_token" => {
                if let Some(b) = r.bool(&key, v) {
                    out.metrics_requires_token = b;
                }
            }
            "tap_show_content" => {
                if let Some(b) = r.bool(&key, v) {
                    out.tap_show_content = b;
                }
            }
            _ => r.unknown_key(k),
        }
    }
    if (out.health_requires_token || out.metrics_requires_token) && out.admin_token_file.is_none() {
        r.problem(
            "`http.health_requires_token` and `http.metrics_requires_token` need `http.admin_token_file`, the tokens they accept".to_owned(),
        );
    }
}

/// Gives each of several instances its own default port: 9187 + its index
/// (`instance_id` − 1), unless `bind` was written in the file.
pub(super) fn per_instance_default(out: &mut HttpConfig, instance_index: u32) {
    if out.bind_configured {
        return;
    }
    let port = u16::try_from(instance_index)
        .ok()
        .and_then(|i| DEFAULT_PORT.checked_add(i));
    if let (Some(addr), Some(port)) = (out.bind.as_mut(), port) {
        addr.set_port(port);
    }
}

/// One named token of `[http] admin_token_file`.
#[derive(Debug, Clone)]
pub struct AdminToken {
    /// Its name, which the audit trail records (`token:NAME`).
    pub name: String,
    /// The token itself.
    pub secret: SecretString,
}

/// Why the admin token file is refused. No variant holds a token.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// It cannot be read, or breaks the secret files' permissions rule
    /// (`chmod 600`, owned by the daemon's user).
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// A line is not `name:token`, or the file holds no token.
    #[error("the admin token file {}: {why}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong, and on which line (never the line itself).
        why: String,
    },
}

/// Reads the admin tokens of `path`: one `name:token` per line (blank
/// lines and `#` comments ignored), names unique and made of letters,
/// digits, `_`, `-` and `.`, tokens of at least 16 characters. The file
/// must be closed to the group and to others (`chmod 600`).
///
/// # Errors
///
/// [`AdminTokenError`] saying what is wrong, never echoing a token.
pub fn read_admin_tokens(
    path: &Path,
    policy: FilePermissions,
) -> Result<Vec<AdminToken>, AdminTokenError> {
    let bytes = read_secret_file(path, policy)?;
    let content = |why| AdminTokenError::Content {
        path: path.to_owned(),
        why,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| content("it is not UTF-8".to_owned()))?;
    parse_admin_tokens(text).map_err(content)
}

/// [`read_admin_tokens`] of the file's text.
fn parse_admin_tokens(text: &str) -> Result<Vec<AdminToken>, String> {
    let mut tokens = Vec::new();
    let mut names = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let Some((name, token)) = line.split_once(':') else {
            return Err(format!("line {n} is not `name:token`"));
        };
        let (name, token) = (name.trim(), token.trim());
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(format!(
                "line {n}: a token name is letters, digits, `_`, `-` or `.`"
            ));
        }
        if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
            return Err(format!(
                "line {n}: the token of `{name}` must be at least {MIN_TOKEN_CHARS} characters without spaces (e.g. `openssl rand -hex 32`)"
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(format!("line {n}: the name `{name}` is used twice"));
        }
        tokens.push(AdminToken {
            name: name.to_owned(),
            secret: SecretString::from(token.to_owned()),
        });
    }
    if tokens.is_empty() {
        return Err("it holds no `name:token` line".to_owned());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use secrecy::ExposeSecret;

    use super::*;

    const T1: &str = "0123456789abcdef0123";

    #[test]
    fn named_tokens_are_read_skipping_comments_and_blank_lines() {
        let tokens = parse_admin_tokens(&format!("# ops\n\nci: {T1}\nalice:{T1}xyz\n")).unwrap();
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ci", "alice"]);
        assert_eq!(tokens[0].secret.expose_secret(), T1);
    }

    #[test]
    fn bad_lines_are_refused_without_echoing_the_token() {
        for (text, want) in [
            (format!("{T1}\n"), "line 1 is not `name:token`"),
            (format!("ci:{T1}\nci:{T1}\n"), "`ci` is used twice"),
            ("ci:short\n".to_owned(), "at least 16 characters"),
            (format!("c i:{T1}\n"), "a token name is"),
            ("# nothing\n".to_owned(), "holds no"),
        ] {
            let err = parse_admin_tokens(&text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains(T1), "{err}");
        }
    }

    #[test]
    fn a_token_file_open_to_others_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("ci:{T1}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_admin_tokens(&path, FilePermissions::Enforce)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mode 640") && err.contains("chmod 600"),
            "{err}"
        );
        let anyway = read_admin_tokens(&path, FilePermissions::AllowInsecure).unwrap();
        assert_eq!(anyway.len(), 1, "--allow-insecure-permissions reads it");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_admin_tokens(&path, FilePermissions::Enforce)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn requiring_a_token_without_a_token_file_is_a_problem() {
        let err = crate::config::Config::parse("[http]\nmetrics_requires_token = true\n", &[])
            .unwrap_err();
        assert!(
            err.to_string().contains("need `http.admin_token_file`"),
            "{err}"
        );
    }
}
