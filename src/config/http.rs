//! `[http]`: the address of the `/health` and `/metrics` server, or `off`.

use std::net::SocketAddr;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "http";

/// The keys of `[http]`.
pub(super) const KNOWN: &[&str] = &["bind"];

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address of the `/health` and `/metrics` server; `None` disables it.
    pub bind: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 9187))),
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
            _ => r.unknown_key(k),
        }
    }
}
