//! Turning HTTP responses into values or a typed [`ZulipError`]: by the
//! body's `code`, never its translated `msg`, with `Retry-After` from the
//! header or the body, and transport failures summarized without the URL.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ZulipError;

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    msg: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "retry-after")]
    retry_after: Option<f64>,
    #[serde(default)]
    queue_id: Option<String>,
}

pub(super) fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub(super) fn transport(e: reqwest::Error) -> ZulipError {
    if e.is_timeout() {
        ZulipError::Timeout
    } else {
        // Without the URL: it is noise in a log line, and never secret, but
        // keeps messages short.
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        ZulipError::Transport(msg)
    }
}

pub(super) async fn send(req: RequestBuilder) -> Result<Response, ZulipError> {
    req.send().await.map_err(transport)
}

pub(super) async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, ZulipError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(error_from(resp).await);
    }
    let body = resp.bytes().await.map_err(transport)?;
    serde_json::from_slice(&body).map_err(|_| ZulipError::NonJson {
        status: status.as_u16(),
    })
}

pub(super) async fn error_from(resp: Response) -> ZulipError {
    let status = resp.status();
    let header_retry = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return transport(e),
    };
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let Some(err) = parsed else {
        return match status {
            StatusCode::TOO_MANY_REQUESTS => ZulipError::RateLimited {
                retry_after: seconds(header_retry.unwrap_or(1.0)),
            },
            // A proxy's HTML 502/503/504 (nginx while Django or Tornado
            // restarts) is a server error like Zulip's own 5xx.
            s if s.is_server_error() => ZulipError::Server {
                status: s.as_u16(),
                msg: "the body is not Zulip JSON (a proxy's error page?)".to_owned(),
            },
            _ => ZulipError::NonJson {
                status: status.as_u16(),
            },
        };
    };
    let code = err.code.unwrap_or_else(|| "BAD_REQUEST".to_owned());
    match (status.as_u16(), code.as_str()) {
        (429, _) | (_, "RATE_LIMIT_HIT") => ZulipError::RateLimited {
            retry_after: seconds(header_retry.or(err.retry_after).unwrap_or(1.0)),
        },
        (_, "BAD_EVENT_QUEUE_ID") => ZulipError::QueueGone {
            queue_id: err.queue_id.unwrap_or_default(),
        },
        (401, _) => ZulipError::Unauthorized { code, msg: err.msg },
        (403, _) => ZulipError::Forbidden { code, msg: err.msg },
        (s, _) if s >= 500 => ZulipError::Server {
            status: s,
            msg: err.msg,
        },
        (s, _) => ZulipError::Client {
            status: s,
            code,
            msg: err.msg,
        },
    }
}

/// The shortest wait a 429 imposes, whatever its `Retry-After` says: a
/// `0` or negative value must not turn into polls with no pause at all.
pub(super) const MIN_RETRY_AFTER: Duration = Duration::from_millis(250);

/// A `Retry-After` value as a duration, from [`MIN_RETRY_AFTER`] to an
/// hour; a value that is not a number waits a second.
fn seconds(v: f64) -> Duration {
    if v.is_finite() {
        Duration::from_secs_f64(v.clamp(MIN_RETRY_AFTER.as_secs_f64(), 3600.0))
    } else {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_of_zero_or_less_still_waits_the_minimum() {
        for v in [0.0, -5.0, 0.01] {
            assert_eq!(seconds(v), MIN_RETRY_AFTER, "{v}");
        }
        assert_eq!(seconds(2.5), Duration::from_millis(2500));
        assert_eq!(seconds(1e9), Duration::from_secs(3600));
    }

    fn response(status: u16, body: &'static str) -> Response {
        axum::http::Response::builder()
            .status(status)
            .body(body)
            .unwrap()
            .into()
    }

    #[tokio::test]
    async fn a_proxys_html_5xx_is_a_server_error_not_a_non_json_answer() {
        let e = error_from(response(502, "<html><h1>502 Bad Gateway</h1></html>")).await;
        assert!(matches!(e, ZulipError::Server { status: 502, .. }), "{e:?}");
        assert_eq!(e.reason(), "server_error");
    }

    #[tokio::test]
    async fn a_non_json_answer_below_500_stays_non_json() {
        let e = error_from(response(404, "<html>not found</html>")).await;
        assert!(matches!(e, ZulipError::NonJson { status: 404 }), "{e:?}");
    }
}
