//! `[http]`: the address of the `/health` and `/metrics` server, or `off`,
//! and its bounds against slow or too many clients.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "http";

/// The keys of `[http]`.
pub(super) const KNOWN: &[&str] = &["bind", "header_read_timeout", "max_connections"];

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address of the `/health` and `/metrics` server; `None` disables it.
    pub bind: Option<SocketAddr>,
    /// How long a client may take to send a request's headers before its
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog
    /// (using no descriptor of the daemon's) until one closes.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 9187))),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// Reads `[http]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut HttpConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "bind" => match r.string(&key, v).as_deref() {
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
            _ => r.unknown_key(k),
        }
    }
}
