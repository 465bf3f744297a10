//! A stateful fake Zulip server on loopback for integration tests and benchmarks.
//!
//! It follows the contract in `shared/zulip-events-api.md` (§2-§7): Basic auth,
//! `POST /register`, `GET`/`DELETE /events` with Zulip's acknowledgement,
//! pruning, supersede, heartbeat and idle-expiry rules, `GET /users/me`,
//! `GET /server_settings` and `GET /messages` (paged like Zulip's
//! `limit_query_to_range`). Tests drive it through [`FakeZulip`]: send
//! messages, push arbitrary events, expire queues, pause heartbeats, inject
//! faults with a [`FaultPlan`] and inspect every request via [`RequestRecord`].
//! It models a single user, the bot, which receives every message sent.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// Zulip's `MAX_QUEUE_TIMEOUT_SECS`: the cap on `queue_lifespan_secs`.
const MAX_QUEUE_TIMEOUT_SECS: u64 = 604_800;
/// Zulip's `MAX_MESSAGES_PER_FETCH`: the cap on `num_before + num_after`.
const MAX_MESSAGES_PER_FETCH: i64 = 5000;
/// Zulip's `LARGER_THAN_MAX_MESSAGE_ID`: the numeric value of `anchor=newest`.
const NEWEST: i64 = 10_000_000_000_000_000;
/// How often the background task garbage-collects expired queues.
const GC_TICK: Duration = Duration::from_millis(100);

/// Configuration of a [`FakeZulip`] server.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// The bot's email (Basic auth user name, compared case-insensitively).
    pub email: String,
    /// The bot's API key (Basic auth password).
    pub api_key: String,
    /// How long a `GET /events` parks before a heartbeat event is pushed.
    pub heartbeat: Duration,
    /// Value returned as `event_queue_longpoll_timeout_seconds` by `/register`.
    pub longpoll_timeout_seconds: u64,
    /// Default idle timeout of a queue (used unless `queue_lifespan_secs` > 0).
    pub queue_timeout: Duration,
    /// `is_bot` reported by `GET /users/me`.
    pub is_bot: bool,
    /// The bot's own user id.
    pub user_id: i64,
    /// `zulip_feature_level` reported by `/register` and `/server_settings`.
    pub feature_level: i64,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            email: "listener-bot@example.com".to_owned(),
            api_key: "fake-api-key-0123456789abcdef".to_owned(),
            heartbeat: Duration::from_secs(2),
            longpoll_timeout_seconds: 10,
            queue_timeout: Duration::from_secs(600),
            is_bot: true,
            user_id: 100,
            feature_level: 372,
        }
    }
}

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
    fn pick(&self, n: u64, path: &str) -> Option<Fault> {
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

/// One request received by the fake, recorded on arrival.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// HTTP method, e.g. `"GET"`.
    pub method: String,
    /// Path without the `/api/v1` prefix, e.g. `"/events"`.
    pub path: String,
    /// When the request arrived.
    pub at: Instant,
    /// Response status; 0 while a poll is parked and when no response was
    /// sent (a dropped connection, or a client that gave up on a parked poll).
    pub status: u16,
    /// The `queue_id` parameter, if any.
    pub queue_id: Option<String>,
    /// The `last_event_id` parameter, if present and an integer.
    pub last_event_id: Option<i64>,
    /// The injected fault, if any.
    pub fault: Option<Fault>,
}

/// A running fake server. Cheap to clone; the server, its GC task and all its
/// queues stop when the last clone is dropped.
#[derive(Clone)]
pub struct FakeZulip {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

struct Tasks(Arc<Shared>, Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.1.iter().for_each(AbortHandle::abort);
        // Dropping the senders of parked polls answers them BAD_EVENT_QUEUE_ID.
        self.0.lock().queues.clear();
    }
}

struct Shared {
    opts: FakeOptions,
    addr: SocketAddr,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Queue>,
    /// Message history in id order (id = index + 1), content as raw Markdown.
    messages: Vec<Value>,
    /// user id -> email, learnt from senders.
    users: HashMap<i64, String>,
    /// Stable ids for channels (`stream:<name>`) and recipients (`rcpt:...`).
    ids: HashMap<String, i64>,
    faults: FaultPlan,
    request_seq: u64,
    requests: Vec<RequestRecord>,
    register_count: usize,
    heartbeats_paused: bool,
}

enum Completion {
    Events(Vec<Value>),
    Gone,
}

struct Queue {
    event_types: Option<Vec<String>>,
    narrow: Vec<Term>,
    apply_markdown: bool,
    timeout: Duration,
    events: VecDeque<Value>,
    next_event_id: i64,
    newest_pruned_id: i64,
    last_connection: Instant,
    /// The parked poll: its generation and the channel that completes it.
    parked: Option<(u64, oneshot::Sender<Completion>)>,
    generation: u64,
}

impl Queue {
    /// Zulip's `ClientDescriptor.expired`.
    fn expired(&self, now: Instant) -> bool {
        self.parked.is_none() && now.duration_since(self.last_connection) >= self.timeout
    }

    /// Zulip's `accepts_event`; heartbeats bypass `event_types`.
    fn accepts(&self, event: &Value) -> bool {
        let ty = event.get("type").and_then(Value::as_str).unwrap_or("");
        if let (Some(types), false) = (&self.event_types, ty == "heartbeat") {
            let has = |t: &str| types.iter().any(|x| x == t);
            if !has(ty) || (ty == "muted_topics" && has("user_topic")) {
                return false;
            }
        }
        match (ty, event.get("message")) {
            ("message", Some(m)) => narrow_matches(&self.narrow, m),
            _ => true,
        }
    }

    /// Appends an event with the next id and completes a parked poll.
    fn push(&mut self, mut event: Value) {
        event["id"] = json!(self.next_event_id);
        self.next_event_id += 1;
        self.events.push_back(event);
        self.complete();
    }

    fn contents(&self) -> Vec<Value> {
        self.events.iter().cloned().collect()
    }

    /// Finishes the parked poll, if any, with the current contents.
    fn complete(&mut self) {
        if let Some((_, tx)) = self.parked.take() {
            let _ = tx.send(Completion::Events(self.contents()));
        }
    }

    /// Zulip's `EventQueue.prune`: drop every event with `id <= through`.
    fn prune(&mut self, through: i64) {
        while let Some(id) = self.events.front().and_then(|e| e["id"].as_i64()) {
            if id > through {
                break;
            }
            self.events.pop_front();
            self.newest_pruned_id = id;
        }
    }
}

impl State {
    fn gc(&mut self) -> &mut HashMap<String, Queue> {
        let now = Instant::now();
        self.queues.retain(|_, q| !q.expired(now));
        &mut self.queues
    }

    fn push_all(&mut self, event: &Value) {
        for q in self.gc().values_mut().filter(|q| q.accepts(event)) {
            let mut ev = event.clone();
            if let (true, Some(m)) = (q.apply_markdown, ev.get_mut("message")) {
                *m = render(m, true);
            }
            q.push(ev);
        }
    }

    fn id_for(&mut self, key: String) -> i64 {
        let next = self.ids.len() as i64 + 10;
        *self.ids.entry(key).or_insert(next)
    }

    fn user(&self, id: i64) -> Value {
        let email = self.users.get(&id).cloned();
        let email = email.unwrap_or_else(|| format!("user{id}@example.com"));
        let name = email.split('@').next().unwrap_or_default().to_owned();
        json!({"id": id, "email": email, "full_name": name})
    }

    /// A message without id and recipient fields.
    fn message(&mut self, sender_id: i64, sender_email: &str, content: &str) -> Value {
        self.users.insert(sender_id, sender_email.to_owned());
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        json!({
            "sender_id": sender_id, "sender_email": sender_email,
            "sender_full_name": self.user(sender_id)["full_name"],
            "sender_realm_str": "zulip", "topic_links": [], "content": content,
            "content_type": "text/x-markdown", "client": "test",
            "timestamp": now.map_or(0, |d| d.as_secs()),
            "is_me_message": content.starts_with("/me "), "reactions": [],
            "submessages": [], "flags": [], "avatar_url": null,
        })
    }

    /// Stores a message (assigning its id) and pushes the `message` event.
    fn deliver(&mut self, mut msg: Value) -> i64 {
        let id = self.messages.len() as i64 + 1;
        msg["id"] = json!(id);
        self.messages.push(msg.clone());
        self.push_all(&json!({"type": "message", "message": msg, "flags": []}));
        id
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

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

    fn register(&self, p: &Params) -> Result<Value, ApiError> {
        let event_types = match p.json("event_types")? {
            None | Some(Value::Null) => None,
            Some(v) => Some(string_list(v, "event_types")?),
        };
        if let Some(v) = p.json("fetch_event_types")?.filter(|v| !v.is_null()) {
            string_list(v, "fetch_event_types")?;
        }
        let narrow = parse_narrow(p.json("narrow")?)?;
        let apply_markdown = p.bool("apply_markdown")?.unwrap_or(false);
        p.bool("all_public_streams")?;
        p.bool("client_gravatar")?;
        match p.json("client_capabilities")? {
            None => {}
            Some(Value::Object(m)) if m.contains_key("notification_settings_null") => {}
            Some(Value::Object(_)) => {
                let msg = "client_capabilities[\"notification_settings_null\"] field is missing";
                return Err(bad_request(msg));
            }
            Some(_) => return Err(bad_request("client_capabilities is not a dict")),
        }
        let timeout = match p.int("queue_lifespan_secs")?.unwrap_or(0) {
            secs if secs > 0 => Duration::from_secs((secs as u64).min(MAX_QUEUE_TIMEOUT_SECS)),
            _ => self.opts.queue_timeout,
        };
        let queue_id = new_queue_id();
        let queue = Queue {
            event_types,
            narrow,
            apply_markdown,
            timeout,
            events: VecDeque::new(),
            next_event_id: 0,
            newest_pruned_id: -1,
            last_connection: Instant::now(),
            parked: None,
            generation: 0,
        };
        let mut st = self.lock();
        st.gc().insert(queue_id.clone(), queue);
        st.register_count += 1;
        let max_message_id = match st.messages.len() {
            0 => -1,
            n => n as i64,
        };
        Ok(json!({
            "result": "success", "msg": "", "queue_id": queue_id, "last_event_id": -1,
            "zulip_version": "10.2", "zulip_feature_level": self.opts.feature_level,
            "zulip_merge_base": "10.2", "max_message_id": max_message_id,
            "event_queue_longpoll_timeout_seconds": self.opts.longpoll_timeout_seconds,
        }))
    }

    /// Zulip's `fetch_events`: validate, prune, supersede, then answer or park.
    fn get_events(self: &Arc<Self>, p: &Params) -> Result<Poll, ApiError> {
        let dont_block = p.bool("dont_block")?.unwrap_or(false);
        let last = p.int("last_event_id")?;
        let qid = p.get("queue_id").ok_or_else(|| missing("queue_id"))?;
        let mut st = self.lock();
        let q = st.gc().get_mut(qid).ok_or_else(|| bad_queue(qid))?;
        let last = last.ok_or_else(|| missing("last_event_id"))?;
        let newest_pruned = q.newest_pruned_id;
        if last < newest_pruned {
            let msg = format!("An event newer than {newest_pruned} has already been pruned!");
            return Err(bad_request(msg));
        }
        q.prune(last);
        if q.newest_pruned_id != last {
            return Err(bad_request(format!("Event {last} was not in this queue")));
        }
        q.complete();
        if !q.events.is_empty() || dont_block {
            return Ok(Poll::Ready(events_body(q.contents(), qid)));
        }
        q.generation += 1;
        q.last_connection = Instant::now();
        let (tx, rx) = oneshot::channel();
        q.parked = Some((q.generation, tx));
        let (weak, period) = (Arc::downgrade(self), self.opts.heartbeat);
        tokio::spawn(heartbeat(weak, qid.to_owned(), q.generation, period));
        Ok(Poll::Parked(rx, qid.to_owned()))
    }

    fn delete_queue(&self, p: &Params) -> Result<Value, ApiError> {
        let qid = p.get("queue_id").ok_or_else(|| missing("queue_id"))?;
        let mut q = self.lock().gc().remove(qid).ok_or_else(|| bad_queue(qid))?;
        q.complete();
        Ok(json!({"result": "success", "msg": ""}))
    }

    fn get_messages(&self, p: &Params) -> Result<Value, ApiError> {
        let anchor = p.get("anchor").ok_or_else(|| missing("anchor"))?;
        let anchor = match anchor.trim_matches('"') {
            // No unread tracking: first_unread acts as if everything was read.
            "newest" | "first_unread" => NEWEST,
            "oldest" => 0,
            s => s.parse().map_err(|_| bad_request("Invalid anchor"))?,
        };
        let anchor = anchor.clamp(0, NEWEST);
        let (num_before, num_after) = (count(p, "num_before")?, count(p, "num_after")?);
        if num_before + num_after > MAX_MESSAGES_PER_FETCH {
            return Err(bad_request("Too many messages requested (maximum 5000)."));
        }
        let include_anchor = p.bool("include_anchor")?.unwrap_or(true);
        if !include_anchor && num_before > 0 && num_after > 0 {
            let msg = "The anchor can only be excluded at an end of the range";
            return Err(bad_request(msg));
        }
        let narrow = parse_narrow(p.json("narrow")?)?;
        let markdown = p.bool("apply_markdown")?.unwrap_or(true);
        let st = self.lock();
        let id = |m: &&Value| m["id"].as_i64().unwrap_or(0);
        let visible = st.messages.iter().filter(|m| narrow_matches(&narrow, m));
        let before: Vec<&Value> = visible.clone().filter(|m| id(m) < anchor).collect();
        let before = &before[before.len().saturating_sub(num_before as usize)..];
        let at_anchor: Vec<&Value> = visible.clone().filter(|m| id(m) == anchor).collect();
        let after = visible.filter(|m| id(m) > anchor).take(num_after as usize);
        let after: Vec<&Value> = after.collect();
        let at_anchor = if include_anchor { &at_anchor[..] } else { &[] };
        let page = before.iter().chain(at_anchor).chain(&after);
        let messages: Vec<Value> = page.map(|m| render(m, markdown)).collect();
        Ok(json!({
            "result": "success", "msg": "", "messages": messages, "anchor": anchor,
            "found_anchor": !at_anchor.is_empty(), "history_limited": false,
            "found_oldest": anchor == 0 || (before.len() as i64) < num_before,
            "found_newest": anchor == NEWEST || (after.len() as i64) < num_after,
        }))
    }
}

enum Poll {
    Ready(Value),
    Parked(oneshot::Receiver<Completion>, String),
}

/// The heartbeat timer of one parked poll (Zulip's `connect_handler` timeout).
async fn heartbeat(weak: Weak<Shared>, qid: String, generation: u64, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = weak.upgrade() else { return };
        let mut st = shared.lock();
        let paused = st.heartbeats_paused;
        let Some(q) = st.queues.get_mut(&qid) else {
            return;
        };
        if q.parked.as_ref().map(|p| p.0) != Some(generation) {
            return;
        }
        if !paused {
            q.push(json!({"type": "heartbeat"}));
            return;
        }
    }
}

async fn handle(
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
        None => match route(&shared, &method, path, &params).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        },
    };
    if fault != Some(Fault::DropConnection) {
        shared.lock().requests[index].status = response.status().as_u16();
    }
    response
}

async fn route(s: &Arc<Shared>, m: &Method, path: &str, p: &Params) -> Result<Value, ApiError> {
    let opts = &s.opts;
    match (m.as_str(), path.trim_end_matches('/')) {
        ("POST", "/register") => s.register(p),
        ("GET", "/events") => match s.get_events(p)? {
            Poll::Ready(v) => Ok(v),
            Poll::Parked(rx, qid) => match rx.await {
                Ok(Completion::Events(events)) => Ok(events_body(events, &qid)),
                Ok(Completion::Gone) | Err(_) => Err(bad_queue(&qid)),
            },
        },
        ("DELETE", "/events") => s.delete_queue(p),
        ("GET", "/users/me") => Ok(json!({
            "result": "success", "msg": "", "user_id": opts.user_id, "email": opts.email,
            "is_bot": opts.is_bot, "full_name": "Listener Bot", "role": 400,
        })),
        ("GET", "/server_settings") => Ok(json!({
            "result": "success", "msg": "", "zulip_feature_level": opts.feature_level,
            "zulip_version": "10.2", "zulip_merge_base": "10.2",
        })),
        ("GET", "/messages") => s.get_messages(p),
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

fn events_body(events: Vec<Value>, qid: &str) -> Value {
    json!({"result": "success", "msg": "", "events": events, "queue_id": qid})
}

fn fault_response(fault: &Fault) -> Response {
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

fn unauthorized() -> Response {
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
struct ApiError(StatusCode, Value);

impl ApiError {
    fn new(status: StatusCode, code: &str, msg: &str) -> Self {
        ApiError(status, json!({"result": "error", "msg": msg, "code": code}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn bad_request(msg: impl AsRef<str>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", msg.as_ref())
}

fn missing(name: &str) -> ApiError {
    bad_request(format!("Missing '{name}' argument"))
}

fn bad_queue(qid: &str) -> ApiError {
    let msg = format!("Bad event queue ID: {qid}");
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "BAD_EVENT_QUEUE_ID", &msg);
    error.1["queue_id"] = json!(qid);
    error
}

/// Request parameters: the query string merged with a form body (body wins).
/// Non-string values are JSON-encoded, as Zulip clients send them.
#[derive(Default)]
struct Params(HashMap<String, String>);

impl Params {
    fn parse(&mut self, raw: &[u8]) {
        for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
            let (key, value) = (&pair[..eq], pair.get(eq + 1..).unwrap_or_default());
            self.0.insert(percent_decode(key), percent_decode(value));
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn json(&self, key: &str) -> Result<Option<Value>, ApiError> {
        let parsed = self.get(key).map(serde_json::from_str).transpose();
        parsed.map_err(|_| bad_request(format!("Argument \"{key}\" is not valid JSON.")))
    }

    fn typed<T>(
        &self,
        key: &str,
        f: fn(&Value) -> Option<T>,
        ty: &str,
    ) -> Result<Option<T>, ApiError> {
        let wrong = || bad_request(format!("{key} is not {ty}"));
        self.json(key)?.map(|v| f(&v).ok_or_else(wrong)).transpose()
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.typed(key, Value::as_i64, "an integer")
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.typed(key, Value::as_bool, "a boolean")
    }
}

fn count(p: &Params, key: &str) -> Result<i64, ApiError> {
    match p.int(key)?.unwrap_or(0) {
        n if n < 0 => Err(bad_request(format!("Bad value for '{key}': {n}"))),
        n => Ok(n),
    }
}

fn string_list(v: Value, key: &str) -> Result<Vec<String>, ApiError> {
    let items = match v {
        Value::Array(items) => items,
        _ => return Err(bad_request(format!("{key} is not a list"))),
    };
    let item = |v: &Value| v.as_str().map(str::to_owned);
    let all = items.iter().map(item).collect::<Option<Vec<_>>>();
    all.ok_or_else(|| bad_request(format!("{key}[] is not a string")))
}

fn percent_decode(s: &[u8]) -> String {
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

/// A random UUID4-style queue id.
fn new_queue_id() -> String {
    let r = rand::random::<u128>() & !(0xF000 << 64 | 0xC << 60) | 0x4000 << 64 | 0x8 << 60;
    let h = format!("{r:032x}");
    let (a, b, c, d, e) = (&h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
    format!("{a}-{b}-{c}-{d}-{e}")
}

/// With `markdown`, fake-render the content as Zulip's HTML would look.
fn render(msg: &Value, markdown: bool) -> Value {
    let mut m = msg.clone();
    if markdown {
        let raw = m["content"].as_str().unwrap_or_default();
        let escaped = raw.replace('&', "&amp;").replace('<', "&lt;");
        m["content"] = json!(format!("<p>{}</p>", escaped.replace('>', "&gt;")));
        m["content_type"] = json!("text/html");
    }
    m
}

/// One narrow term: operator, operand, negated.
type Term = (String, Value, bool);

/// Accepts `[[operator, operand], ...]` and `[{"operator", "operand", "negated"}]`.
fn parse_narrow(v: Option<Value>) -> Result<Vec<Term>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad_request("Invalid narrow")),
    };
    let term = |t: Value| -> Option<Term> {
        let (op, operand, negated) = match t {
            Value::Array(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone(), false),
            Value::Object(o) => {
                let (op, operand) = (o.get("operator")?, o.get("operand")?);
                let negated = o.get("negated").and_then(Value::as_bool);
                (op.clone(), operand.clone(), negated.unwrap_or(false))
            }
            _ => return None,
        };
        Some((op.as_str()?.to_owned(), operand, negated))
    };
    let terms = items.into_iter().map(term).collect::<Option<Vec<_>>>();
    terms.ok_or_else(|| bad_request("Invalid narrow"))
}

/// Supports channel/stream, topic/subject, sender and is:dm/private; other
/// operators (e.g. `channels:public`, `search`) match everything.
fn narrow_matches(terms: &[Term], m: &Value) -> bool {
    terms.iter().all(|(op, operand, negated)| {
        let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_lowercase);
        let same = |k: &str| {
            operand
                .as_str()
                .is_some_and(|o| Some(o.to_lowercase()) == field(k))
        };
        let same_id = |k: &str| operand.as_i64().is_some() && m.get(k) == Some(operand);
        let channel = m.get("type") == Some(&json!("stream"));
        let hit = match (op.as_str(), operand.as_str()) {
            ("channel" | "stream", _) => {
                channel && (same("display_recipient") || same_id("stream_id"))
            }
            ("topic" | "subject", _) => channel && same("subject"),
            ("sender", _) => same("sender_email") || same_id("sender_id"),
            ("is", Some("dm" | "private")) => m.get("type") == Some(&json!("private")),
            _ => return true,
        };
        hit != *negated
    })
}

impl FakeZulip {
    /// Binds `127.0.0.1:0` and spawns the server and its queue-GC task on the
    /// current tokio runtime.
    pub async fn start(opts: FakeOptions) -> FakeZulip {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.expect("fake_zulip: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake_zulip: local_addr");
        let mut state = State::default();
        state.users.insert(opts.user_id, opts.email.clone());
        let state = Mutex::new(state);
        let shared = Arc::new(Shared { opts, addr, state });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let weak = Arc::downgrade(&shared);
        let gc = tokio::spawn(async move {
            let mut tick = tokio::time::interval(GC_TICK);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                shared.lock().gc();
            }
        });
        let handles = vec![server.abort_handle(), gc.abort_handle()];
        let tasks = Arc::new(Tasks(shared.clone(), handles));
        FakeZulip {
            shared,
            _tasks: tasks,
        }
    }

    /// The site URL, `http://127.0.0.1:PORT` (endpoints are under `/api/v1/`).
    pub fn site(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The bot's email accepted for Basic auth.
    pub fn email(&self) -> &str {
        &self.shared.opts.email
    }

    /// The bot's API key accepted for Basic auth.
    pub fn api_key(&self) -> &str {
        &self.shared.opts.api_key
    }

    /// The bot's own user id (as reported by `GET /users/me`).
    pub fn user_id(&self) -> i64 {
        self.shared.opts.user_id
    }

    /// Send a message: stores it in message history (for GET /messages) with
    /// the next message id (ids start at 1 and increase) and pushes a `message`
    /// event to every live queue whose event_types accept "message" (null
    /// event_types = all) and whose narrow matches. Returns the message id.
    pub fn send_channel_message(
        &self,
        sender_id: i64,
        sender_email: &str,
        channel: &str,
        topic: &str,
        content: &str,
    ) -> i64 {
        let mut st = self.shared.lock();
        let key = channel.to_lowercase();
        let mut msg = st.message(sender_id, sender_email, content);
        msg["type"] = json!("stream");
        msg["display_recipient"] = json!(channel);
        msg["stream_id"] = json!(st.id_for(format!("stream:{key}")));
        msg["subject"] = json!(topic);
        msg["recipient_id"] = json!(st.id_for(format!("rcpt:stream:{key}")));
        st.deliver(msg)
    }

    /// Like [`FakeZulip::send_channel_message`] for a direct message between
    /// the sender and `recipient_ids` (an id never seen as a sender, other than
    /// the bot's, gets the email `user<ID>@example.com`).
    pub fn send_direct_message(
        &self,
        sender_id: i64,
        sender_email: &str,
        recipient_ids: &[i64],
        content: &str,
    ) -> i64 {
        let mut st = self.shared.lock();
        let mut msg = st.message(sender_id, sender_email, content);
        let mut ids: Vec<i64> = recipient_ids.iter().copied().chain([sender_id]).collect();
        ids.sort_unstable();
        ids.dedup();
        let key: Vec<String> = ids.iter().map(i64::to_string).collect();
        msg["type"] = json!("private");
        msg["display_recipient"] = ids.iter().map(|&i| st.user(i)).collect();
        msg["subject"] = json!("");
        msg["recipient_id"] = json!(st.id_for(format!("rcpt:dm:{}", key.join(","))));
        st.deliver(msg)
    }

    /// Push an arbitrary event (a JSON object without "id"; the fake assigns
    /// the per-queue id) to every live queue that accepts its "type" (and, for
    /// a `message` event, whose narrow matches). Panics on a non-object.
    pub fn push_event(&self, event: Value) {
        assert!(event.is_object(), "fake_zulip: an event is a JSON object");
        self.shared.lock().push_all(&event);
    }

    /// Number of events currently held (unacknowledged) in a queue; None if
    /// the queue does not exist.
    pub fn pending(&self, queue_id: &str) -> Option<usize> {
        self.events(queue_id).map(|events| events.len())
    }

    /// The events currently held (unacknowledged) in a queue, with their ids.
    pub fn events(&self, queue_id: &str) -> Option<Vec<Value>> {
        self.shared.lock().gc().get(queue_id).map(Queue::contents)
    }

    /// Ids of the live queues, sorted.
    pub fn queue_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.lock().gc().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// GC a queue now, with its events: the next GET gets BAD_EVENT_QUEUE_ID,
    /// and so does a GET parked on it at this moment.
    pub fn expire_queue(&self, queue_id: &str) {
        let removed = self.shared.lock().queues.remove(queue_id);
        if let Some((_, tx)) = removed.and_then(|q| q.parked) {
            let _ = tx.send(Completion::Gone);
        }
    }

    /// [`FakeZulip::expire_queue`] for every queue (e.g. a server crash).
    pub fn expire_all_queues(&self) {
        for qid in self.queue_ids() {
            self.expire_queue(&qid);
        }
    }

    /// Replaces the fault plan; `FaultPlan::default()` disables faults.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.shared.lock().faults = plan;
    }

    /// While paused, parked polls get no heartbeat (a stalled server; a queue
    /// with a parked poll never expires); after resuming, a parked poll gets
    /// one within one heartbeat period.
    pub fn pause_heartbeats(&self, paused: bool) {
        self.shared.lock().heartbeats_paused = paused;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Number of successful `POST /register` calls.
    pub fn register_count(&self) -> usize {
        self.shared.lock().register_count
    }

    /// Number of messages in history.
    pub fn message_count(&self) -> usize {
        self.shared.lock().messages.len()
    }

    /// The message history in id order (raw Markdown content).
    pub fn messages(&self) -> Vec<Value> {
        self.shared.lock().messages.clone()
    }
}
