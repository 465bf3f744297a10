//! The HTTP side: the one axum handler that records each request, applies
//! faults, Basic auth and the rate limit, and routes it to the queue and
//! message logic.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::api::{bad_queue, unauthorized, ApiError, Params};
use super::body::{events_response, Reply};
use super::faults::{fault_response, Fault};
use super::messages::Sent;
use super::options::BOT_FULL_NAME;
use super::queues::{Completion, Poll, RequestRecord, Shared};

impl Shared {
    /// Basic auth with the bot's email (in any case) and API key.
    fn authorized(&self, headers: &HeaderMap, path: &str) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            // Like Zulip, /server_settings may be fetched anonymously.
            return path == "/server_settings";
        };
        let value = value.to_str().unwrap_or_default();
        let (scheme, b64) = value.split_once(' ').unwrap_or_default();
        let creds = base64_decode(b64.trim()).unwrap_or_default();
        match String::from_utf8_lossy(&creds).split_once(':') {
            Some((email, key)) if scheme.eq_ignore_ascii_case("basic") => {
                email.eq_ignore_ascii_case(&self.opts.email) && key == self.opts.api_key
            }
            _ => false,
        }
    }
}

/// Every request: recorded on arrival, then faulted, refused or routed.
pub(super) async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().strip_prefix("/api/v1").unwrap_or(uri.path());
    let mut params = Params::default();
    params.parse(uri.query().unwrap_or_default().as_bytes());
    params.parse(&body);
    let (index, fault) = {
        let mut st = shared.lock();
        st.request_seq += 1;
        let fault = st.faults.pick(st.request_seq, path);
        let last_event_id = params.get("last_event_id").and_then(|s| s.parse().ok());
        st.requests.push(RequestRecord {
            method: method.to_string(),
            path: path.to_owned(),
            at,
            status: 0,
            queue_id: params.get("queue_id").map(str::to_owned),
            last_event_id,
            fault: fault.clone(),
        });
        (st.requests.len() - 1, fault)
    };
    let response = match &fault {
        Some(f) => fault_response(f),
        None if !shared.authorized(&headers, path) => unauthorized(),
        None if method == Method::POST && path.trim_end_matches('/') == "/messages" => match shared
            .send_message(&params)
        {
            Ok(Sent::Answer(v)) => Json(v).into_response(),
            Ok(Sent::RateLimited(retry_after)) => fault_response(&Fault::RateLimit { retry_after }),
            Ok(Sent::Dropped) => fault_response(&Fault::DropConnection),
            Ok(Sent::Hung) => std::future::pending::<Response>().await,
            Err(e) => e.into_response(),
        },
        None => {
            let limit = shared.opts.rate_limit;
            let charge = limit.map(|l| shared.lock().budget.charge(&l));
            let mut response = match charge.and_then(|c| c.retry_after) {
                Some(secs) => fault_response(&Fault::RateLimit { retry_after: secs }),
                None => match route(&shared, &method, path, &params).await {
                    Ok(Answer::Json(v)) => Json(v).into_response(),
                    Ok(Answer::Events(reply, qid)) => {
                        let (order, fault) = shared.lock().bodies.next(&reply);
                        events_response(reply, &qid, order, fault)
                    }
                    Err(e) => e.into_response(),
                },
            };
            if let Some(c) = charge {
                c.write(response.headers_mut());
            }
            response
        }
    };
    if fault != Some(Fault::DropConnection) {
        shared.lock().requests[index].status = response.status().as_u16();
    }
    response
}

/// A successful answer: a JSON body, or the events of a `GET /events`
/// (written as [`super::body`] says).
pub(super) enum Answer {
    Json(Value),
    Events(Reply, String),
}

/// The endpoints; a known path with another method is 405, others 404.
pub(super) async fn route(
    s: &Arc<Shared>,
    m: &Method,
    path: &str,
    p: &Params,
) -> Result<Answer, ApiError> {
    match (m.as_str(), path.trim_end_matches('/')) {
        ("GET", "/events") => match s.get_events(p)? {
            Poll::Ready(reply, qid) => Ok(Answer::Events(reply, qid)),
            Poll::Parked(rx, qid) => match rx.await {
                Ok(Completion::Events(reply)) => Ok(Answer::Events(reply, qid)),
                Ok(Completion::Gone) | Err(_) => Err(bad_queue(&qid)),
            },
        },
        _ => json_route(s, m, path, p).map(Answer::Json),
    }
}

/// The endpoints answered with a JSON body.
fn json_route(s: &Arc<Shared>, m: &Method, path: &str, p: &Params) -> Result<Value, ApiError> {
    let opts = &s.opts;
    match (m.as_str(), path.trim_end_matches('/')) {
        ("POST", "/register") => s.register(p),
        ("DELETE", "/events") => s.delete_queue(p),
        ("GET", "/users/me") => Ok(json!({
            "result": "success", "msg": "", "user_id": opts.user_id, "email": opts.email,
            "is_bot": opts.is_bot, "full_name": BOT_FULL_NAME, "role": 400,
        })),
        ("GET", "/server_settings") => Ok(json!({
            "result": "success", "msg": "", "zulip_feature_level": opts.feature_level,
            "zulip_version": "10.2", "zulip_merge_base": "10.2",
        })),
        ("GET", "/messages") => s.get_messages(p),
        ("GET", user) if user.starts_with("/users/") && user != "/users/me" => {
            s.get_user(&user["/users/".len()..])
        }
        (_, "/register" | "/events" | "/users/me" | "/server_settings" | "/messages") => {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_REQUEST",
                "Method Not Allowed",
            ))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "BAD_REQUEST",
            "Not Found",
        )),
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6 | u32::from(v)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
