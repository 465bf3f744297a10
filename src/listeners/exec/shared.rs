//! [`Shared`]: what a persistent exec instance's runs and its supervisor
//! both see — the live child's request queue and the requests waiting for
//! an answer, under one lock, so a request is either answered by the child
//! it was written to or failed (as transient) when that child dies; the
//! in-flight bound, request ids and the restart count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, watch, Semaphore, SemaphorePermit};

use super::command::Spec;
use super::protocol::Response;
use crate::listeners::ListenerError;

/// Request lines queued for the child's stdin when `max_concurrent` is unset.
const DEFAULT_QUEUE: usize = 256;

/// What a request waits for: the child's response, or why there is none.
pub(super) type Answer = Result<Response, ListenerError>;

/// What the runs and the supervisor share.
pub(super) struct Shared {
    /// The instance's name.
    pub(super) name: String,
    /// The child's command.
    pub(super) spec: Spec,
    /// Requests in flight, at most.
    limit: Option<Semaphore>,
    /// Capacity of the child's request queue.
    pub(super) queue: usize,
    state: Mutex<State>,
    /// Bumped after every change of `state.live` or `state.down`.
    changed: watch::Sender<()>,
    next_id: AtomicU64,
    restarts: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The child taking requests, if one is.
    live: Option<Live>,
    /// Why no child can take requests now (its start failed, or the
    /// listener is stopping); `None` while one is (re)starting.
    down: Option<String>,
    /// Requests written (or being written) to a child, by id.
    pending: HashMap<u64, Pending>,
}

struct Live {
    generation: u64,
    requests: mpsc::Sender<String>,
}

struct Pending {
    generation: u64,
    answer: oneshot::Sender<Answer>,
}

/// What became of a response line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Its request got it.
    Answered,
    /// Its request is no longer waiting (it timed out), or was answered.
    Late,
    /// No request ever had that id.
    Unknown,
}

impl Shared {
    /// The state of instance `name` running `spec`, before any child.
    pub(super) fn new(name: &str, spec: Spec, max_concurrent: Option<usize>) -> Shared {
        let (changed, _) = watch::channel(());
        Shared {
            name: name.to_owned(),
            spec,
            limit: max_concurrent.map(|n| Semaphore::new(n.max(1))),
            queue: max_concurrent.unwrap_or(DEFAULT_QUEUE).max(1),
            state: Mutex::new(State::default()),
            changed,
            next_id: AtomicU64::new(1),
            restarts: AtomicU64::new(0),
        }
    }

    /// A place among the requests in flight (waits while they are all
    /// taken); `None` when there is no bound.
    pub(super) async fn admit(&self) -> Result<Option<SemaphorePermit<'_>>, ListenerError> {
        match &self.limit {
            Some(limit) => limit
                .acquire()
                .await
                .map(Some)
                .map_err(|_| ListenerError::transient("the listener is stopping")),
            None => Ok(None),
        }
    }

    /// A new request id.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Forgets request `id` (its run ended, or was dropped).
    pub(super) fn forget(&self, id: u64) {
        self.lock().pending.remove(&id);
    }

    /// Restarts so far.
    pub(super) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    /// Adds request `id` to the pending set of the live child and returns
    /// that child's queue; waits while the child is (re)starting; fails at
    /// once when it cannot start or the listener is stopping.
    pub(super) async fn enqueue(
        &self,
        id: u64,
        answer: oneshot::Sender<Answer>,
    ) -> Result<mpsc::Sender<String>, ListenerError> {
        let mut answer = Some(answer);
        loop {
            // Subscribed before the state is read: a change after the read
            // wakes the wait below.
            let mut changed = self.changed.subscribe();
            {
                let mut state = self.lock();
                if let Some(live) = &state.live {
                    let (generation, requests) = (live.generation, live.requests.clone());
                    if let Some(answer) = answer.take() {
                        state.pending.insert(id, Pending { generation, answer });
                    }
                    return Ok(requests);
                }
                if let Some(why) = &state.down {
                    return Err(ListenerError::transient(why.clone()));
                }
            }
            if changed.changed().await.is_err() {
                return Err(ListenerError::transient("the listener is stopping"));
            }
        }
    }

    /// Child `generation` takes requests on `requests`.
    pub(super) fn go_live(&self, generation: u64, requests: mpsc::Sender<String>) {
        {
            let mut state = self.lock();
            state.live = Some(Live {
                generation,
                requests,
            });
            state.down = None;
        }
        self.notify();
    }

    /// Child `generation` is gone: its pending requests fail (transient,
    /// `why`); `down` says why new ones fail at once (`None`: they wait
    /// for the next child). Returns how many failed.
    pub(super) fn go_down(
        &self,
        generation: Option<u64>,
        why: &str,
        down: Option<String>,
    ) -> usize {
        let failed: Vec<Pending> = {
            let mut state = self.lock();
            if state.live.as_ref().map(|l| l.generation) == generation || generation.is_none() {
                state.live = None;
            }
            state.down = down;
            let ids: Vec<u64> = state
                .pending
                .iter()
                .filter(|(_, p)| generation.is_none_or(|g| p.generation == g))
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| state.pending.remove(id))
                .collect()
        };
        self.notify();
        let n = failed.len();
        for p in failed {
            let _ = p.answer.send(Err(ListenerError::transient(why.to_owned())));
        }
        n
    }

    /// Hands `response` to the request waiting for it.
    pub(super) fn deliver(&self, response: Response) -> Delivery {
        let id = response.id;
        let waiting = self.lock().pending.remove(&id);
        match waiting {
            Some(p) => {
                // The run may have just timed out: nothing to do then.
                let _ = p.answer.send(Ok(response));
                Delivery::Answered
            }
            None if id > 0 && id < self.next_id.load(Ordering::Relaxed) => Delivery::Late,
            None => Delivery::Unknown,
        }
    }

    /// Counts one restart; returns the count.
    pub(super) fn count_restart(&self) -> u64 {
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }
}
