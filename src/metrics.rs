//! [`Metrics`]: one non-global Prometheus registry with typed handles.
//!
//! Naming: every metric starts with `zulip_event_listeners_`, is
//! snake_case, carries its unit (`_seconds`, `_bytes`), and counters end in
//! `_total`. Labels are bounded: listener names (from the configuration),
//! run outcomes, poll error reasons, a fixed list of Zulip event types
//! (anything else is `other`), never ids or free text.

mod buffers;
mod discards;
mod ingest;
mod instances;
mod labels;
mod organizations;
mod runs;
mod worker;

pub(crate) use buffers::BufferMetrics;
pub(crate) use discards::{own_message, scoped, DiscardMetrics, DiscardReason};
pub(crate) use ingest::IngestMetrics;
pub(crate) use instances::{CircuitState, FailureClass, InstanceHandles};
pub(crate) use labels::type_label;
pub(crate) use labels::Outcome;
pub(crate) use organizations::render_organizations;
pub(crate) use runs::RunHandles;
pub(crate) use worker::WorkerMetrics;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus::{
    CounterVec, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[cfg(target_os = "linux")]
mod process;

const PREFIX: &str = "zulip_event_listeners";

/// Every metric the daemon exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events received, by type.
    pub events_received: IntCounterVec,
    /// Listener runs, by listener and outcome.
    pub events_processed: IntCounterVec,
    /// Listener run durations.
    pub run_duration: HistogramVec,
    /// Now minus the event's own timestamp, at intake.
    pub queue_lag: Histogram,
    /// Listener runs in flight.
    pub runs_in_flight: IntGauge,
    /// Stored events whose runs are not all recorded.
    pub inbox_backlog: IntGauge,
    /// Completed polls.
    pub polls: IntCounter,
    /// Failed requests to Zulip, by reason.
    pub poll_errors: IntCounterVec,
    /// Waits under Zulip's rate limit, by reason (`paced`, `retry_after`).
    pub rate_limit_waits: IntCounterVec,
    /// Seconds spent in those waits, by reason.
    pub rate_limit_wait_seconds: CounterVec,
    /// Requests left in the poll's rate-limit budget (-1 until Zulip said).
    pub rate_limit_remaining: IntGauge,
    /// Requests the poll's rate-limit window allows (-1 until Zulip said).
    pub rate_limit_limit: IntGauge,
    /// Suspends and clock jumps that made the poll loop start afresh.
    pub clock_jumps: IntCounter,
    /// Queues registered.
    pub registrations: IntCounter,
    /// Messages recovered with `GET /messages`.
    pub backfilled_messages: IntCounter,
    /// Queues lost (gaps in the event stream).
    pub queue_gaps: IntCounter,
    /// Seconds between the last successful poll and the re-registration, for the last gap.
    pub last_gap_seconds: Gauge,
    /// The idle lifetime Zulip granted the current queue, in seconds.
    pub queue_lifetime_seconds: IntGauge,
    /// Duplicate events skipped (already in the inbox).
    pub duplicates: IntCounter,
    /// Elements of `GET /events` kept in quarantine, by reason
    /// (`invalid_utf8`, `repeated_id`, `no_id`, `not_an_object`, `not_json`).
    pub events_quarantined: IntCounterVec,
    /// Database transaction durations, by operation.
    pub db_write_seconds: HistogramVec,
    /// Seconds since the last successful poll (heartbeat or events).
    pub last_poll_age_seconds: Gauge,
    /// 1 when memory backpressure pauses polling.
    pub memory_backpressure: IntGauge,
    /// Build information.
    pub build_info: IntGaugeVec,
    /// Failures by class and runs in flight, per listener instance.
    pub instances: instances::InstanceMetrics,
    /// Events discarded, by listener, reason and intent.
    pub discards: DiscardMetrics,
    /// The bounded queues' fill against their capacity.
    pub buffers: BufferMetrics,
    /// A distributed worker's deliveries, acks and partitions.
    pub worker: WorkerMetrics,
    /// The distributed ingest's (issue 16).
    pub(crate) ingest: IngestMetrics,
    /// Replies, by listener and outcome (`sent`, `deduplicated`,
    /// `dead_lettered`, `retried`).
    pub replies: IntCounterVec,
    /// Open rows of the reply outbox (pending or sending).
    pub reply_outbox_open: IntGauge,
    /// Requests refused for a missing or wrong admin token, by route
    /// (`admin`, `health` for `/health` and `/ready`, `metrics`).
    pub http_unauthorized: IntCounterVec,
    /// Configuration reloads (SIGHUP), by result (`ok`, `failed`).
    pub config_reloads: IntCounterVec,
    /// Tap lines lost because their subscriber did not keep up.
    pub tap_lines_dropped: IntCounter,
    /// (runs, failed runs), for the health endpoint's error rate.
    run_counts: Arc<(AtomicU64, AtomicU64)>,
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    ///
    /// # Panics
    ///
    /// Never in practice: names are static and unique (a start-up invariant
    /// covered by the tests).
    pub fn new() -> Metrics {
        Metrics::build(None)
    }

    /// The metrics of organization `org`, one of several in the process:
    /// each carries the label `org="<org>"` (bounded: the configured
    /// names). The process metrics are the daemon's, not an organization's.
    pub fn for_organization(org: &str) -> Metrics {
        Metrics::build(Some(org))
    }

    fn build(org: Option<&str>) -> Metrics {
        let labels = org.map(|o| std::iter::once(("org".to_owned(), o.to_owned())).collect());
        // Only a prefix or labels that are not valid fail; neither is given.
        let registry = Registry::new_custom(None, labels).expect("a valid `org` label");
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("valid metric definition");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let m = Metrics {
            events_received: reg!(IntCounterVec::new(
                Opts::new(
                    name("events_received_total"),
                    "Events received from Zulip or a file, by type"
                ),
                &["type"]
            )),
            events_processed: reg!(IntCounterVec::new(
                Opts::new(
                    name("events_processed_total"),
                    "Listener runs by listener and outcome"
                ),
                &["listener", "outcome"]
            )),
            run_duration: reg!(HistogramVec::new(
                HistogramOpts::new(
                    name("listener_run_duration_seconds"),
                    "Duration of listener runs"
                )
                .buckets(latency_buckets.clone()),
                &["listener"]
            )),
            queue_lag: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    name("queue_lag_seconds"),
                    "Time from an event's own timestamp to its intake"
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0
                ])
            )),
            runs_in_flight: reg!(IntGauge::new(
                name("runs_in_flight"),
                "Listener runs in flight"
            )),
            inbox_backlog: reg!(IntGauge::new(
                name("inbox_backlog"),
                "Stored events whose listener runs are not all recorded"
            )),
            polls: reg!(IntCounter::new(
                name("polls_total"),
                "Completed GET /events polls"
            )),
            poll_errors: reg!(IntCounterVec::new(
                Opts::new(
                    name("poll_errors_total"),
                    "Failed requests to Zulip, by reason"
                ),
                &["reason"]
            )),
            rate_limit_waits: reg!(IntCounterVec::new(
                Opts::new(
                    name("rate_limit_waits_total"),
                    "Waits under Zulip's rate limit: polls spaced out as the budget ran low (paced) or a 429's Retry-After (retry_after)"
                ),
                &["reason"]
            )),
            rate_limit_wait_seconds: reg!(CounterVec::new(
                Opts::new(
                    name("rate_limit_wait_seconds_total"),
                    "Seconds spent in rate-limit waits, by reason"
                ),
                &["reason"]
            )),
            rate_limit_remaining: reg!(IntGauge::new(
                name("rate_limit_remaining"),
                "Requests left in the rate-limit budget the last GET /events answer reported (-1 until one did)"
            )),
            rate_limit_limit: reg!(IntGauge::new(
                name("rate_limit_limit"),
                "Requests per window the last GET /events answer's X-RateLimit-Limit allowed (-1 until one said)"
            )),
            clock_jumps: reg!(IntCounter::new(
                name("clock_jumps_total"),
                "Suspends or wall-clock jumps after which the poll loop aborted its poll and reset its backoff"
            )),
            registrations: reg!(IntCounter::new(
                name("queue_registrations_total"),
                "Event queues registered"
            )),
            backfilled_messages: reg!(IntCounter::new(
                name("backfilled_messages_total"),
                "Messages recovered with GET /messages after a registration"
            )),
            queue_gaps: reg!(IntCounter::new(
                name("queue_gaps_total"),
                "Event queues lost (gaps in the stream)"
            )),
            last_gap_seconds: reg!(Gauge::new(
                name("last_gap_seconds"),
                "Length of the last gap: last successful poll to re-registration"
            )),
            queue_lifetime_seconds: reg!(IntGauge::new(
                name("queue_lifetime_seconds"),
                "Idle lifetime Zulip granted the event queue"
            )),
            duplicates: reg!(IntCounter::new(
                name("duplicate_events_total"),
                "Events skipped because they were already stored"
            )),
            events_quarantined: reg!(IntCounterVec::new(
                Opts::new(
                    name("events_quarantined_total"),
                    "Elements of GET /events kept in event_listeners_quarantine, by reason"
                ),
                &["reason"]
            )),
            db_write_seconds: reg!(HistogramVec::new(
                HistogramOpts::new(
                    name("database_write_duration_seconds"),
                    "Duration of database write transactions"
                )
                .buckets(latency_buckets),
                &["operation"]
            )),
            last_poll_age_seconds: reg!(Gauge::new(
                name("last_poll_age_seconds"),
                "Seconds since the last successful poll (events or heartbeat)"
            )),
            memory_backpressure: reg!(IntGauge::new(
                name("memory_backpressure"),
                "1 while polling is paused because resident memory is above the threshold"
            )),
            build_info: reg!(IntGaugeVec::new(
                Opts::new(name("build_info"), "Build information; always 1"),
                &["version"]
            )),
            instances: instances::InstanceMetrics::register(&registry, name)
                .expect("valid, unique metric definitions"),
            discards: DiscardMetrics::register(&registry, name)
                .expect("valid, unique metric definitions"),
            buffers: BufferMetrics::register(&registry, name)
                .expect("valid, unique metric definitions"),
            worker: WorkerMetrics::register(&registry, name)
                .expect("valid, unique metric definitions"),
            ingest: IngestMetrics::register(&registry, name)
                .expect("valid, unique metric definitions"),
            replies: reg!(IntCounterVec::new(
                Opts::new(
                    name("replies_total"),
                    "Replies posted to Zulip, by listener and outcome"
                ),
                &["listener", "outcome"]
            )),
            reply_outbox_open: reg!(IntGauge::new(
                name("reply_outbox_open"),
                "Replies in the outbox not yet sent or failed"
            )),
            http_unauthorized: reg!(IntCounterVec::new(
                Opts::new(
                    name("http_unauthorized_total"),
                    "HTTP requests refused for a missing or wrong admin token, by route"
                ),
                &["route"]
            )),
            config_reloads: reg!(IntCounterVec::new(
                Opts::new(name("config_reloads_total"), "Configuration reloads, by result"),
                &["result"]
            )),
            tap_lines_dropped: reg!(IntCounter::new(
                name("tap_lines_dropped_total"),
                "Tap lines dropped because their subscriber did not keep up (events are never dropped)"
            )),
            run_counts: Arc::default(),
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.rate_limit_remaining.set(-1);
        m.rate_limit_limit.set(-1);
        #[cfg(target_os = "linux")]
        if org.is_none() {
            // Fails only if registered twice; then the first one serves.
            let _ = m.registry.register(Box::new(process::Process::new(PREFIX)));
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        encode(&self.registry.gather())
    }

    /// Every metric family, gathered.
    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

/// The Prometheus text of `families`.
fn encode(families: &[prometheus::proto::MetricFamily]) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(families, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_types_share_one_label() {
        assert_eq!(type_label("message"), "message");
        assert_eq!(type_label("never_seen_before"), "other");
    }

    #[test]
    fn runs_are_counted_by_listener_and_outcome_and_rendered() {
        let m = Metrics::new();
        m.record_run("a", Outcome::Success, 0.01);
        m.record_run("a", Outcome::Timeout, 1.0);
        m.record_run("b", Outcome::Skipped, 0.0);
        assert_eq!(m.run_totals(), (2, 1));
        let text = m.render();
        assert!(
            text.contains(
                r#"zulip_event_listeners_events_processed_total{listener="a",outcome="timeout"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("zulip_event_listeners_build_info"));
    }
}
