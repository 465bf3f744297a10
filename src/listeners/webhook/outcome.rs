//! What a receiver's answer means for the run: 2xx is a success; 408, 429,
//! 5xx, connection errors and timeouts are transient (retried, honouring a
//! `Retry-After`); every other status is permanent. Failures name the
//! status and a bounded excerpt of the body, never the URL's secrets.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use crate::listeners::ListenerError;

/// The most of an error body quoted in a run's error.
pub(super) const EXCERPT_BYTES: usize = 512;

/// The longest `Retry-After` honoured: a receiver asking for more holds its
/// conversation's lane this long, then is tried again.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What a status says about the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Delivered.
    Success,
    /// Worth retrying.
    Transient,
    /// Retrying cannot help.
    Permanent,
}

/// The class of `status`.
pub(super) fn classify(status: StatusCode) -> Class {
    if status.is_success() {
        Class::Success
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Class::Transient
    } else {
        Class::Permanent
    }
}

/// The delay a `Retry-After` header asks for, at `now`: delta seconds (an
/// integer, or a fraction as Zulip sends) or an HTTP date; capped at
/// [`MAX_RETRY_AFTER`]. `None` when absent or unreadable.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        Ok(_) => return None,
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The failure of a non-2xx answer `status` from `target`, quoting `body`.
pub(super) fn failure(
    status: StatusCode,
    headers: &HeaderMap,
    target: &str,
    body: &[u8],
) -> ListenerError {
    let mut msg = format!("{target} answered {status}");
    let excerpt = excerpt(body);
    if !excerpt.is_empty() {
        msg.push_str(": ");
        msg.push_str(&excerpt);
    }
    match classify(status) {
        Class::Success | Class::Permanent => ListenerError::permanent(msg),
        Class::Transient => match retry_after(headers, SystemTime::now()) {
            Some(delay) => {
                msg.push_str(&format!(" (Retry-After: {:.3} s)", delay.as_secs_f64()));
                ListenerError::retry_after(msg, delay)
            }
            None => ListenerError::transient(msg),
        },
    }
}

/// A request that got no answer (refused connection, reset, TLS failure,
/// a body that could not be read): transient.
pub(super) fn transport(target: &str, e: reqwest::Error) -> ListenerError {
    // Without its URL (which may carry a secret in the query); the causes
    // say what happened ("connection refused", "invalid peer certificate").
    let e = e.without_url();
    let mut msg = format!("cannot POST to {target}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    ListenerError::transient(msg)
}

/// At most [`EXCERPT_BYTES`] of `body` as one line of text, `…` marking a cut.
pub(super) fn excerpt(body: &[u8]) -> String {
    let cut = body.len() > EXCERPT_BYTES;
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let mut out: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if cut {
        // The cut may split a character: its replacement mark goes.
        out = out.trim_end_matches('\u{FFFD}').to_owned();
        out.push('…');
    }
    out
}

/// Reads at most `cap` bytes of `response`'s body; `true` with them when
/// the body was longer (the rest is not read).
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > cap {
            out.extend_from_slice(&chunk[..cap - out.len()]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    #[test]
    fn success_transient_and_permanent_statuses_are_told_apart() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(classify(status(code)), Class::Success, "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(status(code)), Class::Transient, "{code}");
        }
        for code in [301, 302, 400, 401, 403, 404, 405, 409, 410, 413, 422] {
            assert_eq!(classify(status(code)), Class::Permanent, "{code}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let at = |v: &str| retry_after(&headers(v), now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            at("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        // The obsolete forms HTTP still allows.
        assert_eq!(
            at("Sunday, 06-Nov-94 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        // A date already past: retry at once (the policy's own delay applies).
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("86400000"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("soon"), None);
        assert_eq!(at("-3"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_429_with_retry_after_asks_for_that_delay() {
        let e = failure(status(429), &headers("7"), "http://h/x", b"slow down");
        match e {
            ListenerError::RetryAfter(msg, d) => {
                assert_eq!(d, Duration::from_secs(7));
                assert!(
                    msg.starts_with("http://h/x answered 429 Too Many Requests: slow down"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            failure(status(429), &HeaderMap::new(), "t", b""),
            ListenerError::Transient(_)
        ));
    }

    #[test]
    fn errors_name_the_status_and_a_bounded_excerpt_of_the_body() {
        let e = failure(
            status(400),
            &HeaderMap::new(),
            "https://h/hook",
            b"{\"error\":\n \"bad field\"}",
        );
        match &e {
            ListenerError::Permanent(msg) => assert_eq!(
                msg,
                "https://h/hook answered 400 Bad Request: {\"error\": \"bad field\"}"
            ),
            other => panic!("{other:?}"),
        }
        let long = "é".repeat(1000);
        let e = failure(status(503), &HeaderMap::new(), "t", long.as_bytes()).to_string();
        assert!(matches!(
            failure(status(503), &HeaderMap::new(), "t", b""),
            ListenerError::Transient(_)
        ));
        assert!(e.len() < EXCERPT_BYTES + 64, "{} bytes", e.len());
        assert!(e.ends_with("é…"), "{e}");
    }
}
