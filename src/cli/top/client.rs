//! [`DaemonClient`]: `top`'s view of the running daemon: its `[http]`
//! address (an unspecified bind address reached on loopback) and, when
//! `[http] admin_token_file` is set, the file's first token sent as a
//! bearer, since `/metrics` and `/health` may require it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::exposition::Exposition;
use super::figures::{HealthView, Snapshot};
use crate::config::{read_admin_tokens, AdminTokenError, Config};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `top` cannot read the daemon.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TopError {
    /// `[http] bind = "off"`: the daemon serves no endpoint to read.
    #[error("the daemon's HTTP server is off (`[http] bind = \"off\"`): top reads its /metrics and /health")]
    HttpOff,
    /// The admin token file cannot be read, and the endpoints need it.
    #[error("the endpoints need an admin token: {0}")]
    Token(#[source] AdminTokenError),
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A request failed (the daemon is not running, or not there).
    #[error("GET {url}: {source}")]
    Request {
        /// The URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// `/metrics` answered with another status than 200.
    #[error("GET {url}: the daemon answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The terminal cannot be set up or drawn on.
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Reads `/metrics` and `/health` of one daemon.
pub(crate) struct DaemonClient {
    base: String,
    token: Option<SecretString>,
    http: reqwest::Client,
}

impl DaemonClient {
    /// The client of the daemon `config` describes.
    ///
    /// # Errors
    ///
    /// [`TopError::HttpOff`] without an HTTP server; [`TopError::Token`]
    /// when the token file cannot be read and `/metrics` or `/health`
    /// need a token (otherwise `top` goes on without one).
    pub(crate) fn from_config(config: &Config) -> Result<DaemonClient, TopError> {
        let bind = config.http.bind.ok_or(TopError::HttpOff)?;
        let token = match &config.http.admin_token_file {
            None => None,
            Some(path) => match read_admin_tokens(path, config.file_permissions) {
                Ok(tokens) => tokens.into_iter().next().map(|t| t.secret),
                Err(e)
                    if config.http.metrics_requires_token || config.http.health_requires_token =>
                {
                    return Err(TopError::Token(e))
                }
                Err(_) => None,
            },
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(TopError::Client)?;
        Ok(DaemonClient {
            base: format!("http://{}", reachable(bind)),
            token,
            http,
        })
    }

    /// Where the daemon is, as the header shows it.
    pub(crate) fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, TopError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t.expose_secret());
        }
        request
            .send()
            .await
            .map_err(|source| TopError::Request { url, source })
    }

    /// One scrape: `/metrics` (which must answer), then `/health` (whose
    /// report comes with a 503 too; left out when it cannot be read).
    ///
    /// # Errors
    ///
    /// [`TopError::Request`] or [`TopError::Status`] when `/metrics` fails.
    pub(crate) async fn scrape(&self) -> Result<Snapshot, TopError> {
        let response = self.get("/metrics").await?;
        if !response.status().is_success() {
            return Err(TopError::Status {
                url: response.url().to_string(),
                status: response.status(),
            });
        }
        let url = response.url().to_string();
        let text = response
            .text()
            .await
            .map_err(|source| TopError::Request { url, source })?;
        let health = match self.get("/health").await {
            Ok(r) => r.json::<HealthView>().await.ok(),
            Err(_) => None,
        };
        Ok(Snapshot {
            metrics: Exposition::parse(&text),
            health,
        })
    }
}

/// `bind` as a client reaches it: an unspecified address (all interfaces)
/// on loopback.
fn reachable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bind.port())
        }
        _ => bind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bind_address_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9187".parse().expect("an address");
        assert_eq!(reachable(any).to_string(), "127.0.0.1:9187");
        let any6: SocketAddr = "[::]:9187".parse().expect("an address");
        assert_eq!(reachable(any6).to_string(), "[::1]:9187");
        let own: SocketAddr = "10.0.0.5:80".parse().expect("an address");
        assert_eq!(reachable(own), own);
    }

    #[test]
    fn a_daemon_without_http_cannot_be_read() {
        let mut config = Config::default();
        config.http.bind = None;
        assert!(matches!(
            DaemonClient::from_config(&config),
            Err(TopError::HttpOff)
        ));
    }
}
