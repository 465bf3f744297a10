//! `tap [--listener NAME] [--type T] [--channel C] [--limit N]
//! [--show-content]`: connects to the running daemon's HTTP server (the
//! configuration's `[http] bind`, with the first token of `[http]
//! admin_token_file` when there is one) and copies `GET /admin/tap`'s JSON
//! lines to stdout as they come, until `--limit` lines (exit 0), the
//! daemon stops (exit 1), or the reader goes.
//!
//! `--show-content` is refused here when the configuration does not allow
//! it (`[http] tap_show_content`), before connecting; the daemon checks
//! again with its own.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::anyhow;
use secrecy::ExposeSecret;

use crate::cli::args::TapArgs;
use crate::cli::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{read_admin_tokens, Config};

/// How long to wait for the daemon to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `tap`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 when the configuration serves no HTTP, forbids
/// `--show-content` or has an unusable token file; exit 1 when the daemon
/// cannot be reached, refuses the tap, or stops before `--limit` lines.
pub(crate) async fn cmd_tap(config: &Config, args: &TapArgs) -> Result<(), Failure> {
    let config_error = |text: String| Failure::new(EXIT_CONFIG, anyhow!(text));
    let Some(bind) = config.http.bind else {
        return Err(config_error(
            "the daemon serves no HTTP (`[http] bind = \"off\"`): the tap needs it".to_owned(),
        ));
    };
    if args.show_content && !config.http.tap_show_content {
        return Err(config_error("--show-content needs `[http] tap_show_content = true` in the configuration: by default the tap redacts content, topics, emails and names".to_owned()));
    }
    let addr = reachable(bind);
    let token = match &config.http.admin_token_file {
        Some(path) => {
            let tokens = read_admin_tokens(path, config.file_permissions)
                .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
            tokens.into_iter().next().map(|t| t.secret)
        }
        None => None,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let mut request = client
        .get(format!("http://{addr}/admin/tap"))
        .query(&query(args));
    if let Some(token) = &token {
        request = request.bearer_auth(token.expose_secret());
    }
    let unreachable = |e: reqwest::Error| {
        Failure::new(
            EXIT_FAILURE,
            anyhow!("cannot reach the daemon at http://{addr} (is it running?): {e}"),
        )
    };
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        let hint = match status.as_u16() {
            401 => " (check `[http] admin_token_file`: the daemon's and this one must hold the same token)",
            404 => " (without `[http] admin_token_file` the daemon serves the tap only on a loopback address)",
            _ => "",
        };
        return Err(Failure::new(
            EXIT_FAILURE,
            anyhow!("the daemon at http://{addr} refused the tap: {status}: {why}{hint}"),
        ));
    }
    let mut copier = Copier::new(args.limit);
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if copier
            .copy(&chunk)
            .map_err(|e| Failure::new(EXIT_FAILURE, e))?
        {
            return Ok(());
        }
    }
    Err(Failure::new(
        EXIT_FAILURE,
        anyhow!("the daemon at http://{addr} ended the tap (it is stopping)"),
    ))
}

/// Where to connect for a server bound to `bind`: the loopback address of
/// its family when it listens on every address.
fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// The query of `GET /admin/tap` for `args`.
fn query(args: &TapArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut add = |key, value: Option<&String>| {
        if let Some(v) = value {
            q.push((key, v.clone()));
        }
    };
    add("listener", args.listener.as_ref());
    add("type", args.event_type.as_ref());
    add("channel", args.channel.as_ref());
    if let Some(n) = args.limit {
        q.push(("limit", n.to_string()));
    }
    if args.show_content {
        q.push(("show_content", "true".to_owned()));
    }
    q
}

/// Copies whole lines to stdout, counting the event and outcome lines.
struct Copier {
    partial: Vec<u8>,
    left: Option<u64>,
}

impl Copier {
    fn new(limit: Option<u64>) -> Copier {
        Copier {
            partial: Vec::new(),
            left: limit,
        }
    }

    /// Writes the lines `chunk` completes; true once the limit is reached.
    fn copy(&mut self, chunk: &[u8]) -> std::io::Result<bool> {
        self.partial.extend_from_slice(chunk);
        let mut out = std::io::stdout().lock();
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = &self.partial[start..start + end + 1];
            start += end + 1;
            out.write_all(line)?;
            if !line.starts_with(br#"{"kind":"dropped""#) {
                if let Some(n) = &mut self.left {
                    *n -= 1;
                    if *n == 0 {
                        out.flush()?;
                        return Ok(true);
                    }
                }
            }
        }
        self.partial.drain(..start);
        out.flush()?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_every_address_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9187".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:9187".parse().unwrap());
        let any6: SocketAddr = "[::]:9187".parse().unwrap();
        assert_eq!(reachable(any6), "[::1]:9187".parse().unwrap());
        let one: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert_eq!(reachable(one), one);
    }

    #[test]
    fn the_limit_counts_event_and_outcome_lines_not_drop_notes() {
        let mut c = Copier::new(Some(2));
        assert!(!c.copy(b"{\"kind\":\"event\"}\n{\"kind\":\"drop").unwrap());
        assert!(!c.copy(b"ped\",\"lines\":3}\n{\"kind\":\"out").unwrap());
        assert!(c.copy(b"come\"}\n").unwrap());
    }
}
