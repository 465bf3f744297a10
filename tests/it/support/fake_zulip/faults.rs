//! Fault injection: which requests get a 429, a 500, a non-JSON 502, a
//! 401 or a dropped connection instead of their normal answer, and those
//! answers.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::api::unauthorized;

/// A failure injected instead of the normal handling of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 `RATE_LIMIT_HIT` with `Retry-After: <float>` header and body field.
    RateLimit {
        /// Seconds to wait, sent as a float in the header and the body.
        retry_after: f64,
    },
    /// 500 with an HTML (non-JSON) body.
    ServerError,
    /// The TCP connection is closed before any byte of a response is sent.
    DropConnection,
    /// 502 with the body `<html>Bad Gateway</html>`.
    NonJson,
    /// 401 `UNAUTHORIZED`, exactly like a bad API key.
    Unauthorized,
}

/// Fault injection by request number: e.g. every 5th request gets
/// `RateLimit { retry_after: 0.3 }`, every 7th `ServerError`, every 11th
/// `DropConnection`. The first matching rule wins. Request numbers count every
/// request the server receives from 1 (faulted, unauthorized and unknown-path
/// ones included; not reset by [`FakeZulip::set_faults`]). With `only_paths`,
/// a request whose path is not listed is never faulted (but still counted).
/// Faulted requests change no queue state (no ack, no prune, no parking).
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// `(k, fault)`: requests whose number is a multiple of `k` (> 0) get `fault`.
    pub every: Vec<(u64, Fault)>,
    /// If `Some`, only requests to these paths (e.g. `"/events"`) can be faulted.
    pub only_paths: Option<Vec<String>>,
}

impl FaultPlan {
    pub(super) fn pick(&self, n: u64, path: &str) -> Option<Fault> {
        let norm = |p: &str| p.trim_matches('/').to_owned();
        if let Some(paths) = &self.only_paths {
            if !paths.iter().any(|p| norm(p) == norm(path)) {
                return None;
            }
        }
        let rule = self.every.iter().find(|(k, _)| *k > 0 && n % k == 0);
        rule.map(|(_, f)| f.clone())
    }
}

pub(super) fn fault_response(fault: &Fault) -> Response {
    let html = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
    match fault {
        Fault::RateLimit { retry_after } => {
            let body = json!({
                "result": "error", "msg": "API usage exceeded rate limit",
                "code": "RATE_LIMIT_HIT", "retry-after": retry_after,
            });
            let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Fault::ServerError => {
            let body = "<html><body><h1>500 Internal Server Error</h1></body></html>";
            (StatusCode::INTERNAL_SERVER_ERROR, html, body).into_response()
        }
        Fault::NonJson => {
            (StatusCode::BAD_GATEWAY, html, "<html>Bad Gateway</html>").into_response()
        }
        Fault::Unauthorized => unauthorized(),
        Fault::DropConnection => {
            // A body that fails on its first poll makes hyper close the
            // connection without writing the response head.
            let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake: drop");
            let stream = futures::stream::once(async move { Err::<Bytes, _>(err) });
            Response::new(Body::from_stream(stream))
        }
    }
}
