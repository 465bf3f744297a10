//! The [`FakeZulip`] handle: starting the server and its queue-GC task,
//! and every method tests drive it with (send messages, push events or a
//! synthetic backlog, hold polls, expire queues, pause heartbeats, set
//! faults, shape `GET /events` bodies, inspect requests).

use std::sync::{Arc, Mutex};

use axum::Router;
use serde_json::{json, Value};
use tokio::task::AbortHandle;

use super::body::BodyFault;
use super::faults::FaultPlan;
use super::http::handle;
use super::messages::{SendFault, SentMessage};
use super::options::FakeOptions;
use super::queues::{Completion, Queue, RequestRecord, Shared, State, GC_TICK};

/// A running fake server. Cheap to clone; the server, its GC task and all its
/// queues stop when the last clone is dropped.
#[derive(Clone)]
pub struct FakeZulip {
    pub(super) shared: Arc<Shared>,
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
        let msg = st.channel_message(sender_id, sender_email, channel, topic, content);
        st.deliver(msg, self.shared.opts.user_id)
    }

    /// Like [`FakeZulip::send_channel_message`], but the `message` event
    /// waits for [`FakeZulip::release_held`]: the message is in history
    /// (for `GET /messages`) with its id, while events of messages sent
    /// after it arrive first, as under concurrent senders on a real server.
    /// An event still held when its queue is lost is lost with it.
    pub fn send_channel_message_held(
        &self,
        sender_id: i64,
        sender_email: &str,
        channel: &str,
        topic: &str,
        content: &str,
    ) -> i64 {
        let mut st = self.shared.lock();
        let msg = st.channel_message(sender_id, sender_email, channel, topic, content);
        st.hold(msg)
    }

    /// Pushes the `message` events of held messages to the queues live now.
    pub fn release_held(&self) {
        let mut st = self.shared.lock();
        for msg in std::mem::take(&mut st.held) {
            st.push_all(&json!({"type": "message", "message": msg, "flags": []}));
        }
    }

    /// Moves the `timestamp` of the messages in history with ids in `ids`
    /// `secs` seconds into the past (messages sent long ago).
    pub fn backdate(&self, ids: std::ops::RangeInclusive<i64>, secs: i64) {
        let mut st = self.shared.lock();
        for m in st.messages.iter_mut() {
            if m["id"].as_i64().is_some_and(|id| ids.contains(&id)) {
                m["timestamp"] = json!(m["timestamp"].as_i64().unwrap_or(0) - secs);
            }
        }
    }

    /// Drops the held events: their queues were lost before they arrived.
    pub fn drop_held(&self) {
        self.shared.lock().held.clear();
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
        st.deliver(msg, self.shared.opts.user_id)
    }

    /// Push an arbitrary event (a JSON object without "id"; the fake assigns
    /// the per-queue id) to every live queue that accepts its "type" (and, for
    /// a `message` event, whose narrow matches). Panics on a non-object.
    pub fn push_event(&self, event: Value) {
        assert!(event.is_object(), "fake_zulip: an event is a JSON object");
        self.shared.lock().push_all(&event);
    }

    /// Like [`FakeZulip::push_event`], but polls get the event without its
    /// `id` (a broken server): the queue keeps it under its id, pruned once
    /// a later event is acknowledged, so push one after it.
    pub fn push_event_without_id(&self, mut event: Value) {
        event[super::queues::WITHOUT_ID] = json!(true);
        self.push_event(event);
    }

    /// While `held`, events pushed wait in their queues (a parked poll is
    /// not answered); on release, a parked poll gets them all as one page.
    pub fn hold_delivery(&self, held: bool) {
        for q in self.shared.lock().gc().values_mut() {
            q.held = held;
            if !held && !q.events.is_empty() {
                q.complete();
            }
        }
    }

    /// Appends `count` events to the (empty) queue `queue_id`, each
    /// written as `make(id)` (the event's JSON text, with that `id`) only
    /// when a response carries it: a backlog of millions of events that
    /// never sits in the fake's memory. Not in [`FakeZulip::events`].
    /// Panics if the queue does not exist or holds events.
    pub fn push_synthetic(
        &self,
        queue_id: &str,
        count: i64,
        make: impl Fn(i64) -> String + Send + Sync + 'static,
    ) {
        let mut st = self.shared.lock();
        let held = st.polls_held;
        let q = st.gc().get_mut(queue_id).expect("fake_zulip: a live queue");
        q.push_synthetic(count, std::sync::Arc::new(make));
        if !held {
            q.complete();
        }
    }

    /// While held, a parked poll is not completed by new events (nor by a
    /// heartbeat): events pile up, as during an outage, and a poll made
    /// meanwhile still gets them at once. Releasing completes the parked
    /// polls with everything queued.
    pub fn hold_polls(&self, held: bool) {
        let mut st = self.shared.lock();
        st.polls_held = held;
        if !held {
            st.gc().values_mut().for_each(Queue::complete);
        }
    }

    /// The next `GET /events` bodies with events are written with these
    /// faults, one each, in order; later ones as usual.
    pub fn shape_events_bodies(&self, faults: Vec<BodyFault>) {
        self.shared.lock().bodies.faults.extend(faults);
    }

    /// Writes every `GET /events` body streamed, with the envelope's keys
    /// in this order (`result`, `msg`, `events`, `queue_id`; Zulip's own
    /// order is also the streamed default); `None` restores the whole body,
    /// keys sorted.
    pub fn set_envelope_order(&self, order: Option<&[&str]>) {
        let order = order.map(|keys| keys.iter().map(|k| k.to_string()).collect());
        self.shared.lock().bodies.order = order;
    }

    /// Number of events currently held (unacknowledged) in a queue, a
    /// synthetic backlog's included; None if the queue does not exist.
    pub fn pending(&self, queue_id: &str) -> Option<usize> {
        let mut st = self.shared.lock();
        let q = st.gc().get(queue_id)?;
        let synthetic = q.synthetic.as_ref().map_or(0, |s| s.count as usize);
        Some(q.events.len() + synthetic)
    }

    /// Whether a `GET /events` is parked on the queue now (the daemon is
    /// waiting on it, not between polls).
    pub fn has_parked_poll(&self, queue_id: &str) -> bool {
        let mut st = self.shared.lock();
        st.gc().get(queue_id).is_some_and(|q| q.parked.is_some())
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

    /// The parameters of each successful `POST /register`, in order, as
    /// JSON objects of strings (the values as sent: JSON-encoded).
    pub fn registrations(&self) -> Vec<Value> {
        self.shared.lock().registrations.clone()
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

    /// Every message the bot sent with `POST /messages`, in order.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.shared.lock().sent.clone()
    }

    /// The next `n` sends get `fault` (after any queued before).
    pub fn fail_next_sends(&self, n: usize, fault: SendFault) {
        let mut st = self.shared.lock();
        st.send_faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Channel `name` no longer exists: sends to it get 400
    /// `STREAM_DOES_NOT_EXIST`.
    pub fn delete_channel(&self, name: &str) {
        self.shared
            .lock()
            .missing_channels
            .insert(name.to_lowercase());
    }

    /// While `lose` is set, messages the bot sends are stored (and found by
    /// `GET /messages`) but reach no queue: their echo is lost, as with a
    /// queue that is gone.
    pub fn lose_echoes(&self, lose: bool) {
        self.shared.lock().lose_echoes = lose;
    }

    /// `GET /users/{id}` reports user `id` (with `email`) as a bot.
    pub fn add_bot(&self, id: i64, email: &str) {
        let mut st = self.shared.lock();
        st.users.insert(id, email.to_owned());
        st.bots.insert(id);
    }
}
