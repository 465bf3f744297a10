//! [`Dispatcher`]: one run per (event, interested listener).
//!
//! - **Ordering**: runs of one listener that share an ordering key (the
//!   channel and topic, the direct-message group, the user, or the event
//!   type) run in dispatch order; so do runs about one message (the message
//!   itself, its edits, moves and deletion: each also takes the lane of
//!   every message it touches), so an edit never overtakes its message even
//!   when Zulip leaves the conversation out of it; other keys run in
//!   parallel. A run's outcome goes to the recorder before the next run of
//!   its lanes may start, so runs are recorded in that order too.
//! - **Selection**: an event another instance owns (`[scaling]`) gets no
//!   run here; filters (`[filters]`, `[security]`, `[listeners.NAME]`)
//!   skip runs, counted as `skipped` and logged at debug.
//! - **Bounds**: at most `max_concurrent` runs execute at once; at most
//!   [`ADMISSION_FACTOR`] × that many runs exist (waiting for their lane or
//!   a slot, running, or handing their record to the recorder), taken
//!   before spawning, so a flood of events waits in the caller — and,
//!   through it, in Zulip's queue — not in memory, also when the recorder
//!   is the slowest part.
//! - **Failures**: a run that errors, panics or times out is retried up to
//!   `max_retries` times `retry_delay` apart (with jitter), holding only its
//!   own lane; a permanent error is not retried; the last failure is
//!   dead-lettered. A listener's [`Breaker`] skips runs while its circuit is
//!   open or it is disabled; skipped runs are dead-lettered for `replay`.
//!   A last failure is then handed to the instance's fallback, if it has
//!   one (`fallback.rs`); an instance that is a fallback gets no event
//!   directly.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::control::{current, Control, Current, Roster};
use super::lanes::{key_digest, lane_digest, DigestLanes, Turns};
use super::notice::Notice;
use super::ordering::{ordering_key, OrderingKey};
use super::progress::Progress;
use super::recorder::Recording;
use super::route::route;
use super::run::{EventRuns, Run};
use super::settings::DispatcherSettings;
use super::tapped::Entered;
use crate::listeners::{interested, Instance};
use crate::metrics::{DiscardReason, Outcome};
use crate::state::State;
use crate::store::StoredEvent;
use crate::telemetry;

/// How many inbox ids a drain that runs out of time names in its log.
const DRAIN_NAMED_EVENTS: usize = 20;

/// Runs that may exist (waiting or running) per allowed concurrent run.
pub(crate) const ADMISSION_FACTOR: usize = 16;

/// Starts listener runs and sends their outcomes to the recorder.
pub(crate) struct Dispatcher {
    /// The instances and settings new events go to (a reload replaces it).
    roster: Current,
    admission: Arc<Semaphore>,
    /// The admission limit: runs that may exist at once.
    admission_size: usize,
    running: Arc<Semaphore>,
    /// Keyed by instance name, so an instance a reload keeps keeps its
    /// order across the reload.
    lanes: Arc<DigestLanes>,
    /// Shutdown: no new run starts once cancelled (the same in every roster).
    stop: tokio_util::sync::CancellationToken,
    outcomes: mpsc::Sender<Recording>,
    notices: Option<mpsc::Sender<Notice>>,
    progress: Arc<Progress>,
    tracker: TaskTracker,
    state: Arc<State>,
}

impl Dispatcher {
    /// A dispatcher over `listeners` whose outcomes (finished runs, and
    /// automatic disables) go to `outcomes`, read by the
    /// [`Recorder`](super::Recorder).
    pub(crate) fn new(
        instances: Vec<Instance>,
        settings: DispatcherSettings,
        outcomes: mpsc::Sender<Recording>,
        progress: Arc<Progress>,
        state: Arc<State>,
    ) -> Dispatcher {
        let max = settings.max_concurrent.max(1);
        let stop = settings.stop.clone();
        let roster = Roster::new(&instances, settings, &state, None, &[]);
        let admission = Arc::new(Semaphore::new(max * ADMISSION_FACTOR));
        let running = Arc::new(Semaphore::new(max));
        let buffers = &state.metrics.buffers;
        buffers.watch_semaphore("dispatch_admission", &admission, max * ADMISSION_FACTOR);
        buffers.watch_semaphore("run_slots", &running, max);
        Dispatcher {
            roster: Arc::new(RwLock::new(Arc::new(roster))),
            admission,
            admission_size: max * ADMISSION_FACTOR,
            running,
            lanes: Arc::default(),
            stop,
            outcomes,
            notices: None,
            progress,
            tracker: TaskTracker::new(),
            state,
        }
    }

    /// Sends [`Notice`]s to `tx` (dropped when full: never blocks dispatch).
    pub(crate) fn with_notices(mut self, tx: mpsc::Sender<Notice>) -> Dispatcher {
        self.notices = Some(tx);
        self
    }

    /// A handle to disable, enable and inspect listeners while running.
    pub(crate) fn control(&self) -> Control {
        Control {
            roster: self.roster.clone(),
            state: Arc::downgrade(&self.state),
        }
    }

    /// Starts the runs of one committed event, skipping the listeners named
    /// in `already_done` (runs recorded before a restart). Waits while the
    /// admission limit is reached, which slows intake down in turn.
    pub(crate) async fn dispatch(&self, stored: StoredEvent, already_done: &[String]) {
        if self.stop.is_cancelled() {
            return;
        }
        // One roster for the whole event: a reload in between changes the
        // next event's listeners, never half of this one's.
        let roster = current(&self.roster);
        let key = ordering_key(&stored.event);
        let targets = self.targets(&roster, &stored, already_done);
        // The trace's root; its runs' tries and replies are its children.
        let trace = tracing::info_span!(target: telemetry::TARGET, "event",
            org = %roster.settings.org, event_type = stored.event.event_type(),
            inbox_id = stored.inbox_id, event_id = stored.event.id(), runs = targets.len());
        self.progress.begin(stored.inbox_id, targets.len());
        let stored = Arc::new(stored);
        self.tap_entered(&roster, &stored, &targets);
        if targets.is_empty() {
            tracing::debug!(
                inbox_id = stored.inbox_id,
                event_type = stored.event.event_type(),
                "No listener wants this event"
            );
            return;
        }
        // The event's lane keys, hashed once for all its runs.
        let digests: Vec<u64> = std::iter::once(key_digest(&key))
            .chain(
                stored
                    .event
                    .messages_touched()
                    .iter()
                    .map(|&id| key_digest(&OrderingKey::Message(id))),
            )
            .collect();
        // What the event's runs share, built once for all of them.
        let event = Arc::new(EventRuns {
            slots: roster.slots.clone(),
            event_type: Arc::from(stored.event.event_type()),
            stored,
            settings: roster.settings.clone(),
            running: self.running.clone(),
            notices: self.notices.clone(),
            outcomes: self.outcomes.clone(),
            state: self.state.clone(),
            trace,
        });
        // Every run of the event in one task (one per chunk of at most
        // the admission limit, so that an event with more runs than that
        // never waits for permits it holds itself).
        for chunk in targets.chunks(self.admission_size) {
            let wanted = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            let permits = tokio::select! {
                p = self.admission.clone().acquire_many_owned(wanted) => p,
                _ = self.stop.cancelled() => return,
            };
            let Ok(mut permits) = permits else {
                return;
            };
            // Taken here, in dispatch order, so the lanes keep event order;
            // the chunk's runs take theirs under one lock.
            let turns = self.lanes.enter_each(chunk.iter().map(|&i| {
                let name = &roster.slots[i].name;
                digests.iter().map(move |&k| lane_digest(name, k))
            }));
            self.state
                .metrics
                .runs_in_flight
                .add(i64::try_from(chunk.len()).unwrap_or(i64::MAX));
            let runs = chunk
                .iter()
                .zip(turns)
                .map(|(&i, turn)| self.run_in_lanes(&event, i, turn, permits.split(1)))
                .collect();
            self.tracker.spawn(run_all(runs));
        }
    }

    /// Publishes `stored` entering dispatch, bound for `targets`, to the
    /// tap (nothing while nobody taps).
    fn tap_entered(&self, roster: &Roster, stored: &Arc<StoredEvent>, targets: &[usize]) {
        let make = || -> Arc<dyn crate::tap::Tapped> {
            Arc::new(Entered {
                org: roster.settings.org.clone(),
                stored: stored.clone(),
                listeners: targets
                    .iter()
                    .map(|&i| roster.slots[i].name.clone())
                    .collect(),
            })
        };
        let dropped = &self.state.metrics.tap_lines_dropped;
        self.state.tap.publish(make, dropped);
    }

    /// The listeners that run `stored` here: none when another instance
    /// owns it; else the interested ones not in `already_done` that no
    /// filter skips (skipped runs are counted and logged).
    fn targets(
        &self,
        roster: &Roster,
        stored: &StoredEvent,
        already_done: &[String],
    ) -> Vec<usize> {
        let settings = &roster.settings;
        let route = route(
            &roster.listeners,
            &settings.filters,
            &settings.partitioner,
            &stored.event,
            Utc::now(),
        );
        let metrics = &self.state.metrics;
        if !route.owned {
            for i in interested(&roster.listeners, stored.event.event_type()) {
                let slot = &roster.slots[i];
                if !already_done.iter().any(|d| **d == *slot.name) {
                    metrics
                        .discards
                        .count(&slot.name, DiscardReason::NotPartition, 1);
                }
            }
        }
        let mut targets = Vec::new();
        for (i, skip) in route.runs {
            let slot = &roster.slots[i];
            if slot.fallback_only || already_done.iter().any(|d| **d == *slot.name) {
                continue;
            }
            match skip {
                Some(reason) => {
                    metrics
                        .events_processed
                        .with_label_values(&[&slot.name, Outcome::Skipped.as_str()])
                        .inc();
                    metrics.discards.count(&slot.name, reason.discard(), 1);
                    tracing::debug!(listener = %slot.name, inbox_id = stored.inbox_id, reason = reason.as_str(), "Skipping a run");
                }
                None => targets.push(i),
            }
        }
        targets
    }

    /// Listener `index`'s run of `event`, in the lanes of `turn`, holding
    /// its admission `permit` until the run is over: to be polled by the
    /// event's task ([`run_all`]). Boxed: the run's future holds every
    /// state of a try (a few KB), and unboxed it was copied whole at each
    /// move on its way into the task (a profile put 11% of the daemon's
    /// CPU in those copies).
    fn run_in_lanes(
        &self,
        event: &Arc<EventRuns>,
        index: usize,
        mut turn: Turns<u64>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> BoxFuture<'static, ()> {
        let run = Run {
            event: event.clone(),
            index,
            fallback_of: None,
        };
        let lanes = self.lanes.clone();
        let slot = &event.slots[index];
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        slot.handles.instance.in_flight.inc();
        Box::pin(async move {
            turn.wait().await;
            let chain = run.execute().await;
            // Sent before the lanes' next run may start, so that the
            // recorder gets each lane's runs in order: an edit is never
            // committed in a batch before its message's. The recorder
            // outlives every run; if it is gone the daemon is stopping and
            // the event is re-dispatched at next start, as it is when
            // shutdown came before the run could start.
            let recording = match chain {
                Some(mut runs) if runs.len() == 1 => runs.pop().map(Recording::Run),
                Some(runs) => Some(Recording::Chain(runs)),
                None => None,
            };
            if let Some(recording) = recording {
                // At once while the channel has room (no future, no
                // waiter: the common case), else waiting for it.
                if let Err(mpsc::error::TrySendError::Full(recording)) =
                    run.outcomes.try_send(recording)
                {
                    let _ = run.outcomes.send(recording).await;
                }
            }
            lanes.leave_all(turn);
            // Only now: a finished run waiting for a busy recorder still
            // holds its event and records, and must count against the
            // admission limit, or runs pile up in memory behind it.
            drop(permit);
            run.state.metrics.runs_in_flight.dec();
            run.slots[run.index]
                .in_flight
                .fetch_sub(1, Ordering::Relaxed);
            run.slots[run.index].handles.instance.in_flight.dec();
        })
    }

    /// Stops accepting runs and waits up to `deadline` for those in flight.
    /// Returns how many were still running when the deadline passed, and
    /// names them in the log: by listener, and by the inbox ids of the
    /// events left without a recorded outcome.
    pub(crate) async fn drain(self, deadline: Duration) -> usize {
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        // Runs, not tasks (a task holds an event's runs); a run of an
        // instance a reload removed is counted by its task alone.
        let counted: usize = current(&self.roster)
            .slots
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed))
            .sum();
        let left = counted.max(self.tracker.len());
        let listeners = self.in_flight_by_listener();
        let events = self.progress.unrecorded(DRAIN_NAMED_EVENTS);
        tracing::warn!(
            still_running = left,
            listeners = %listeners,
            inbox_ids = %events,
            "Listener runs did not finish before the shutdown deadline; their events are dispatched again at next start"
        );
        left
    }

    /// `name (count), …` of the listeners with runs in flight.
    pub(super) fn in_flight_by_listener(&self) -> String {
        current(&self.roster)
            .slots
            .iter()
            .filter_map(|s| {
                let n = s.in_flight.load(Ordering::Relaxed);
                (n > 0).then(|| format!("{} ({n})", s.name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Polls the runs of one event together, in one task: a task per event,
/// not per run, so a cheap run costs a poll, not a spawn. Each run still
/// waits for its own lanes and slot, and ends on its own (its permit and
/// lanes released as it finishes); a run that never ends keeps only the
/// task, not its event's other runs.
async fn run_all<F: std::future::Future<Output = ()>>(mut runs: Vec<F>) {
    if runs.len() == 1 {
        if let Some(run) = runs.pop() {
            run.await;
        }
        return;
    }
    let mut all: FuturesUnordered<F> = runs.into_iter().collect();
    while all.next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use crate::listeners::test_identity;
    use async_trait::async_trait;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::dispatch::filters::Filters;
    use crate::dispatch::partition::Partitioner;
    use crate::dispatch::{BreakerSettings, RetryPolicy};
    use crate::event::Event;
    use crate::listeners::{Context, Listener, ListenerError, Record};
    use crate::store::{ErrorClass, FallbackOutcome, RunRecord, Stage};

    /// The next finished run the dispatcher sends the recorder.
    async fn next_run(rx: &mut mpsc::Receiver<Recording>) -> RunRecord {
        loop {
            match rx.recv().await.unwrap() {
                Recording::Run(r) => return r,
                Recording::Chain(mut runs) => return runs.remove(0),
                Recording::Disabled { .. } => {}
            }
        }
    }

    /// Fails its first two tries.
    struct FlakyTwice;

    #[async_trait]
    impl Listener for FlakyTwice {
        test_identity!("flaky", "fails twice", ["message"]);
        async fn handle(&self, _: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
            if ctx.attempt <= 2 {
                Err(ListenerError::transient("not yet"))
            } else {
                Ok(Vec::new())
            }
        }
    }

    /// Always succeeds.
    struct Fine;

    #[async_trait]
    impl Listener for Fine {
        test_identity!("fine", "always succeeds", ["message"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            Ok(Vec::new())
        }
    }

    /// Always fails permanently.
    struct Broken;

    #[async_trait]
    impl Listener for Broken {
        test_identity!("broken", "fails for good", ["message"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            Err(ListenerError::permanent("cannot handle this"))
        }
    }

    fn dispatcher(
        listener: Arc<dyn Listener>,
        retries: u32,
    ) -> (Dispatcher, mpsc::Receiver<Recording>) {
        let (tx, rx) = mpsc::channel(16);
        let settings = DispatcherSettings {
            max_concurrent: 2,
            timeout: Duration::from_secs(5),
            org: "o".into(),
            bot_user_id: None,
            bot: None,
            stop: CancellationToken::new(),
            retry: RetryPolicy {
                max_attempts: retries + 1,
                initial_delay: Duration::from_secs(10),
                backoff_coefficient: 1.0,
                max_delay: Duration::from_secs(10),
            },
            breaker: BreakerSettings {
                failure_threshold: 0,
                ..BreakerSettings::default()
            },
            partitioner: Partitioner::single(),
            filters: Arc::new(Filters::new(&crate::config::Config::default())),
        };
        let d = Dispatcher::new(
            vec![Instance::plain(listener)],
            settings,
            tx,
            Arc::default(),
            Arc::default(),
        );
        (d, rx)
    }

    fn message(id: i64) -> StoredEvent {
        let event = Event::parse(&format!(
            r#"{{"type":"message","id":{id},"message":{{"id":{id},"sender_id":1,"display_recipient":"g","subject":"t","timestamp":1,"content":"x"}}}}"#
        ))
        .unwrap();
        StoredEvent {
            inbox_id: id,
            event,
            received_at: chrono::Utc::now(),
        }
    }

    /// [`message`] `id`, in a topic of its own (a lane of its own).
    fn message_in_own_topic(id: i64) -> StoredEvent {
        let mut stored = message(id);
        stored.event = Event::parse(&format!(
            r#"{{"type":"message","id":{id},"message":{{"id":{id},"sender_id":1,"display_recipient":"g","subject":"t{id}","timestamp":1,"content":"x"}}}}"#
        ))
        .unwrap();
        stored
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_after_the_jittered_delay() {
        let (d, mut rx) = dispatcher(Arc::new(FlakyTwice), 3);
        let start = tokio::time::Instant::now();
        d.dispatch(message(1), &[]).await;
        let record = next_run(&mut rx).await;
        let waited = start.elapsed();
        assert!(record.success);
        assert_eq!(record.attempts, 3);
        assert!(record.dead_letter.is_none());
        // Two waits of 10 s each, jittered to [5 s, 15 s).
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(30),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_keeps_its_own_retry_policy_and_counts_failures_by_class() {
        let (tx, mut rx) = mpsc::channel(16);
        let (template, _) = dispatcher(Arc::new(FlakyTwice), 5);
        let settings = DispatcherSettings::clone(&current(&template.roster).settings);
        let mut instance = Instance::plain(Arc::new(FlakyTwice));
        instance.retry = Some(RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            max_delay: Duration::from_secs(1),
        });
        let d = Dispatcher::new(vec![instance], settings, tx, Arc::default(), Arc::default());
        d.dispatch(message(1), &[]).await;
        let record = next_run(&mut rx).await;
        // The instance's 2 tries, not the daemon's 6.
        assert_eq!(record.attempts, 2);
        assert!(record.dead_letter.is_some());
        let text = d.state.metrics.render();
        assert!(
            text.contains(r#"zulip_event_listeners_listener_failures_total{class="transient",listener="flaky"} 2"#),
            "{text}"
        );
        d.tracker.close();
        d.tracker.wait().await;
        assert!(
            text.contains(r#"zulip_event_listeners_listener_runs_in_flight{listener="flaky"}"#),
            "{text}"
        );
        assert_eq!(
            current(&d.roster).slots[0].handles.instance.in_flight.get(),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finished_runs_waiting_for_the_recorder_hold_back_new_ones() {
        // The recorder takes nothing: its channel (16) fills up, and the
        // runs finished behind it keep their admission (2 × 16).
        let (d, mut rx) = dispatcher(Arc::new(Fine), 0);
        let bound = 2 * ADMISSION_FACTOR + 16;
        let mut dispatched = 0;
        let flood = async {
            for id in 1..=200 {
                d.dispatch(message_in_own_topic(id), &[]).await;
                dispatched += 1;
            }
        };
        let blocked = tokio::time::timeout(Duration::from_secs(60), flood).await;
        assert!(blocked.is_err(), "dispatch waits for the recorder");
        assert!(
            dispatched <= bound,
            "{dispatched} runs admitted, bound {bound}"
        );

        // Once the recorder takes records, dispatch goes on.
        let recorded = tokio::spawn(async move {
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
            }
            n
        });
        d.dispatch(message_in_own_topic(1000), &[]).await;
        d.tracker.close();
        d.tracker.wait().await;
        drop(d);
        assert_eq!(recorded.await.unwrap(), dispatched + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_failure_is_dead_lettered_with_its_attempt_count() {
        let (d, mut rx) = dispatcher(Arc::new(FlakyTwice), 1);
        d.dispatch(message(1), &[]).await;
        let record = next_run(&mut rx).await;
        assert!(!record.success);
        assert_eq!(record.attempts, 2);
        let cause = record.dead_letter.expect("dead-lettered");
        assert_eq!(
            (cause.stage, cause.class),
            (Stage::Run, ErrorClass::Transient)
        );
        assert!(cause.first_failed_at <= record.finished_at);
        assert_eq!(record.error.as_deref(), Some("not yet"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let (d, mut rx) = dispatcher(Arc::new(Broken), 5);
        let start = tokio::time::Instant::now();
        d.dispatch(message(1), &[]).await;
        let record = next_run(&mut rx).await;
        assert_eq!(record.attempts, 1);
        let cause = record.dead_letter.expect("dead-lettered");
        assert_eq!(cause.class, ErrorClass::Permanent);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_listener_skips_runs_and_keeps_them_for_replay() {
        let (d, mut rx) = dispatcher(Arc::new(FlakyTwice), 0);
        d.control().set_disabled("flaky", Some("by test".into()));
        d.dispatch(message(1), &[]).await;
        let record = next_run(&mut rx).await;
        assert_eq!(record.attempts, 0);
        let cause = record.dead_letter.expect("kept as a dead letter");
        assert_eq!(cause.class, ErrorClass::Circuit);
        assert!(record.error.unwrap().contains("disabled (by test)"));
        d.control().set_disabled("flaky", None);
        assert!(d.control().disabled().is_empty());
    }

    /// Remembers the `fallback_of` of every run it gets.
    #[derive(Default)]
    struct Seer {
        seen: std::sync::Mutex<Vec<Option<crate::listeners::FallbackOf>>>,
    }

    #[async_trait]
    impl Listener for Seer {
        test_identity!("seer", "takes what others fail", ["message"]);
        async fn handle(&self, _: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
            let of = ctx.fallback_of.as_deref().cloned();
            self.seen.lock().unwrap().push(of);
            Ok(Vec::new())
        }
    }

    /// A dispatcher over `primary` (with `seer` as its fallback) and `seer`.
    fn with_fallback(
        primary: Arc<dyn Listener>,
        seer: Arc<Seer>,
    ) -> (Dispatcher, mpsc::Receiver<Recording>) {
        let (tx, rx) = mpsc::channel(16);
        let (template, _) = dispatcher(Arc::new(Fine), 0);
        let settings = DispatcherSettings::clone(&current(&template.roster).settings);
        let mut first = Instance::plain(primary);
        first.fallback = Some("seer".into());
        let instances = vec![first, Instance::plain(seer)];
        let d = Dispatcher::new(instances, settings, tx, Arc::default(), Arc::default());
        (d, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_last_failure_is_handed_to_the_fallback_and_both_runs_are_sent_together() {
        // Arrange: a listener that fails for good, with a fallback.
        let seer = Arc::new(Seer::default());
        let (d, mut rx) = with_fallback(Arc::new(Broken), seer.clone());

        // Act
        d.dispatch(message(1), &[]).await;
        let Some(Recording::Chain(chain)) = rx.recv().await else {
            panic!("expected a chain")
        };

        // Assert: the primary's dead letter names the fallback and how it
        // ended; the fallback's run is its own, once, with the failure.
        assert_eq!(chain.len(), 2);
        assert!(chain[0].dead_letter.is_some() && !chain[0].success);
        let handed_to = chain[0].fallback.handed_to.clone();
        assert_eq!(handed_to, Some((Arc::from("seer"), FallbackOutcome::RanOk)));
        assert_eq!(&*chain[1].listener, "seer");
        assert!(chain[1].success && chain[1].dead_letter.is_none());
        assert_eq!(chain[1].fallback.handed_from.as_deref(), Some("broken"));
        let seen = seer.seen.lock().unwrap().clone();
        let of = seen[0].clone().unwrap();
        assert_eq!(seen.len(), 1, "the fallback gets no run of its own");
        assert_eq!(
            (of.listener.as_str(), of.class.as_str(), of.error.as_str()),
            ("broken", "permanent", "cannot handle this")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_listener_hands_its_events_straight_to_its_fallback() {
        let seer = Arc::new(Seer::default());
        let (d, mut rx) = with_fallback(Arc::new(Fine), seer.clone());
        d.control().set_disabled("fine", Some("by test".into()));

        d.dispatch(message(1), &[]).await;
        let Some(Recording::Chain(chain)) = rx.recv().await else {
            panic!("expected a chain")
        };

        assert_eq!(chain[0].attempts, 0);
        assert!(chain[0].dead_letter.is_some());
        let of = seer.seen.lock().unwrap()[0].clone().unwrap();
        assert_eq!(of.class, "disabled");
        assert!(of.error.contains("disabled (by test)"), "{}", of.error);
        d.control().set_disabled("fine", None);
        d.dispatch(message(2), &[]).await;
        let Some(Recording::Run(run)) = rx.recv().await else {
            panic!("expected a single run")
        };
        assert_eq!((&*run.listener, run.success), ("fine", true));
        assert_eq!(seer.seen.lock().unwrap().len(), 1);
    }

    /// Counts how many of its runs execute at once.
    #[derive(Default)]
    struct Concurrency {
        now: std::sync::atomic::AtomicUsize,
        max: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Listener for Concurrency {
        test_identity!("concurrency", "counts concurrent runs", ["message"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.max.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.now.fetch_sub(1, SeqCst);
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_run_starts_without_a_slot_once_stop_is_cancelled() {
        // Arrange: two slots, and twenty runs in their own lanes, two
        // running and eighteen waiting for a slot.
        let listener = Arc::new(Concurrency::default());
        let (d, mut rx) = dispatcher(listener.clone(), 0);
        let recorded = tokio::spawn(async move {
            let mut n = 0;
            while let Some(r) = rx.recv().await {
                n += usize::from(matches!(r, Recording::Run(_)));
            }
            n
        });
        for id in 0..20 {
            d.dispatch(message_in_own_topic(id), &[]).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;

        // Act: shutdown begins while runs wait for a slot.
        d.stop.cancel();
        let left = d.drain(Duration::from_secs(5)).await;

        // Assert: the waiting runs never started; only the two running
        // ones finished and were recorded.
        let max = listener.max.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(left, 0);
        assert!(max <= 2, "{max} runs at once with max_concurrent = 2");
        assert_eq!(recorded.await.unwrap(), 2);
    }

    /// Runs every message-changing type; message runs are slow.
    struct SlowMessages;

    #[async_trait]
    impl Listener for SlowMessages {
        test_identity!(
            "slow_messages",
            "takes a while with messages",
            ["message", "update_message", "delete_message"]
        );
        async fn handle(&self, e: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            if e.event_type() == "message" {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_edit_and_a_deletion_without_a_conversation_wait_for_their_message() {
        // Arrange: Zulip puts no topic in a content edit and no
        // participants in a direct message's deletion, so their ordering
        // keys are the message id, not the message's conversation.
        let (d, mut rx) = dispatcher(Arc::new(SlowMessages), 0);
        let edit = Event::parse(r#"{"type":"update_message","user_id":1,"edit_timestamp":2,"message_id":1,"message_ids":[1],"content":"y","rendered_content":"<p>y</p>","flags":[],"id":2}"#).unwrap();
        let delete = Event::parse(
            r#"{"type":"delete_message","message_type":"private","message_id":1,"id":3}"#,
        )
        .unwrap();

        // Act: the message, then its edit and deletion, dispatched at once.
        d.dispatch(message(1), &[]).await;
        for (inbox_id, event) in [(2, edit), (3, delete)] {
            d.dispatch(
                StoredEvent {
                    inbox_id,
                    event,
                    received_at: chrono::Utc::now(),
                },
                &[],
            )
            .await;
        }

        // Assert: recorded in that order, the slow message first.
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(next_run(&mut rx).await.inbox_id);
        }
        assert_eq!(order, vec![1, 2, 3]);
    }

    /// Never finishes.
    struct Hangs;

    #[async_trait]
    impl Listener for Hangs {
        test_identity!("hangs", "never answers", ["message"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_that_runs_out_of_time_can_name_the_runs_it_abandons() {
        // Arrange: two events whose runs hang.
        let (d, _rx) = dispatcher(Arc::new(Hangs), 0);
        for id in [7, 8] {
            d.dispatch(message_in_own_topic(id), &[]).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;

        // Act / Assert: what the drain's warning names.
        assert_eq!(d.in_flight_by_listener(), "hangs (2)");
        assert_eq!(d.progress.unrecorded(DRAIN_NAMED_EVENTS), "7, 8");
        assert_eq!(d.progress.unrecorded(1), "7, … (2 in all)");
        assert_eq!(d.drain(Duration::from_secs(1)).await, 2);
    }

    /// Succeeds once a permit is added to its semaphore.
    struct Held(Arc<Semaphore>);

    #[async_trait]
    impl Listener for Held {
        test_identity!("held", "waits for a permit", ["message"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            let _permit = self.0.acquire().await;
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn after_a_replace_new_events_go_to_the_new_set_and_a_started_run_finishes_on_the_old() {
        let gate = Arc::new(Semaphore::new(0));
        let (d, mut rx) = dispatcher(Arc::new(Held(gate.clone())), 0);
        d.dispatch(message_in_own_topic(1), &[]).await;
        let control = d.control();
        control.replace(crate::dispatch::Replacement {
            instances: &[Instance::plain(Arc::new(Broken))],
            rebuilt: &[],
            retry: current(&d.roster).settings.retry,
            filters: None,
            disabled: &[],
        });
        assert_eq!(control.names(), vec!["broken".to_owned()]);

        d.dispatch(message_in_own_topic(2), &[]).await;
        let second = next_run(&mut rx).await;
        gate.add_permits(1);
        let first = next_run(&mut rx).await;

        assert_eq!(
            (&*second.listener, second.inbox_id, second.success),
            ("broken", 2, false)
        );
        assert_eq!(
            (&*first.listener, first.inbox_id, first.success),
            ("held", 1, true)
        );
    }

    #[tokio::test]
    async fn an_instance_a_replace_keeps_keeps_its_disable_and_an_added_one_takes_the_stores() {
        let (d, _rx) = dispatcher(Arc::new(Fine), 0);
        let control = d.control();
        control.set_disabled("fine", Some("by hand".to_owned()));
        control.replace(crate::dispatch::Replacement {
            instances: &[
                Instance::plain(Arc::new(Fine)),
                Instance::plain(Arc::new(Broken)),
            ],
            rebuilt: &["fine".to_owned()],
            retry: current(&d.roster).settings.retry,
            filters: None,
            disabled: &[("broken".to_owned(), "in the store".to_owned())],
        });
        let mut disabled = control.disabled();
        disabled.sort();
        assert_eq!(
            disabled,
            vec![
                ("broken".to_owned(), "in the store".to_owned()),
                ("fine".to_owned(), "by hand".to_owned())
            ]
        );
    }
}
