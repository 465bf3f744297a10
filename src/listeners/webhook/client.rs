//! The HTTP client every webhook instance shares: one connection pool, the
//! `[network]` connect timeout, TCP keep-alive, and the built-in TLS roots
//! plus `[network] ca_bundle`. Redirects are not followed: a signed POST
//! re-sent elsewhere (or turned into a GET) is not what was configured.

use std::time::Duration;

use crate::config::Config;

/// Builds the shared client.
///
/// # Errors
///
/// A sentence when the CA bundle cannot be read or the TLS stack refuses it.
pub(in crate::listeners) fn http_client(config: &Config) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.network.connection_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("zulip-event-listeners/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.network.ca_bundle {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read network.ca_bundle {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("network.ca_bundle {} is not PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "network.ca_bundle {} holds no certificate",
                path.display()
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
