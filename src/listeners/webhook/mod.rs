//! `kind = "webhook"`: each matching event POSTed to a URL, signed, with
//! an `Idempotency-Key`; a 2xx JSON `{"content": …}` answer is a reply.

use std::sync::Arc;

use crate::config::{Config, WebhookConfig};
use crate::listeners::Listener;

/// The HTTP client every webhook instance shares (its pool and TLS).
pub(super) fn http_client(config: &Config) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(config.network.connection_timeout)
        .user_agent(concat!("zulip-event-listeners/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The webhook instance `name`.
pub(super) fn build(
    name: &str,
    _config: &WebhookConfig,
    _http: &reqwest::Client,
) -> Result<Arc<dyn Listener>, String> {
    Err(format!("the webhook kind is not built yet ({name})"))
}
