//! Zulip's request parameters (the query string merged with a form body)
//! and its JSON success and error bodies.

use std::collections::HashMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// 401 `UNAUTHORIZED` with a Basic challenge, as for a bad API key.
pub(super) fn unauthorized() -> Response {
    let error = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Invalid API key");
    let mut response = error.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"zulip\""),
    );
    response
}

/// A Zulip JSON error response.
pub(super) struct ApiError(pub(super) StatusCode, pub(super) Value);

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, msg: &str) -> Self {
        ApiError(status, json!({"result": "error", "msg": msg, "code": code}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

pub(super) fn bad_request(msg: impl AsRef<str>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", msg.as_ref())
}

pub(super) fn missing(name: &str) -> ApiError {
    bad_request(format!("Missing '{name}' argument"))
}

pub(super) fn bad_queue(qid: &str) -> ApiError {
    let msg = format!("Bad event queue ID: {qid}");
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "BAD_EVENT_QUEUE_ID", &msg);
    error.1["queue_id"] = json!(qid);
    error
}

/// Request parameters: the query string merged with a form body (body wins).
/// Non-string values are JSON-encoded, as Zulip clients send them.
#[derive(Default)]
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn parse(&mut self, raw: &[u8]) {
        for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
            let (key, value) = (&pair[..eq], pair.get(eq + 1..).unwrap_or_default());
            self.0.insert(percent_decode(key), percent_decode(value));
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every parameter, as a JSON object of strings.
    pub(super) fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    pub(super) fn json(&self, key: &str) -> Result<Option<Value>, ApiError> {
        let parsed = self.get(key).map(serde_json::from_str).transpose();
        parsed.map_err(|_| bad_request(format!("Argument \"{key}\" is not valid JSON.")))
    }

    pub(super) fn typed<T>(
        &self,
        key: &str,
        f: fn(&Value) -> Option<T>,
        ty: &str,
    ) -> Result<Option<T>, ApiError> {
        let wrong = || bad_request(format!("{key} is not {ty}"));
        self.json(key)?.map(|v| f(&v).ok_or_else(wrong)).transpose()
    }

    pub(super) fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.typed(key, Value::as_i64, "an integer")
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.typed(key, Value::as_bool, "a boolean")
    }
}

pub(super) fn count(p: &Params, key: &str) -> Result<i64, ApiError> {
    match p.int(key)?.unwrap_or(0) {
        n if n < 0 => Err(bad_request(format!("Bad value for '{key}': {n}"))),
        n => Ok(n),
    }
}

pub(super) fn string_list(v: Value, key: &str) -> Result<Vec<String>, ApiError> {
    let items = match v {
        Value::Array(items) => items,
        _ => return Err(bad_request(format!("{key} is not a list"))),
    };
    let item = |v: &Value| v.as_str().map(str::to_owned);
    let all = items.iter().map(item).collect::<Option<Vec<_>>>();
    all.ok_or_else(|| bad_request(format!("{key}[] is not a string")))
}

pub(super) fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (s[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
