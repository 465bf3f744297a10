//! [`Receiver`]: a local webhook receiver for the webhook tests. It records
//! every request (headers, body, arrival) and answers as its script says,
//! given the request and how many earlier requests carried the same
//! `Idempotency-Key` (so "503 for the first attempt of each key" is one
//! line). [`verify_signature`] checks the signature header the way the
//! README tells receivers to, with the `hmac` crate, independently of the
//! daemon's code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::task::AbortHandle;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request path.
    pub path: String,
    /// Header names lower-cased; the last value of each.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// Earlier requests with the same `Idempotency-Key` (0 for the first).
    pub earlier: usize,
    /// The status it was answered.
    pub status: u16,
    pub at: Instant,
}

impl Delivery {
    /// The `Idempotency-Key` header.
    pub fn key(&self) -> &str {
        self.headers
            .get("idempotency-key")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How long to wait before answering (a receiver that hangs).
    pub delay: Duration,
}

impl Answer {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// 200 with an empty body.
    pub fn ok() -> Answer {
        Answer::status(200)
    }

    /// `status` with `body` as JSON.
    pub fn json(status: u16, body: Value) -> Answer {
        Answer {
            body: body.to_string(),
            ..Answer::status(status)
        }
        .header("content-type", "application/json")
    }

    /// `status` with a text body.
    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            body: body.to_owned(),
            ..Answer::status(status)
        }
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Script = dyn Fn(&Delivery) -> Answer + Send + Sync;

struct Shared {
    script: Box<Script>,
    deliveries: Mutex<Vec<Delivery>>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Binds `127.0.0.1:0` and answers every POST as `script` says.
    pub async fn start(script: impl Fn(&Delivery) -> Answer + Send + Sync + 'static) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("receiver: local_addr");
        let shared = Arc::new(Shared {
            script: Box::new(script),
            deliveries: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await }).abort_handle();
        Receiver { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .expect("receiver lock")
            .clone()
    }

    /// The requests to `path` so far.
    pub fn deliveries_to(&self, path: &str) -> Vec<Delivery> {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.deliveries()
            .into_iter()
            .filter(|d| d.path == path)
            .collect()
    }

    /// The distinct keys answered 2xx.
    pub fn delivered_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .deliveries()
            .iter()
            .filter(|d| (200..300).contains(&d.status))
            .map(|d| d.key().to_owned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut delivery = Delivery {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        earlier: 0,
        status: 0,
        at: Instant::now(),
    };
    let answer = {
        let mut all = shared.deliveries.lock().expect("receiver lock");
        delivery.earlier = all
            .iter()
            .filter(|d| d.path == delivery.path && d.key() == delivery.key())
            .count();
        let answer = (shared.script)(&delivery);
        delivery.status = answer.status;
        all.push(delivery);
        answer
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = (
        StatusCode::from_u16(answer.status).expect("a valid status"),
        answer.body,
    )
        .into_response();
    for (k, v) in answer.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    response
}

/// Whether `header` (`t=<unix seconds>,v1=<hex>`) is a valid signature of
/// `body` with `secret`, made within `tolerance_secs` of now: what the
/// README's Python snippet does, written again with the `hmac` crate.
pub fn verify_signature(secret: &str, header: &str, body: &[u8], tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > tolerance_secs {
        return false;
    }
    v1.iter().any(|sig| {
        let Ok(bytes) = hex::decode(sig) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        // `verify_slice` compares in constant time, as a receiver must.
        mac.verify_slice(&bytes).is_ok()
    })
}
