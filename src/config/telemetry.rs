//! `[telemetry]`: traces exported over OTLP (HTTP with protobuf bodies) —
//! where to, which share of the events, under which service name. Off
//! unless `otlp_endpoint` is set.

use reqwest::Url;
use toml::{Table, Value};

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "telemetry";

/// The keys of `[telemetry]`.
pub(super) const KNOWN: &[&str] = &["otlp_endpoint", "sampling_ratio", "service_name"];

/// The service name traces carry unless `service_name` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "zulip-event-listeners";

/// `[telemetry]`.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Where spans are POSTed: the collector's OTLP/HTTP traces URL
    /// (`…/v1/traces`, added to a base URL that lacks it). `None`: no traces.
    pub otlp_endpoint: Option<Url>,
    /// The share of events traced, from 0 to 1 (each event's trace is kept
    /// or dropped whole).
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
        }
    }
}

/// `endpoint` with the OTLP traces path, unless it has it already.
fn traces_url(mut endpoint: Url) -> Url {
    if !endpoint.path().ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
    }
    endpoint
}

/// Reads `[telemetry]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut TelemetryConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "otlp_endpoint" => {
                let Some(text) = r.string(&key, v) else {
                    continue;
                };
                match Url::parse(&text) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => {
                        out.otlp_endpoint = Some(traces_url(url));
                    }
                    Ok(_) => r.problem(format!(
                        "`{key}` must be an http:// or https:// URL (OTLP over HTTP, e.g. \"http://127.0.0.1:4318\"), got `{text}`"
                    )),
                    Err(e) => r.problem(format!("`{key}` is not a URL ({e}): `{text}`")),
                }
            }
            "sampling_ratio" => {
                let ratio = match v {
                    Value::Float(f) => Some(*f),
                    Value::Integer(i) => Some(*i as f64),
                    _ => None,
                };
                match ratio {
                    Some(x) if (0.0..=1.0).contains(&x) => out.sampling_ratio = x,
                    _ => r.problem(format!(
                        "`{key}` must be a number from 0 to 1 (the share of events traced), got `{v}`"
                    )),
                }
            }
            "service_name" => {
                if let Some(name) = r.string(&key, v) {
                    if name.trim().is_empty() {
                        r.problem(format!("`{key}` must not be empty"));
                    } else {
                        out.service_name = name;
                    }
                }
            }
            _ => r.unknown_key(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        let base = traces_url(Url::parse("http://127.0.0.1:4318").unwrap());
        assert_eq!(base.as_str(), "http://127.0.0.1:4318/v1/traces");
        let full = traces_url(Url::parse("https://otel.example.com/v1/traces").unwrap());
        assert_eq!(full.as_str(), "https://otel.example.com/v1/traces");
        let prefixed = traces_url(Url::parse("http://c:4318/otlp/").unwrap());
        assert_eq!(prefixed.as_str(), "http://c:4318/otlp/v1/traces");
    }
}
