//! The server's state: event queues (register, events, acknowledgement,
//! pruning, supersede, heartbeats and idle expiry, a synthetic backlog,
//! polls held while a backlog builds up), the message history and the
//! record of every request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::api::{bad_queue, bad_request, missing, string_list, ApiError, Params};
use super::body::{BodyPlan, Reply, Synthetic};
use super::faults::{Fault, FaultPlan};
use super::narrow::{self, narrow_matches, parse_narrow, render, Term};
use super::options::{FakeOptions, BOT_FULL_NAME};
use super::rate_limit::Budget;

/// Zulip's `MAX_QUEUE_TIMEOUT_SECS`: the cap on `queue_lifespan_secs`.
pub(super) const MAX_QUEUE_TIMEOUT_SECS: u64 = 604_800;
/// The feature level from which `idle_queue_timeout` replaces `queue_lifespan_secs`.
pub(super) const IDLE_QUEUE_TIMEOUT_LEVEL: i64 = 481;
/// How often the background task garbage-collects expired queues.
pub(super) const GC_TICK: Duration = Duration::from_millis(100);

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

/// What the server, its GC task and every [`super::FakeZulip`] clone share.
pub(super) struct Shared {
    pub(super) opts: FakeOptions,
    pub(super) addr: SocketAddr,
    pub(super) state: Mutex<State>,
}

/// Everything behind the one lock: queues, history, faults and requests.
#[derive(Default)]
pub(super) struct State {
    pub(super) queues: HashMap<String, Queue>,
    /// Message history in id order (id = index + 1), content as raw Markdown.
    pub(super) messages: Vec<Value>,
    /// user id -> email, learnt from senders.
    pub(super) users: HashMap<i64, String>,
    /// Stable ids for channels (`stream:<name>`) and recipients (`rcpt:...`).
    pub(super) ids: HashMap<String, i64>,
    pub(super) faults: FaultPlan,
    pub(super) request_seq: u64,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) register_count: usize,
    /// The parameters of every `POST /register` that succeeded.
    pub(super) registrations: Vec<Value>,
    pub(super) heartbeats_paused: bool,
    /// The bot's spent rate-limit budget.
    pub(super) budget: Budget,
    /// Messages stored in history whose `message` events wait for
    /// [`super::FakeZulip::release_held`] (out-of-order delivery).
    pub(super) held: Vec<Value>,
    /// Every message `POST /messages` sent, in order.
    pub(super) sent: Vec<super::messages::SentMessage>,
    /// What the next sends get instead of a normal answer, in order.
    pub(super) send_faults: VecDeque<super::messages::SendFault>,
    /// Channel names (lowercase) that do not exist: sends get `STREAM_DOES_NOT_EXIST`.
    pub(super) missing_channels: std::collections::HashSet<String>,
    /// User ids `GET /users/{id}` reports as bots (besides the bot itself).
    pub(super) bots: std::collections::HashSet<i64>,
    /// Messages the bot sends are stored but reach no queue.
    pub(super) lose_echoes: bool,
    /// While set, no parked poll is completed (events pile up).
    pub(super) polls_held: bool,
    /// How the next `GET /events` bodies are written.
    pub(super) bodies: BodyPlan,
}

/// How a parked `GET /events` ends.
pub(super) enum Completion {
    Events(Reply),
    Gone,
}

/// One event queue, as Zulip's `ClientDescriptor` and `EventQueue`.
pub(super) struct Queue {
    pub(super) event_types: Option<Vec<String>>,
    /// The `client_capabilities` it was registered with.
    pub(super) capabilities: serde_json::Map<String, Value>,
    pub(super) narrow: Vec<Term>,
    pub(super) apply_markdown: bool,
    pub(super) timeout: Duration,
    pub(super) events: VecDeque<Queued>,
    /// Events before every one of `events`, generated as they are written.
    pub(super) synthetic: Option<Synthetic>,
    pub(super) next_event_id: i64,
    pub(super) newest_pruned_id: i64,
    pub(super) last_connection: Instant,
    /// The parked poll: its generation and the channel that completes it.
    pub(super) parked: Option<(u64, oneshot::Sender<Completion>)>,
    pub(super) generation: u64,
    /// While set, events wait in the queue: a parked poll is not completed.
    pub(super) held: bool,
}

/// One queued event, with the JSON a poll serves of it, written once when
/// it is queued: Zulip serializes in its own process, and the fake shares
/// the benchmark's cores with the daemon, so serializing (and cloning)
/// every queued event again at each poll would be charged to the daemon.
pub(super) struct Queued {
    pub(super) id: i64,
    pub(super) value: Value,
    /// `served(value)`, as JSON.
    pub(super) text: Bytes,
}

impl Queued {
    fn new(value: Value) -> Queued {
        let id = value["id"].as_i64().unwrap_or(-1);
        let marked = value.get(WITHOUT_ID).is_some();
        let text = if marked {
            serde_json::to_vec(&served(value.clone()))
        } else {
            serde_json::to_vec(&value)
        };
        let text = Bytes::from(text.expect("fake_zulip: an event serializes"));
        Queued { id, value, text }
    }
}

impl Queue {
    /// Whether the queue was registered with capability `name` set.
    pub(super) fn capability(&self, name: &str) -> bool {
        self.capabilities.get(name).and_then(Value::as_bool) == Some(true)
    }

    /// Zulip's `ClientDescriptor.expired`.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.parked.is_none() && now.duration_since(self.last_connection) >= self.timeout
    }

    /// Zulip's `accepts_event`; heartbeats bypass `event_types`.
    pub(super) fn accepts(&self, event: &Value) -> bool {
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

    /// Appends an event with the next id and completes a parked poll
    /// unless the queue holds its events.
    pub(super) fn push(&mut self, event: Value) {
        self.push_held(event, false);
    }

    /// [`Queue::push`], not completing a parked poll while `held` either
    /// (polls held while a backlog builds up).
    pub(super) fn push_held(&mut self, mut event: Value, held: bool) {
        event["id"] = json!(self.next_event_id);
        self.next_event_id += 1;
        self.events.push_back(Queued::new(event));
        if !self.held && !held {
            self.complete();
        }
    }

    /// Appends `count` events made by `make(id)` (on an empty queue).
    pub(super) fn push_synthetic(
        &mut self,
        count: i64,
        make: Arc<dyn Fn(i64) -> String + Send + Sync>,
    ) {
        assert!(
            self.is_empty(),
            "fake_zulip: a synthetic backlog goes first"
        );
        let first_id = self.next_event_id;
        self.next_event_id += count;
        self.synthetic = Some(Synthetic {
            first_id,
            count,
            make,
        });
    }

    /// The queued events (without a synthetic backlog).
    pub(super) fn contents(&self) -> Vec<Value> {
        self.events.iter().map(|q| q.value.clone()).collect()
    }

    /// Whether no event, real or synthetic, is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.synthetic.is_none()
    }

    /// What a poll gets now: every queued event.
    pub(super) fn reply(&self) -> Reply {
        Reply {
            synthetic: self.synthetic.clone(),
            events: self.events.iter().map(|q| q.text.clone()).collect(),
        }
    }

    /// Finishes the parked poll, if any, with the current contents.
    pub(super) fn complete(&mut self) {
        if let Some((_, tx)) = self.parked.take() {
            let _ = tx.send(Completion::Events(self.reply()));
        }
    }

    /// Zulip's `EventQueue.prune`: drop every event with `id <= through`.
    pub(super) fn prune(&mut self, through: i64) {
        if let Some(s) = self.synthetic.as_mut().filter(|s| through >= s.first_id) {
            let acked = (through - s.first_id + 1).min(s.count);
            s.first_id += acked;
            s.count -= acked;
            self.newest_pruned_id = s.first_id - 1;
            if s.count == 0 {
                self.synthetic = None;
            }
        }
        while let Some(id) = self.events.front().map(|e| e.id) {
            if id > through {
                break;
            }
            self.events.pop_front();
            self.newest_pruned_id = id;
        }
    }
}

/// Marks an event served without its `id` (kept in the queue under it).
pub(super) const WITHOUT_ID: &str = "fake_zulip_without_id";

/// `event` as a poll gets it: without its `id` when marked [`WITHOUT_ID`].
fn served(mut event: Value) -> Value {
    if let Some(o) = event.as_object_mut() {
        if o.remove(WITHOUT_ID).is_some() {
            o.remove("id");
        }
    }
    event
}

impl State {
    pub(super) fn gc(&mut self) -> &mut HashMap<String, Queue> {
        let now = Instant::now();
        self.queues.retain(|_, q| !q.expired(now));
        &mut self.queues
    }

    pub(super) fn push_all(&mut self, event: &Value) {
        let held = self.polls_held;
        for q in self.gc().values_mut().filter(|q| q.accepts(event)) {
            let mut ev = event.clone();
            if let (true, Some(m)) = (q.apply_markdown, ev.get_mut("message")) {
                *m = render(m, true);
            }
            q.push_held(ev, held);
        }
    }

    pub(super) fn id_for(&mut self, key: String) -> i64 {
        let next = self.ids.len() as i64 + 10;
        *self.ids.entry(key).or_insert(next)
    }

    pub(super) fn user(&self, id: i64) -> Value {
        let email = self.users.get(&id).cloned();
        let email = email.unwrap_or_else(|| format!("user{id}@example.com"));
        let name = email.split('@').next().unwrap_or_default().to_owned();
        json!({"id": id, "email": email, "full_name": name})
    }

    /// A message without id and recipient fields.
    pub(super) fn message(&mut self, sender_id: i64, sender_email: &str, content: &str) -> Value {
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

    /// A channel message without id.
    pub(super) fn channel_message(
        &mut self,
        sender_id: i64,
        sender_email: &str,
        channel: &str,
        topic: &str,
        content: &str,
    ) -> Value {
        let key = channel.to_lowercase();
        let mut msg = self.message(sender_id, sender_email, content);
        msg["type"] = json!("stream");
        msg["display_recipient"] = json!(channel);
        msg["stream_id"] = json!(self.id_for(format!("stream:{key}")));
        msg["subject"] = json!(topic);
        msg["recipient_id"] = json!(self.id_for(format!("rcpt:stream:{key}")));
        msg
    }

    /// Stores a message (assigning its id) and pushes the `message` event,
    /// with the flags Zulip gives the bot `bot_id` for it.
    pub(super) fn deliver(&mut self, msg: Value, bot_id: i64) -> i64 {
        self.deliver_echoing(msg, bot_id, None)
    }

    /// [`State::deliver`]; with `echo = Some((queue_id, local_id))`, the
    /// event on that queue carries `local_message_id` (Zulip's local echo
    /// for the sender's own queue).
    pub(super) fn deliver_echoing(
        &mut self,
        msg: Value,
        bot_id: i64,
        echo: Option<(&str, &str)>,
    ) -> i64 {
        let (id, msg) = self.store_message(msg);
        let flags = bot_flags(&msg, bot_id);
        let event = json!({"type": "message", "message": msg, "flags": flags});
        let Some((queue_id, local_id)) = echo else {
            self.push_all(&event);
            return id;
        };
        for (qid, q) in self.gc().iter_mut().filter(|(_, q)| q.accepts(&event)) {
            let mut ev = event.clone();
            if qid == queue_id {
                ev["local_message_id"] = json!(local_id);
            }
            if let (true, Some(m)) = (q.apply_markdown, ev.get_mut("message")) {
                *m = render(m, true);
            }
            q.push(ev);
        }
        id
    }

    /// Stores a message (assigning its id); its event waits in `held`.
    pub(super) fn hold(&mut self, msg: Value) -> i64 {
        let (id, msg) = self.store_message(msg);
        self.held.push(msg);
        id
    }

    fn store_message(&mut self, mut msg: Value) -> (i64, Value) {
        let id = self.messages.len() as i64 + 1;
        msg["id"] = json!(id);
        self.messages.push(msg.clone());
        (id, msg)
    }
}

impl Shared {
    /// The state, also after a panic while it was held (poison is ignored).
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn register(&self, p: &Params) -> Result<Value, ApiError> {
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
        let capabilities = match p.json("client_capabilities")? {
            None => serde_json::Map::new(),
            Some(Value::Object(m)) if m.contains_key("notification_settings_null") => m,
            Some(Value::Object(_)) => {
                let msg = "client_capabilities[\"notification_settings_null\"] field is missing";
                return Err(bad_request(msg));
            }
            Some(_) => return Err(bad_request("client_capabilities is not a dict")),
        };
        let (timeout, ignored) = self.queue_timeout(p)?;
        let queue_id = new_queue_id();
        let queue = Queue {
            event_types,
            capabilities,
            narrow,
            apply_markdown,
            timeout,
            events: VecDeque::new(),
            synthetic: None,
            next_event_id: 0,
            newest_pruned_id: -1,
            last_connection: Instant::now(),
            parked: None,
            generation: 0,
            held: false,
        };
        let mut st = self.lock();
        st.gc().insert(queue_id.clone(), queue);
        st.register_count += 1;
        st.registrations.push(p.to_json());
        let max_message_id = match st.messages.len() {
            0 => -1,
            n => n as i64,
        };
        let mut answer = json!({
            "result": "success", "msg": "", "queue_id": queue_id, "last_event_id": -1,
            "zulip_version": "10.2", "zulip_feature_level": self.opts.feature_level,
            "zulip_merge_base": "10.2", "max_message_id": max_message_id,
            "event_queue_longpoll_timeout_seconds": self.opts.longpoll_timeout_seconds,
        });
        if self.opts.feature_level >= IDLE_QUEUE_TIMEOUT_LEVEL {
            answer["idle_queue_timeout_secs"] = json!(timeout.as_secs());
        }
        if !ignored.is_empty() {
            answer["ignored_parameters_unsupported"] = json!(ignored);
        }
        Ok(answer)
    }

    /// The queue's idle timeout, and the lifetime parameters this feature
    /// level ignores: `queue_lifespan_secs` before 481 (capped at 7 days),
    /// `idle_queue_timeout` from 481 (an integer or `"mobile"`, capped at
    /// `max_idle_queue_timeout`).
    fn queue_timeout(&self, p: &Params) -> Result<(Duration, Vec<&'static str>), ApiError> {
        let (now, old) = ("idle_queue_timeout", "queue_lifespan_secs");
        if self.opts.feature_level < IDLE_QUEUE_TIMEOUT_LEVEL {
            let ignored = p.get(now).map(|_| vec![now]).unwrap_or_default();
            let timeout = match p.int(old)?.unwrap_or(0) {
                secs if secs > 0 => Duration::from_secs((secs as u64).min(MAX_QUEUE_TIMEOUT_SECS)),
                _ => self.opts.queue_timeout,
            };
            return Ok((timeout, ignored));
        }
        let ignored = p.get(old).map(|_| vec![old]).unwrap_or_default();
        let asked = match p.get(now).map(|v| v.trim_matches('"')) {
            None => None,
            Some("mobile") => Some(43_200),
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| bad_request(format!("Invalid {now}")))?,
            ),
        };
        let timeout = asked.map_or(self.opts.queue_timeout, Duration::from_secs);
        Ok((timeout.min(self.opts.max_idle_queue_timeout), ignored))
    }

    /// Zulip's `fetch_events`: validate, prune, supersede, then answer or park.
    pub(super) fn get_events(self: &Arc<Self>, p: &Params) -> Result<Poll, ApiError> {
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
        if !q.is_empty() || dont_block {
            return Ok(Poll::Ready(q.reply(), qid.to_owned()));
        }
        q.generation += 1;
        q.last_connection = Instant::now();
        let (tx, rx) = oneshot::channel();
        q.parked = Some((q.generation, tx));
        let (weak, period) = (Arc::downgrade(self), self.opts.heartbeat);
        tokio::spawn(heartbeat(weak, qid.to_owned(), q.generation, period));
        Ok(Poll::Parked(rx, qid.to_owned()))
    }

    pub(super) fn delete_queue(&self, p: &Params) -> Result<Value, ApiError> {
        let qid = p.get("queue_id").ok_or_else(|| missing("queue_id"))?;
        let mut q = self.lock().gc().remove(qid).ok_or_else(|| bad_queue(qid))?;
        q.complete();
        Ok(json!({"result": "success", "msg": ""}))
    }

    /// Zulip's `GET /messages` over the message history.
    pub(super) fn get_messages(&self, p: &Params) -> Result<Value, ApiError> {
        narrow::get_messages(&self.lock().messages, p)
    }
}

/// A `GET /events` answered at once, or parked until events arrive.
pub(super) enum Poll {
    Ready(Reply, String),
    Parked(oneshot::Receiver<Completion>, String),
}

/// The heartbeat timer of one parked poll (Zulip's `connect_handler` timeout).
pub(super) async fn heartbeat(weak: Weak<Shared>, qid: String, generation: u64, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = weak.upgrade() else { return };
        let mut st = shared.lock();
        let paused = st.heartbeats_paused || st.polls_held;
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

/// A random UUID4-style queue id.
pub(super) fn new_queue_id() -> String {
    let r = rand::random::<u128>() & !(0xF000 << 64 | 0xC << 60) | 0x4000 << 64 | 0x8 << 60;
    let h = format!("{r:032x}");
    let (a, b, c, d, e) = (&h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
    format!("{a}-{b}-{c}-{d}-{e}")
}

/// The flags Zulip sets on the bot's copy of `msg`: `read` for its own
/// messages, `mentioned` when the content @-mentions it
/// (`@**Listener Bot**`, optionally `|id`), `wildcard_mentioned` and
/// `stream_wildcard_mentioned` for `@**all**`, `@**everyone**`,
/// `@**channel**` or `@**stream**` in a channel.
fn bot_flags(msg: &Value, bot_id: i64) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if msg["sender_id"].as_i64() == Some(bot_id) {
        flags.push("read");
    }
    let content = msg["content"].as_str().unwrap_or_default();
    if content.contains(&format!("@**{BOT_FULL_NAME}**"))
        || content.contains(&format!("@**{BOT_FULL_NAME}|{bot_id}**"))
    {
        flags.push("mentioned");
    }
    let wildcard = ["all", "everyone", "channel", "stream"]
        .iter()
        .any(|w| content.contains(&format!("@**{w}**")));
    if wildcard && msg["type"] == "stream" {
        flags.extend(["wildcard_mentioned", "stream_wildcard_mentioned"]);
    }
    flags
}
