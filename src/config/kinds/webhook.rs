//! `kind = "webhook"`: `url`, `format`, the signing secret
//! (`secret_file` / `secret_env`), extra `headers`, and for
//! `format = "zulip_outgoing"` the outgoing-webhook `token`.

use toml::{Table, Value};

use super::super::reader::Reader;
use super::super::secret::{read_secret, SecretSource};

/// The keys of a webhook instance, besides those every kind has.
pub(in crate::config) const KNOWN: &[&str] = &[
    "url",
    "format",
    "secret_file",
    "secret_env",
    "token_file",
    "token_env",
    "headers",
];

/// The body a webhook sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"listener", "idempotency_key", "attempt", "inbox_id", "received_at", "event"}`.
    Event,
    /// Zulip's outgoing-webhook payload, for messages mentioning the bot or
    /// sent to it directly.
    ZulipOutgoing,
}

/// A webhook instance's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where events are POSTed (`http` or `https`).
    pub url: reqwest::Url,
    /// The body's form.
    pub format: WebhookFormat,
    /// The HMAC-SHA256 signing secret, when requests are signed.
    pub secret: Option<SecretSource>,
    /// The `token` field of `zulip_outgoing` payloads.
    pub token: Option<SecretSource>,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
}

impl WebhookConfig {
    /// The URL without user, password, query or fragment (which may hold
    /// secrets); `?…` marks a query left out.
    pub fn redacted_url(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let had_query = u.query().is_some();
        u.set_query(None);
        u.set_fragment(None);
        // Written after the URL is serialized: `set_query` would
        // percent-encode the ellipsis.
        let mut out = u.to_string();
        if had_query {
            out.push_str("?…");
        }
        out
    }
}

/// Reads a webhook instance's own keys of table `t`.
pub(in crate::config) fn read(r: &mut Reader, name: &str, t: &Table) -> Option<WebhookConfig> {
    let prefix = format!("listeners.{name}");
    let url = match t.get("url") {
        None => {
            r.problem(format!(
                "`{prefix}.url` is missing: a webhook needs the URL to POST events to"
            ));
            None
        }
        Some(v) => {
            r.string(&format!("{prefix}.url"), v)
                .and_then(|s| match reqwest::Url::parse(&s) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
                    Ok(u) => {
                        r.problem(format!(
                            "`{prefix}.url` must be an http:// or https:// URL, got `{}:`",
                            u.scheme()
                        ));
                        None
                    }
                    Err(e) => {
                        r.problem(format!("`{prefix}.url` is not a valid URL (`{s}`): {e}"));
                        None
                    }
                })
        }
    };
    let format = match t.get("format") {
        None => Some(WebhookFormat::Event),
        Some(v) => match v.as_str() {
            Some("event") => Some(WebhookFormat::Event),
            Some("zulip_outgoing") => Some(WebhookFormat::ZulipOutgoing),
            _ => r.wrong(
                &format!("{prefix}.format"),
                v,
                "\"event\" or \"zulip_outgoing\"",
            ),
        },
    };
    let secret = read_secret(r, &prefix, t, "secret");
    let token = read_secret(r, &prefix, t, "token");
    let headers = t
        .get("headers")
        .map(|v| read_headers(r, &prefix, v))
        .unwrap_or_default();
    Some(WebhookConfig {
        url: url?,
        format: format?,
        secret,
        token,
        headers,
    })
}

fn read_headers(r: &mut Reader, prefix: &str, v: &Value) -> Vec<(String, String)> {
    let key = format!("{prefix}.headers");
    let Some(t) = v.as_table() else {
        r.wrong::<()>(&key, v, "a table of header names to values");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in t {
        let Some(value) = value.as_str() else {
            r.wrong::<()>(&format!("{key}.{name}"), value, "a string");
            continue;
        };
        let valid_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let valid_value = reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid_name || !valid_value {
            r.problem(format!("`{key}.{name}` is not a valid HTTP header"));
            continue;
        }
        let reserved = [
            "content-type",
            "idempotency-key",
            "x-zulip-event-listeners-signature",
        ];
        if reserved.contains(&name.to_ascii_lowercase().as_str()) {
            r.problem(format!(
                "`{key}.{name}` is set by the daemon itself and cannot be overridden"
            ));
            continue;
        }
        out.push((name.clone(), value.to_owned()));
    }
    out
}
