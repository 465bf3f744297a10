//! Listeners that fail, panic, hang, count or wait, for dispatcher tests.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use zulip_event_listeners::event::Event;
use zulip_event_listeners::listeners::{Context, Listener, ListenerError, Record, Registry};

/// The `name`, `description` and `event_types` of a test listener.
macro_rules! identity {
    ($name:literal, $description:literal, [$($event_type:literal),*]) => {
        fn name(&self) -> &str {
            $name
        }
        fn description(&self) -> &str {
            $description
        }
        fn event_types(&self) -> &[&str] {
            &[$($event_type),*]
        }
    };
}

/// Shared handle used by test listeners to count calls.
pub type Counter = Arc<std::sync::atomic::AtomicU64>;

/// Always fails with a transient error.
pub struct Failing;
/// Panics on every event.
pub struct Panicking;
/// Never returns.
pub struct Hanging;
/// Counts calls and succeeds.
pub struct Counting(pub Counter);

#[async_trait]
impl Listener for Failing {
    identity!("failing", "fails", ["message"]);
    async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        Err(ListenerError::transient("the downstream service is down"))
    }
}

#[async_trait]
impl Listener for Panicking {
    identity!("panicking", "panics", ["message"]);
    async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        panic!("listener bug")
    }
}

#[async_trait]
impl Listener for Hanging {
    identity!("hanging", "hangs", ["message"]);
    async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        std::future::pending::<()>().await;
        Ok(Vec::new())
    }
}

#[async_trait]
impl Listener for Counting {
    identity!("counting", "counts", ["*"]);
    async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

/// Succeeds once it gets a permit of its semaphore: each run waits for the
/// test to add one.
pub struct Gated(pub Arc<tokio::sync::Semaphore>);

#[async_trait]
impl Listener for Gated {
    identity!("gated", "waits for a permit", ["message"]);
    async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        match self.0.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(ListenerError::transient("the gate was closed")),
        }
        Ok(Vec::new())
    }
}

/// Fails the first two tries of every event, then succeeds.
pub struct Flaky;

#[async_trait]
impl Listener for Flaky {
    identity!("flaky", "fails twice per event", ["message"]);
    async fn handle(&self, _: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        if ctx.attempt <= 2 {
            Err(ListenerError::transient(format!(
                "try {} failed",
                ctx.attempt
            )))
        } else {
            Ok(Vec::new())
        }
    }
}

/// Logs the order in which it sees message ids (messages and their edits),
/// sleeping a little at random to give reordering a chance.
pub struct OrderProbe(pub Arc<std::sync::Mutex<Vec<(String, i64)>>>);

#[async_trait]
impl Listener for OrderProbe {
    identity!(
        "order_probe",
        "records the order of messages and edits",
        ["message", "update_message"]
    );
    async fn handle(&self, event: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
        let id = match event.message_id() {
            Some(id) => id,
            None => serde_json::from_str::<serde_json::Value>(event.raw())
                .ok()
                .and_then(|v| v["message_id"].as_i64())
                .unwrap_or(-1),
        };
        let ms = {
            use rand::Rng;
            rand::rng().random_range(0..4u64)
        };
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        self.0
            .lock()
            .unwrap()
            .push((event.event_type().to_owned(), id));
        Ok(Vec::new())
    }
}

/// The built-ins plus every test listener; returns the counting listener's counter.
pub fn registry_with_test_listeners() -> (Registry, Counter) {
    let counter: Counter = Arc::default();
    let mut r = Registry::builtin();
    r.register(Arc::new(Failing)).unwrap();
    r.register(Arc::new(Panicking)).unwrap();
    r.register(Arc::new(Hanging)).unwrap();
    r.register(Arc::new(Counting(counter.clone()))).unwrap();
    r.register(Arc::new(Flaky)).unwrap();
    (r, counter)
}
