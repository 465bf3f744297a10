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
use super::options::FakeOptions;
use super::queues::{Completion, Queue, RequestRecord, Shared, State, GC_TICK};

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
        let held = st.held;
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
        st.held = held;
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
