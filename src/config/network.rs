//! `[network]`: HTTP timeouts towards Zulip and the cap of the backoff.
//! `max_retries` is still read, so that the guide's files load, but no
//! longer decides anything: degradation is judged by time
//! (`[error_handling] degraded_after`).

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
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            connection_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_retries: None,
            backoff_cap: Duration::from_secs(10),
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
