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

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (public part only), made for this test.
    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBgjCCASmgAwIBAgIUY5BGb/FKbTHRRoXYAm0Hv57e/wYwCgYIKoZIzj0EAwIw\nFjEUMBIGA1UEAwwLemVsLXRlc3QtY2EwIBcNMjYxMjAxMTI0OTA3WhgPMjEyNjEx\nMDcxMjQ5MDdaMBYxFDASBgNVBAMMC3plbC10ZXN0LWNhMFkwEwYHKoZIzj0CAQYI\nKoZIzj0DAQcDQgAE5iigGb85KUJAZiiN0MEwA1XjHPdG9YTJWVTZV/B8sryc7C7N\nX+oVw2bvhk3nJFi/Lv8Ez33qIbEstr+0GFbvtKNTMFEwHQYDVR0OBBYEFDTjuODU\n6Y/bjT8rqAECQFKkHZBtMB8GA1UdIwQYMBaAFDTjuODU6Y/bjT8rqAECQFKkHZBt\nMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgG405waorV5qIg16C\nTqF5uAeTbDyavRqBSnfhAH9ZDKMCIC04L2SRjZt1Hk/Sh5GVLWJyIzXQlvNpGm3Z\nYfQAZpB9\n-----END CERTIFICATE-----\n";

    fn with_bundle(content: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, content).unwrap();
        let mut config = Config::default();
        config.network.ca_bundle = Some(path);
        (dir, config)
    }

    #[test]
    fn a_ca_bundle_is_trusted_and_a_bundle_without_certificates_is_refused() {
        assert!(http_client(&Config::default()).is_ok());
        let (_dir, config) = with_bundle(CA);
        assert!(http_client(&config).is_ok());
        let (_dir, config) = with_bundle("not a certificate\n");
        let err = http_client(&config).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
    }
}
