//! `[network]`: HTTP timeouts towards Zulip, the cap of the backoff, and
//! the extra certificate authorities webhook requests trust. `max_retries`
//! is still read, so that the guide's files load, but no longer decides
//! anything: degradation is judged by time (`[error_handling] degraded_after`).

use std::path::PathBuf;
use std::time::Duration;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "network";

/// The keys of `[network]`.
pub(super) const KNOWN: &[&str] = &[
    "connection_timeout",
    "read_timeout",
    "max_retries",
    "backoff_cap",
    "ca_bundle",
];

/// `[network]`.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// TCP + TLS connect timeout.
    pub connection_timeout: Duration,
    /// Timeout of requests that are not long polls.
    pub read_timeout: Duration,
    /// The guide's retry count, when the file sets it. The daemon never
    /// gives up on Zulip and judges degradation by time
    /// (`[error_handling] degraded_after`), so it is only reported as unused.
    pub max_retries: Option<u32>,
    /// Upper bound of the exponential backoff between failed polls.
    pub backoff_cap: Duration,
    /// PEM certificates trusted by webhook listeners besides the built-in
    /// roots (a private CA). Zulip's own TLS follows the zuliprc.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            connection_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_retries: None,
            backoff_cap: Duration::from_secs(10),
            ca_bundle: None,
        }
    }
}

/// Reads `[network]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut NetworkConfig) {
    for (k, v) in t {
        let key = r.key(k);
        let duration = match k.as_str() {
            "connection_timeout" => &mut out.connection_timeout,
            "read_timeout" => &mut out.read_timeout,
            "backoff_cap" => &mut out.backoff_cap,
            "ca_bundle" => {
                match r.string(&key, v) {
                    Some(p) if p.is_empty() => r.problem(format!("`{key}` must not be empty")),
                    Some(p) if !std::path::Path::new(&p).is_file() => {
                        r.problem(format!("`{key}`: the certificate file {p} does not exist"))
                    }
                    Some(p) => out.ca_bundle = Some(PathBuf::from(p)),
                    None => {}
                }
                continue;
            }
            "max_retries" => {
                if let Some(n) = r.positive_int(&key, v) {
                    out.max_retries = Some(n.min(u64::from(u32::MAX)) as u32);
                }
                continue;
            }
            "connection_pool_size" => {
                r.problem(format!(
                    "`{key}` only made sense for the Python plugin's HTTP pool; this daemon keeps one long-poll connection per queue: remove the key"
                ));
                continue;
            }
            _ => {
                r.unknown_key(k);
                continue;
            }
        };
        if let Some(d) = r.seconds(&key, v) {
            *duration = d;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_ca_bundle_must_name_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "pem").unwrap();
        let c = Config::parse(
            &format!("[network]\nca_bundle = \"{}\"\n", path.display()),
            &[],
        )
        .unwrap();
        assert_eq!(c.network.ca_bundle.as_deref(), Some(path.as_path()));
        let missing = dir.path().join("missing.pem");
        let err = Config::parse(
            &format!("[network]\nca_bundle = \"{}\"\n", missing.display()),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            vec![format!(
                "`network.ca_bundle`: the certificate file {} does not exist",
                missing.display()
            )]
        );
    }
}
