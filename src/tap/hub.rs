//! [`Tap`]: a fan-out from the dispatchers to the tap's subscribers.
//!
//! Each subscriber has its own bounded queue ([`QUEUE`] items) and its
//! filter, applied when a line is published, so lines it does not want
//! never fill its queue. [`Tap::publish`] never waits: a full queue loses
//! the line, counted in the subscriber (which says so in its stream) and in
//! `zulip_event_listeners_tap_lines_dropped_total`. While nobody taps, a
//! publish is one atomic load and the item is never built.
//!
//! Items are [`Tapped`] trait objects (an event entering dispatch, a run's
//! outcome) defined by the dispatcher, so this module needs nothing above
//! it; each subscriber turns them into JSON in its own task, redacted or
//! not as it asked.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Items a subscriber may have waiting before its next ones are dropped.
pub(crate) const QUEUE: usize = 1024;

/// One line of the tap, as the dispatcher publishes it.
pub(crate) trait Tapped: Send + Sync {
    /// Whether a subscriber with `filter` wants it.
    fn matches(&self, filter: &TapFilter) -> bool;
    /// Its JSON object, one line; content, topics, emails and names
    /// redacted unless `show_content`.
    fn line(&self, show_content: bool) -> String;
}

/// What a subscriber wants; `None` is anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TapFilter {
    /// Events routed to this listener, and its outcomes.
    pub(crate) listener: Option<String>,
    /// Events (and outcomes) of this type.
    pub(crate) event_type: Option<String>,
    /// Events (and outcomes) of this channel: its name, or its id.
    pub(crate) channel: Option<String>,
}

struct Subscriber {
    id: u64,
    filter: TapFilter,
    tx: mpsc::Sender<Arc<dyn Tapped>>,
    dropped: Arc<AtomicU64>,
}

/// The tap's hub; one per process, shared by every organization.
#[derive(Default)]
pub(crate) struct Tap {
    /// Subscribers, read without the lock by every publish.
    count: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
}

impl Tap {
    /// Whether anyone taps.
    pub(crate) fn is_tapped(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Hands the item `make` builds to every subscriber that wants it;
    /// builds nothing while nobody taps. A subscriber whose queue is full
    /// loses it, counted in `dropped` and by the subscriber.
    pub(crate) fn publish(&self, make: impl FnOnce() -> Arc<dyn Tapped>, dropped: &IntCounter) {
        if !self.is_tapped() {
            return;
        }
        let item = make();
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for s in subscribers.iter().filter(|s| item.matches(&s.filter)) {
            match s.tx.try_send(item.clone()) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    dropped.inc();
                }
            }
        }
        // A subscription dropped without its `Drop` having run yet.
        subscribers.retain(|s| !s.tx.is_closed());
        self.count.store(subscribers.len(), Ordering::Relaxed);
    }

    /// A new subscriber wanting `filter`; it stops receiving when dropped.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: TapFilter) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.push(Subscriber {
            id,
            filter,
            tx,
            dropped: dropped.clone(),
        });
        self.count.store(subscribers.len(), Ordering::Relaxed);
        Subscription {
            id,
            rx,
            dropped,
            tap: self.clone(),
        }
    }

    fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|s| s.id != id);
        self.count.store(subscribers.len(), Ordering::Relaxed);
    }
}

/// One subscriber's end: its items, and how many it lost.
pub(crate) struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Arc<dyn Tapped>>,
    dropped: Arc<AtomicU64>,
    tap: Arc<Tap>,
}

impl Subscription {
    /// The next item; waits for one.
    pub(crate) async fn next(&mut self) -> Option<Arc<dyn Tapped>> {
        self.rx.recv().await
    }

    /// Lines lost since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.tap.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Line(&'static str);

    impl Tapped for Line {
        fn matches(&self, filter: &TapFilter) -> bool {
            filter.event_type.as_deref().is_none_or(|t| t == self.0)
        }
        fn line(&self, _: bool) -> String {
            self.0.to_owned()
        }
    }

    fn item(t: &'static str) -> Arc<dyn Tapped> {
        Arc::new(Line(t))
    }

    #[test]
    fn nothing_is_built_while_nobody_taps() {
        let tap = Tap::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        tap.publish(|| panic!("built without a subscriber"), &dropped);
        assert!(!tap.is_tapped());
    }

    #[tokio::test]
    async fn a_subscriber_gets_what_its_filter_wants_until_it_is_dropped() {
        let tap = Arc::new(Tap::default());
        let dropped = IntCounter::new("d", "d").unwrap();
        let mut sub = tap.subscribe(TapFilter {
            event_type: Some("message".into()),
            ..TapFilter::default()
        });
        tap.publish(|| item("reaction"), &dropped);
        tap.publish(|| item("message"), &dropped);
        assert_eq!(sub.next().await.unwrap().line(false), "message");
        assert!(sub.rx.try_recv().is_err(), "the reaction was filtered out");
        drop(sub);
        assert!(!tap.is_tapped(), "a dropped subscription leaves");
    }

    #[tokio::test]
    async fn a_full_queue_drops_lines_and_counts_them_without_waiting() {
        let tap = Arc::new(Tap::default());
        let dropped = IntCounter::new("d", "d").unwrap();
        let mut sub = tap.subscribe(TapFilter::default());
        for _ in 0..QUEUE + 5 {
            tap.publish(|| item("message"), &dropped);
        }
        assert_eq!(dropped.get(), 5);
        assert_eq!(sub.take_dropped(), 5);
        assert_eq!(sub.take_dropped(), 0, "counted once");
        assert!(sub.next().await.is_some(), "the queued lines stay");
    }
}
