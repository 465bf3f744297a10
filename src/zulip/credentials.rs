//! Zulip credentials: resolves email, API key, server URL and TLS options the
//! way the official Python bindings (`zulip.Client.__init__`) do. Explicit
//! sources from our own config come first, then the `ZULIP_*` environment
//! variables, then the `[api]` section of a zuliprc INI file (`ZULIP_CONFIG`,
//! else `~/.zuliprc`). This module owns that precedence, the reading of a
//! zuliprc (its INI syntax is `zuliprc`'s; a zuliprc holding a key obeys
//! the secret files' permissions rule), the normalization of a site into
//! the API base URL, and the refusal of plain `http://` to another host.
//! The TLS settings are `tls.rs`'s. It never puts the API key into a
//! `Debug` output or an error message.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::{Zeroize as _, Zeroizing};

use super::tls::{is_remote_plain_http, resolve_tls, TlsError, TlsOptions};
use super::zuliprc::parse_api_section;
use crate::config::{check_secret_file, FilePermissions, PermissionsError};

/// Resolved credentials for talking to one Zulip server.
#[derive(Clone)]
pub struct Credentials {
    /// The bot's or user's email (HTTP Basic user name).
    pub email: String,
    /// The API key (HTTP Basic password). Never printed.
    pub api_key: SecretString,
    /// The normalized API base URL from [`api_base_url`], e.g.
    /// `https://zulip.example.com/api/v1/`; join endpoint paths onto it.
    pub site: String,
    /// How the connection is secured (`insecure`, `cert_bundle`,
    /// `client_cert`, `client_cert_key`).
    pub tls: TlsOptions,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .field("api_key", &"[redacted]")
            .field("site", &self.site)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Explicit values from our own config file: the Python client's constructor arguments.
#[derive(Clone, Copy, Default)]
pub(crate) struct CredentialSources<'a> {
    /// A zuliprc path; beats `ZULIP_CONFIG` and `~/.zuliprc`. A leading `~` is expanded.
    pub zuliprc: Option<&'a Path>,
    /// The email; beats `ZULIP_EMAIL` and the file.
    pub email: Option<&'a str>,
    /// The API key; beats `ZULIP_API_KEY` and the file.
    pub api_key: Option<&'a str>,
    /// The site; beats `ZULIP_SITE` and the file.
    pub site: Option<&'a str>,
    /// Accept a plain `http://` site on another host (`[zulip]
    /// allow_insecure_http`).
    pub allow_insecure_http: bool,
    /// Whether a zuliprc or client key others may read is refused.
    pub file_permissions: FilePermissions,
    /// Read no `ZULIP_*` variable and no `~/.zuliprc` (each of several
    /// organizations has its own zuliprc: the environment would give every
    /// one the same account).
    pub ignore_environment: bool,
}

impl fmt::Debug for CredentialSources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSources")
            .field("zuliprc", &self.zuliprc)
            .field("email", &self.email)
            .field("api_key", &self.api_key.map(|_| "[redacted]"))
            .field("site", &self.site)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("file_permissions", &self.file_permissions)
            .finish()
    }
}

/// Why credentials could not be loaded. No message ever contains the API key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Key and/or email are missing and no config file exists: (what is missing, file tried).
    #[error("Zulip {0} not specified in our config or the environment, and config file {1} does not exist")]
    ConfigNotFound(&'static str, String),
    /// An existing config file could not be read: (file, cause).
    #[error("cannot read Zulip config file {file}: {1}", file = .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The config file is not INI as Python's configparser reads it: (file, line, reason).
    #[error("Zulip config file {file} line {1}: {2}", file = .0.display())]
    Parse(PathBuf, usize, String),
    /// An existing config file lacks a needed `key` or `email`: (file, option).
    #[error("Zulip config file {file} has no `{1}` option in an [api] section", file = .0.display())]
    MissingOption(PathBuf, &'static str),
    /// No site was given anywhere: (config file tried).
    #[error("missing Zulip server URL: set `site` in our config, ZULIP_SITE, or the [api] section of {0}")]
    MissingSite(String),
    /// The site is empty, has whitespace or no host, or is not http(s): (site, reason).
    #[error("invalid Zulip site {0:?}: {1}")]
    InvalidSite(String, &'static str),
    /// The site is plain `http://` to another host, and `[zulip]
    /// allow_insecure_http` is not set: (the API base URL).
    #[error("the Zulip site {0} is plain http:// on another host, so the API key and every event would cross the network unencrypted: use https://, or set `[zulip] allow_insecure_http = true` if the network path is trusted")]
    PlainHttp(String),
    /// The zuliprc holds a key and others may read it.
    #[error(transparent)]
    Permissions(#[from] PermissionsError),
    /// A TLS setting cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn nonempty(s: &str) -> Option<String> {
    Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

/// An existing zuliprc: its path and `[api]` options (empty if none),
/// wiped when dropped (the key is one of them).
#[derive(Default)]
struct Zuliprc(PathBuf, HashMap<String, String>);

impl Drop for Zuliprc {
    fn drop(&mut self) {
        self.1.values_mut().for_each(|v| v.zeroize());
    }
}

impl Zuliprc {
    /// Reads the file; one holding a `key` must obey the permissions rule
    /// (checked on the opened file), else that is pushed on `problems`.
    fn read(
        path: PathBuf,
        policy: FilePermissions,
        problems: &mut Vec<CredentialsError>,
    ) -> Option<Self> {
        let mut text = Zeroizing::new(String::new());
        let meta = std::fs::File::open(&path).and_then(|mut f| {
            f.read_to_string(&mut text)?;
            f.metadata()
        });
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                problems.push(CredentialsError::Io(path, e));
                return None;
            }
        };
        let rc = match parse_api_section(&text) {
            Ok(api) => Zuliprc(path, api.unwrap_or_default()),
            Err((line, reason)) => {
                problems.push(CredentialsError::Parse(path, line, reason));
                return None;
            }
        };
        if rc.1.contains_key("key") {
            if let Err(e) = check_secret_file(&rc.0, &meta, policy) {
                problems.push(e.into());
            }
        }
        Some(rc)
    }
    fn get(&self, opt: &str) -> Option<String> {
        nonempty(self.1.get(opt)?)
    }
    fn get_with_origin(&self, opt: &str) -> Option<(String, String)> {
        let origin = format!("option `{opt}` in Zulip config file {}", self.0.display());
        Some((self.get(opt)?, origin))
    }
    fn require(&self, opt: &'static str) -> Result<String, CredentialsError> {
        self.get(opt)
            .ok_or_else(|| CredentialsError::MissingOption(self.0.clone(), opt))
    }
}

/// Loads credentials: `sources` first, then the `ZULIP_*` variables read
/// through `env`, then the `[api]` section of the zuliprc (`sources.zuliprc`,
/// else `ZULIP_CONFIG`, else `home/.zuliprc`). Values are trimmed and an empty
/// value counts as missing. Production passes `&|k| std::env::var(k).ok()`.
///
/// # Errors
/// Any [`CredentialsError`]: key or email missing with no file, an existing
/// file that is unreadable, malformed or lacks `key`/`email` when they are
/// still needed, no usable site, a bad `insecure` value, a missing CA bundle,
/// or a configured client certificate. The first of
/// [`credential_problems`], in that order.
pub(crate) fn load_credentials(
    sources: &CredentialSources,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Credentials, CredentialsError> {
    resolve_credentials(sources, env, home).map_err(|mut problems| problems.swap_remove(0))
}

/// [`load_credentials`], with every problem found on the way, not only the
/// first (for `check-config`; never an empty list): each check goes on
/// after a failure whose value it does not need.
pub(crate) fn resolve_credentials(
    sources: &CredentialSources,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Credentials, Vec<CredentialsError>> {
    let mut problems = Vec::new();
    let var = |name: &str| {
        if sources.ignore_environment {
            return None;
        }
        env(name).as_deref().and_then(nonempty)
    };
    let arg_or_var = |arg: Option<&str>, name| arg.and_then(nonempty).or_else(|| var(name));
    let key = arg_or_var(sources.api_key, "ZULIP_API_KEY");
    let email = arg_or_var(sources.email, "ZULIP_EMAIL");
    let path = sources
        .zuliprc
        .map(Path::to_path_buf)
        .or_else(|| var("ZULIP_CONFIG").map(PathBuf::from))
        .map(|p| expand_tilde(&p, home))
        .or_else(|| {
            home.filter(|_| !sources.ignore_environment)
                .map(|h| h.join(".zuliprc"))
        });
    let looked = path.as_ref().map_or_else(
        || "~/.zuliprc (home directory unknown)".to_owned(),
        |p| p.display().to_string(),
    );
    // Without a readable file, key and email must come from elsewhere: a
    // missing one is reported once, here, not again as a missing option.
    let file = match path.filter(|p| p.exists()) {
        Some(path) => Zuliprc::read(path, sources.file_permissions, &mut problems),
        None if key.is_none() || email.is_none() => {
            let missing = match (key.is_none(), email.is_none()) {
                (true, true) => "API key (ZULIP_API_KEY) and email (ZULIP_EMAIL)",
                (true, false) => "API key (ZULIP_API_KEY)",
                _ => "email (ZULIP_EMAIL)",
            };
            problems.push(CredentialsError::ConfigNotFound(missing, looked.clone()));
            None
        }
        None => Some(Zuliprc::default()),
    };
    let required = |given: Option<String>, opt, problems: &mut Vec<CredentialsError>| {
        given
            .or_else(|| match &file {
                Some(f) => f.require(opt).map_err(|e| problems.push(e)).ok(),
                None => None,
            })
            .unwrap_or_default()
    };
    let key = required(key, "key", &mut problems);
    let email = required(email, "email", &mut problems);
    let file = file.unwrap_or_default();
    let site = match arg_or_var(sources.site, "ZULIP_SITE").or_else(|| file.get("site")) {
        Some(site) => match api_base_url(&site) {
            Ok(url) if is_remote_plain_http(&url) && !sources.allow_insecure_http => {
                problems.push(CredentialsError::PlainHttp(url));
                String::new()
            }
            Ok(url) => url,
            Err(e) => {
                problems.push(e);
                String::new()
            }
        },
        None => {
            problems.push(CredentialsError::MissingSite(looked));
            String::new()
        }
    };
    let setting = |name, option| {
        var(name)
            .map(|v| (v, name.to_owned()))
            .or_else(|| file.get_with_origin(option))
    };
    let tls = resolve_tls(&setting, sources.file_permissions)
        .map_err(|e| problems.extend(e.into_iter().map(CredentialsError::Tls)))
        .unwrap_or_default();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Credentials {
        email,
        api_key: SecretString::from(key),
        site,
        tls,
    })
}

/// Turns a site such as `zulip.example.com` into the API base URL
/// `https://zulip.example.com/api/v1/`, like the Python client: adds
/// `https://` when there is no scheme (`http://` for `localhost…`), strips
/// trailing `/`, appends `/api` unless present, then `/v1/`. Idempotent.
///
/// # Errors
/// [`CredentialsError::InvalidSite`] if the site is empty, contains
/// whitespace, has no host, or uses a scheme other than `http`/`https`.
pub(crate) fn api_base_url(site: &str) -> Result<String, CredentialsError> {
    let site = site.trim();
    let invalid = |reason| CredentialsError::InvalidSite(site.to_owned(), reason);
    if site.is_empty() {
        return Err(invalid("it is empty"));
    }
    if site.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    let lower = site.to_ascii_lowercase();
    let url = if lower.starts_with("http://") || lower.starts_with("https://") {
        site.to_owned()
    } else if site.contains("://") {
        return Err(invalid("only http:// and https:// are supported"));
    } else if lower.starts_with("localhost") {
        format!("http://{site}")
    } else {
        format!("https://{site}")
    };
    let url = url.trim_end_matches('/');
    let host = url.split_once("://").map_or("", |(_, rest)| rest);
    if host.is_empty() || host.starts_with('/') {
        return Err(invalid("it has no host name"));
    }
    // Unlike Python, an existing `/api/v1` is kept, so feeding back a
    // `Credentials::site` (already a base URL) is a no-op.
    let url = url
        .strip_suffix("/v1")
        .filter(|u| u.ends_with("/api"))
        .unwrap_or(url);
    let api = if url.ends_with("/api") { "" } else { "/api" };
    Ok(format!("{url}{api}/v1/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    use secrecy::ExposeSecret;
    use tempfile::TempDir;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyzABCDEF";
    const RC: &str = "[api]\nemail=test-bot@zulip.example.com\n\
        key=abcdefghijklmnopqrstuvwxyzABCDEF\nsite=https://zulip.example.com\n";
    const URL: &str = "https://zulip.example.com/api/v1/";
    const NO: CredentialSources = CredentialSources {
        zuliprc: None,
        email: None,
        api_key: None,
        site: None,
        allow_insecure_http: false,
        file_permissions: FilePermissions::Enforce,
        ignore_environment: false,
    };

    /// A home directory holding the given files, e.g. `.zuliprc`.
    fn home(files: &[(&str, &str)]) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        dir
    }

    fn rc(text: &str) -> TempDir {
        home(&[(".zuliprc", text)])
    }

    fn with_rc(path: &Path) -> CredentialSources<'_> {
        CredentialSources {
            zuliprc: Some(path),
            ..NO
        }
    }

    fn load_full(
        home: &TempDir,
        src: &CredentialSources,
        vars: &[(&str, &str)],
    ) -> Result<Credentials, CredentialsError> {
        let env = |k: &str| vars.iter().find(|v| v.0 == k).map(|v| v.1.to_owned());
        load_credentials(src, &env, Some(home.path()))
    }

    /// "email key site", or "error: message".
    fn load(home: &TempDir, src: &CredentialSources, vars: &[(&str, &str)]) -> String {
        match load_full(home, src, vars) {
            Ok(c) => format!("{} {} {}", c.email, c.api_key.expose_secret(), c.site),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn the_download_button_file_in_home_is_read_and_its_site_normalized() {
        let c = load_full(&rc(RC), &NO, &[]).unwrap();
        assert_eq!(c.email, "test-bot@zulip.example.com");
        assert_eq!((c.api_key.expose_secret(), c.site.as_str()), (KEY, URL));
        assert!(!c.tls.insecure && c.tls.cert_bundle.is_none());
    }

    #[test]
    fn an_organization_of_several_reads_only_its_own_zuliprc() {
        let own = home(&[
            (".zuliprc", RC),
            (
                "own.rc",
                "[api]\nemail=own@x\nkey=own\nsite=https://own.example\n",
            ),
        ]);
        let path = own.path().join("own.rc");
        let src = CredentialSources {
            ignore_environment: true,
            ..with_rc(&path)
        };
        let vars = [
            ("ZULIP_API_KEY", "shared"),
            ("ZULIP_SITE", "https://shared.example"),
        ];
        assert_eq!(
            load(&own, &src, &vars),
            "own@x own https://own.example/api/v1/"
        );
        let no_file = CredentialSources {
            ignore_environment: true,
            ..NO
        };
        let got = load(&own, &no_file, &vars);
        assert!(
            got.starts_with("error:"),
            "neither ~/.zuliprc nor ZULIP_* is read: {got}"
        );
    }

    #[test]
    fn colon_separators_comments_whitespace_and_option_case_follow_configparser() {
        let text = "# c\n; c\n[other]\nkey = no\n\n[api]\n  # c\n Key:  k1 \nEMAIL : a@b.c\n\
            site=localhost:9991\n";
        let got = load(&rc(text), &NO, &[]);
        assert_eq!(got, "a@b.c k1 http://localhost:9991/api/v1/");
    }

    #[test]
    fn environment_variables_override_the_file_field_by_field() {
        let home = rc(RC);
        let got = load(&home, &NO, &[("ZULIP_EMAIL", "e@x")]);
        assert_eq!(got, format!("e@x {KEY} {URL}"));
        let vars = [("ZULIP_API_KEY", "k2"), ("ZULIP_SITE", "x.org")];
        let got = load(&home, &NO, &vars);
        assert_eq!(got, "test-bot@zulip.example.com k2 https://x.org/api/v1/");
    }

    #[test]
    fn explicit_sources_override_the_environment_and_zulip_config() {
        let (mine, theirs) = (RC.replace("test-bot", "me"), RC.replace("test-bot", "they"));
        let home = home(&[("mine", &mine), ("theirs", &theirs)]);
        let path = home.path().join("mine");
        let vars = [("ZULIP_CONFIG", "~/theirs"), ("ZULIP_SITE", "e.org")];
        let src = CredentialSources {
            site: Some("a.org"),
            ..with_rc(&path)
        };
        let got = load(&home, &src, &vars);
        assert_eq!(
            got,
            format!("me@zulip.example.com {KEY} https://a.org/api/v1/")
        );
        let src = CredentialSources {
            email: Some("a@b"),
            api_key: Some("k3"),
            ..src
        };
        let vars = [("ZULIP_EMAIL", "e@x"), ("ZULIP_API_KEY", "k2")];
        assert_eq!(load(&home, &src, &vars), "a@b k3 https://a.org/api/v1/");
    }

    #[test]
    fn zulip_config_chooses_the_file_and_a_leading_tilde_expands_to_home() {
        let other = RC.replace("test-bot", "o");
        let home = home(&[(".zuliprc", RC), ("o.rc", &other)]);
        let want = format!("o@zulip.example.com {KEY} {URL}");
        let abs = home.path().join("o.rc").display().to_string();
        assert_eq!(load(&home, &NO, &[("ZULIP_CONFIG", &abs)]), want);
        assert_eq!(load(&home, &NO, &[("ZULIP_CONFIG", "~/o.rc")]), want);
        assert_eq!(load(&home, &with_rc(Path::new("~/o.rc")), &[]), want);
    }

    #[test]
    fn a_missing_file_is_fine_when_the_environment_supplies_everything() {
        let vars = [("ZULIP_EMAIL", "e@x"), ("ZULIP_API_KEY", "k")];
        let vars = [vars[0], vars[1], ("ZULIP_SITE", "x.org")];
        let want = "e@x k https://x.org/api/v1/";
        assert_eq!(load(&home(&[]), &NO, &vars), want);
        let src = with_rc(Path::new("/nonexistent/rc"));
        assert_eq!(load(&home(&[]), &src, &vars), want);
    }

    #[test]
    fn missing_key_or_email_without_a_file_names_what_is_missing_and_where() {
        let home = home(&[]);
        let got = load(&home, &NO, &[("ZULIP_API_KEY", "k")]);
        let path = home.path().join(".zuliprc").display().to_string();
        assert_eq!(got, format!("error: Zulip email (ZULIP_EMAIL) not specified in our config or the environment, and config file {path} does not exist"));
        let got = load(&home, &with_rc(Path::new("/nonexistent/rc")), &[]);
        assert!(got.contains("API key (ZULIP_API_KEY) and email"), "{got}");
        assert!(got.contains("config file /nonexistent/rc does"), "{got}");
        let err = load_credentials(&NO, &|_| None, None).unwrap_err();
        assert!(err
            .to_string()
            .contains("~/.zuliprc (home directory unknown)"));
    }

    #[test]
    fn a_missing_or_empty_key_in_an_existing_file_is_an_error_unless_given_elsewhere() {
        let home = rc("[api]\nemail=a@b\nkey =\nsite=x.org\n");
        let path = home.path().join(".zuliprc").display().to_string();
        let want =
            format!("error: Zulip config file {path} has no `key` option in an [api] section");
        assert_eq!(load(&home, &NO, &[]), want);
        let got = load(&home, &NO, &[("ZULIP_API_KEY", "k"), ("ZULIP_EMAIL", " ")]);
        assert_eq!(got, "a@b k https://x.org/api/v1/");
        let got = load(&rc("[other]\nkey=a\nemail=b\n"), &NO, &[]);
        assert!(
            got.contains("has no `key` option in an [api] section"),
            "{got}"
        );
    }

    #[test]
    fn a_missing_site_is_an_error_naming_where_to_set_it() {
        let home = rc("[api]\nemail=a@b\nkey=k\n");
        let got = load(&home, &NO, &[("ZULIP_SITE", "")]);
        let path = home.path().join(".zuliprc").display().to_string();
        assert_eq!(got, format!("error: missing Zulip server URL: set `site` in our config, ZULIP_SITE, or the [api] section of {path}"));
    }

    #[test]
    fn sites_are_normalized_like_the_python_client() {
        for (site, want) in [
            ("zulip.example.com", URL),
            ("localhost:9991", "http://localhost:9991/api/v1/"),
            ("https://zulip.example.com/", URL),
            ("https://zulip.example.com/api", URL),
            ("https://zulip.example.com/api//", URL),
            ("https://zulip.example.com/api/v1", URL),
            (URL, URL),
            ("http://x.org", "http://x.org/api/v1/"),
            (" HTTPS://x.org/zulip ", "HTTPS://x.org/zulip/api/v1/"),
        ] {
            assert_eq!(api_base_url(site).unwrap(), want, "{site}");
        }
        for bad in ["", "  ", "https://", "https:///x", "ftp://x.org", "x .org"] {
            let err = api_base_url(bad).unwrap_err();
            assert!(matches!(err, CredentialsError::InvalidSite(..)), "{bad:?}");
        }
    }

    #[test]
    fn insecure_cert_bundle_and_client_certs_are_validated() {
        let home = rc(&format!("{RC}insecure = maybe\ncert_bundle = /no/ca.pem\n"));
        let c = load_full(&home, &NO, &[("ZULIP_ALLOW_INSECURE", "TRUE")]).unwrap();
        assert_eq!(
            (c.tls.insecure, c.tls.cert_bundle),
            (true, Some("/no/ca.pem".into()))
        );
        let got = load(&home, &NO, &[]);
        assert!(
            got.contains("option `insecure` in Zulip config file /"),
            "{got}"
        );
        assert!(got.ends_with("sets insecure to \"maybe\", but it must be 'true' or 'false'"));
        let got = load(&home, &NO, &[("ZULIP_ALLOW_INSECURE", "false")]);
        assert!(got.contains("TLS certificate bundle /no/ca.pem"), "{got}");
        let vars = [("ZULIP_CERT_KEY", "k"), ("ZULIP_ALLOW_INSECURE", "true")];
        let got = load(&home, &NO, &vars);
        assert!(
            got.starts_with(
                "error: ZULIP_CERT_KEY names a client certificate key, but no client certificate"
            ),
            "{got}"
        );
    }

    #[test]
    fn every_problem_is_found_not_only_the_first() {
        let h = home(&[]);
        let env = |_: &str| None;
        let problems = resolve_credentials(&NO, &env, Some(h.path())).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("API key (ZULIP_API_KEY) and email"),
            "{text:?}"
        );
        assert!(text[1].starts_with("missing Zulip server URL"), "{text:?}");

        let h = rc("[api]\nemail=a@b\ninsecure=maybe\ncert_bundle=/nonexistent/ca.pem\n");
        let problems = resolve_credentials(&NO, &env, Some(h.path())).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(text[0].contains("no `key` option"), "{text:?}");
        assert!(text[1].starts_with("missing Zulip server URL"), "{text:?}");
        assert!(text[2].contains("insecure"), "{text:?}");
        assert!(text[3].contains("ca.pem"), "{text:?}");
        assert_eq!(
            load_credentials(&NO, &env, Some(h.path()))
                .unwrap_err()
                .to_string(),
            text[0],
            "run stops at the first"
        );
        assert!(resolve_credentials(&NO, &env, Some(rc(RC).path())).is_ok());
    }

    #[test]
    fn a_zuliprc_holding_a_key_that_others_may_read_is_refused_with_the_chmod() {
        let home = rc(RC);
        let path = home.path().join(".zuliprc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let got = load(&home, &NO, &[]);
        assert!(
            got.contains(&format!("run `chmod 600 {}`", path.display())),
            "{got}"
        );
        assert!(!got.contains(KEY), "{got}");
        let allowed = CredentialSources {
            file_permissions: FilePermissions::AllowInsecure,
            ..NO
        };
        assert_eq!(
            load(&home, &allowed, &[]),
            format!("test-bot@zulip.example.com {KEY} {URL}")
        );
        // A zuliprc without a key holds no secret.
        std::fs::write(&path, "[api]\nsite=https://zulip.example.com\n").unwrap();
        let vars = [("ZULIP_API_KEY", "k"), ("ZULIP_EMAIL", "a@b")];
        assert_eq!(load(&home, &NO, &vars), format!("a@b k {URL}"));
    }

    #[test]
    fn a_plain_http_site_on_another_host_is_refused_unless_allowed() {
        let home = rc(&RC.replace("https://zulip.example.com", "http://zulip.example.com"));
        let got = load(&home, &NO, &[]);
        assert!(
            got.starts_with("error: the Zulip site http://zulip.example.com/api/v1/ is plain http:// on another host"),
            "{got}"
        );
        assert!(
            got.contains("`[zulip] allow_insecure_http = true`"),
            "{got}"
        );
        let allowed = CredentialSources {
            allow_insecure_http: true,
            ..NO
        };
        assert!(load(&home, &allowed, &[]).ends_with("http://zulip.example.com/api/v1/"));
        let local = [("ZULIP_SITE", "http://127.0.0.1:9991")];
        assert!(load(&home, &NO, &local).ends_with("http://127.0.0.1:9991/api/v1/"));
    }

    #[test]
    fn debug_output_and_error_messages_never_contain_the_key() {
        let debug = format!("{:?}", load_full(&rc(RC), &NO, &[]).unwrap());
        assert!(debug.contains("api_key: \"[redacted]\"") && !debug.contains(KEY));
        let debug = format!(
            "{:?}",
            CredentialSources {
                api_key: Some(KEY),
                ..NO
            }
        );
        assert!(debug.contains("api_key: Some(\"[redacted]\")") && !debug.contains(KEY));
        let key = [("ZULIP_API_KEY", KEY)];
        let errors = [
            load_full(&home(&[]), &NO, &key),
            load_full(&rc(&format!("[api]\nkey {KEY}\n")), &NO, &[]),
            load_full(&rc(&format!("[api]\nkey={KEY}\nkey=x\n")), &NO, &[]),
            load_full(&rc(&format!("[api]\nemail=a@b\nkey={KEY}\n")), &NO, &[]),
            load_full(&rc(&format!("[api]\nemail=a\n[x]\nkey={KEY}")), &NO, &[]),
            load_full(&rc(&format!("{RC}insecure = no\n")), &NO, &key),
            load_full(&rc(&format!("{RC}cert_bundle = /no\n")), &NO, &key),
            load_full(&rc(&format!("{RC}client_cert_key = /k\n")), &NO, &key),
        ];
        for err in errors.map(Result::unwrap_err) {
            let (msg, debug) = (err.to_string(), format!("{err:?}"));
            assert!(
                !msg.contains(KEY) && !debug.contains(KEY),
                "{msg} / {debug}"
            );
        }
    }
}
