//! [`State`]: the daemon's live state shared by intake, dispatch, the
//! recorder, the reply sender and the HTTP server — metrics plus the few facts `/health`
//! needs. Everything is atomic; nothing here is locked across `.await`.
//!
//! It sits below every component that writes to it: the listener controls
//! the dispatcher registers are seen here only through [`ListenerControls`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::metrics::Metrics;
use crate::tap::Tap;

/// Live state of the poll loop.
#[derive(Debug, Default)]
pub struct IntakeStatus {
    /// The current queue.
    pub queue_id: Mutex<Option<String>>,
    /// Unix milliseconds of the last successful poll (events or heartbeat).
    pub last_activity_ms: AtomicI64,
    /// Unix milliseconds of the last stored event.
    pub last_event_ms: AtomicI64,
    /// Failed polls in a row.
    pub consecutive_failures: AtomicU32,
    /// When the first of them began (monotonic); `None` while requests work.
    pub failing_since: Mutex<Option<tokio::time::Instant>>,
    /// Set once requests have failed for `[error_handling] degraded_after`.
    pub degraded: AtomicBool,
    /// The long-poll timeout of the current queue, in seconds.
    pub longpoll_secs: AtomicU64,
    /// Set while the poll loop runs against Zulip (not for a file source).
    pub polling: AtomicBool,
    /// Unix milliseconds at which the last poll whose whole page is
    /// committed began (0 before the first, in this process). A reply whose
    /// POST may have reached Zulip is resent only once a poll that began
    /// after it is committed: its echo, had Zulip sent it, is in the inbox
    /// by then.
    pub committed_poll_began_ms: AtomicI64,
}

impl IntakeStatus {
    /// The current queue id.
    pub fn queue_id(&self) -> Option<String> {
        self.queue_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the current queue id.
    pub fn set_queue_id(&self, id: Option<String>) {
        *self.queue_id.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    /// Notes a failed request begun at `started`: the failures in a row,
    /// and how long requests have been failing since the first of them.
    pub fn note_failure(&self, started: tokio::time::Instant) -> (u32, std::time::Duration) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut since = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        let first = *since.get_or_insert(started);
        (n, first.elapsed())
    }

    /// How long requests have been failing, if they are.
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        let since = *self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|t| t.elapsed())
    }

    /// Forgets the failures (a request worked, or the daemon woke up):
    /// true when it was reported degraded.
    pub fn clear_failures(&self) -> bool {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.degraded.swap(false, Ordering::Relaxed)
    }
}

/// Shared live state.
#[derive(Default)]
pub struct State {
    /// The metrics registry.
    pub metrics: Metrics,
    /// The poll loop.
    pub intake: IntakeStatus,
    /// While the daemon starts (until its first poll is under way): what it
    /// is waiting for, e.g. Zulip to answer the account check.
    pub starting: Mutex<Option<String>>,
    /// Intake stopped for good (Zulip refused the key, or the request):
    /// why. With several organizations, the others go on.
    pub stopped: Mutex<Option<String>>,
    /// A database write is being retried.
    pub database_retrying: AtomicBool,
    /// Shutdown has begun.
    pub draining: AtomicBool,
    /// Polling is paused by memory backpressure.
    pub backpressure: AtomicBool,
    /// The dispatcher's listener states, once it exists.
    pub listeners: OnceLock<Arc<dyn ListenerControls>>,
    /// Notified by the recorder when it has committed replies to the
    /// outbox: wakes the reply sender.
    pub replies_queued: tokio::sync::Notify,
    /// The last configuration reload (SIGHUP), for `/health`.
    pub reload: Mutex<Option<ReloadStatus>>,
    /// The tap: the dispatchers publish to it, `GET /admin/tap` reads it.
    /// Every organization's state shares the daemon's.
    pub(crate) tap: Arc<Tap>,
    /// Spans of events whose replies are not sent yet (with tracing on).
    pub held_spans: crate::telemetry::HeldSpans,
    /// A distributed worker's partitions (`run --role worker`), for `/health`.
    pub worker_partitions: Mutex<Option<Arc<Mutex<Vec<u32>>>>>,
    /// The distributed ingest's leadership and outbox (`run --role ingest`).
    pub ingest: IngestStatus,
}

/// What `/health` shows of a distributed ingest (issue 16).
#[derive(Debug, Default)]
pub struct IngestStatus {
    /// This process runs `--role ingest`.
    pub enabled: AtomicBool,
    /// It leads (polls and publishes); false while it stands by.
    pub leading: AtomicBool,
    /// Its epoch while it leads (the last one it held otherwise).
    pub epoch: std::sync::atomic::AtomicI64,
    /// Committed inbox rows not yet confirmed by the broker.
    pub outbox_depth: std::sync::atomic::AtomicI64,
    /// Polling is paused: the outbox reached `[distributed] outbox_limit`.
    pub outbox_full: AtomicBool,
    /// The broker cannot be reached (publishing waits).
    pub broker_down: AtomicBool,
    /// `[distributed] partitions`.
    pub partitions: std::sync::atomic::AtomicU32,
    /// The leader's holder name (`host=H pid=P`) as last seen.
    pub holder: Mutex<Option<String>>,
}

/// The last configuration reload, as `/health` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    /// When it was attempted (RFC 3339).
    pub last_attempt: String,
    /// `ok` (applied) or `failed` (the running configuration kept).
    pub result: &'static str,
    /// Why it failed: every problem found.
    pub problems: Vec<String>,
    /// The live changes it applied.
    pub applied: Vec<String>,
    /// Settings that changed in the file but need a restart.
    pub restart_needed: Vec<String>,
}

/// Why a listener is disabled when the operator who disabled it gave no
/// reason.
pub(crate) const OPERATOR_DISABLED: &str = "disabled by an operator";

/// What `/health` reads of the listeners' run-time state, and the switch
/// the admin API turns (the dispatcher's `Control` provides both), so that
/// this module needs nothing above it.
pub trait ListenerControls: Send + Sync {
    /// Listeners currently disabled, with the reason.
    fn disabled(&self) -> Vec<(String, String)>;
    /// Listeners whose circuit is open, with when it half-opens.
    fn open_circuits(&self) -> Vec<(String, chrono::DateTime<chrono::Utc>)>;
    /// Disables (with a reason) or re-enables a listener now.
    fn set_disabled(&self, listener: &str, reason: Option<String>);
}

/// The listener controls of every organization of the process, as one:
/// the admin API's switch turns a listener off (or on) in each of them.
pub(crate) struct EveryOrganization(pub(crate) Vec<Arc<State>>);

impl EveryOrganization {
    fn each(&self) -> impl Iterator<Item = &Arc<dyn ListenerControls>> {
        self.0.iter().filter_map(|s| s.listeners.get())
    }
}

impl ListenerControls for EveryOrganization {
    fn disabled(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = Vec::new();
        for (name, why) in self.each().flat_map(|c| c.disabled()) {
            if !all.iter().any(|(n, _)| *n == name) {
                all.push((name, why));
            }
        }
        all
    }

    fn open_circuits(&self) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        self.each().flat_map(|c| c.open_circuits()).collect()
    }

    fn set_disabled(&self, listener: &str, reason: Option<String>) {
        for c in self.each() {
            c.set_disabled(listener, reason.clone());
        }
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl State {
    /// The state of organization `org`, one of several in the process: its
    /// metrics carry the label `org`.
    pub fn for_organization(org: &str) -> State {
        State {
            metrics: Metrics::for_organization(org),
            ..State::default()
        }
    }

    /// Why intake stopped for good, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Says that intake stopped for good, and why.
    pub fn set_stopped(&self, why: String) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// What start-up waits for, while the daemon starts.
    pub fn starting(&self) -> Option<String> {
        self.starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets what start-up waits for; `None` once the daemon is running.
    pub fn set_starting(&self, what: Option<String>) {
        *self.starting.lock().unwrap_or_else(|p| p.into_inner()) = what;
    }

    /// Records a reload's outcome for `/health`.
    pub fn set_reload(&self, status: ReloadStatus) {
        *self.reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    /// The last reload's outcome, if there was one.
    pub fn reload(&self) -> Option<ReloadStatus> {
        self.reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Seconds since the last successful poll, if there was one.
    pub fn last_poll_age(&self) -> Option<f64> {
        let last = self.intake.last_activity_ms.load(Ordering::Relaxed);
        (last > 0).then(|| (now_ms() - last).max(0) as f64 / 1000.0)
    }
}
