//! [`Figures`]: what `top` shows, computed from two [`Snapshot`]s of the
//! daemon's `/metrics` (and `/health`): rates from counter deltas, p50/p99
//! from histogram bucket deltas, gauges as the newer scrape says them.
//! Pure, so the tests feed it scrapes written by hand.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::exposition::{Exposition, Sample};
use crate::metrics::CircuitState;

/// The prefix of every metric the daemon exports.
const PREFIX: &str = "zulip_event_listeners_";

/// One scrape of the daemon.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// `/metrics`.
    pub(crate) metrics: Exposition,
    /// `/health`, when it answered with its report.
    pub(crate) health: Option<HealthView>,
}

/// What `top` reads of `/health`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct HealthView {
    /// starting, healthy, degraded or unhealthy.
    pub(crate) status: String,
    /// Seconds since the last successful poll (of the first organization).
    #[serde(default)]
    pub(crate) seconds_since_last_poll: Option<f64>,
    /// Each organization.
    #[serde(default)]
    pub(crate) organizations: Vec<OrganizationView>,
}

/// One organization in `/health`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct OrganizationView {
    /// Its name.
    pub(crate) name: String,
    /// Seconds since its last successful poll.
    #[serde(default)]
    pub(crate) seconds_since_last_poll: Option<f64>,
}

/// One listener instance's figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InstanceFigures {
    /// Its organization (empty with one organization).
    pub(crate) org: String,
    /// Its name.
    pub(crate) listener: String,
    /// Tries per second (successes, failures, timeouts); `None` before a second scrape.
    pub(crate) runs_per_s: Option<f64>,
    /// Failed tries per second.
    pub(crate) failures_per_s: Option<f64>,
    /// Median run duration in the interval, seconds; `None` when nothing ran.
    pub(crate) p50: Option<f64>,
    /// 99th percentile run duration in the interval, seconds.
    pub(crate) p99: Option<f64>,
    /// Runs in flight.
    pub(crate) in_flight: Option<i64>,
    /// Runs waiting to retry.
    pub(crate) retries_waiting: Option<i64>,
    /// The circuit.
    pub(crate) circuit: Option<CircuitState>,
    /// Dead letters pending (`None` when the daemon does not export them).
    pub(crate) dead_letters: Option<i64>,
}

/// One organization's intake figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntakeFigures {
    /// The organization (empty with one organization).
    pub(crate) org: String,
    /// Events received per second.
    pub(crate) events_per_s: Option<f64>,
    /// Median queue lag (event time to intake) in the interval, seconds.
    pub(crate) lag_p50: Option<f64>,
    /// Stored events whose runs are not all recorded.
    pub(crate) backlog: Option<i64>,
    /// Seconds since the last successful poll; `None` before the first.
    pub(crate) last_poll_age: Option<f64>,
    /// Requests left in the rate-limit budget; `None` until Zulip said.
    pub(crate) rate_limit_remaining: Option<i64>,
    /// Completed polls per second.
    pub(crate) polls_per_s: Option<f64>,
    /// Failed requests to Zulip per second.
    pub(crate) poll_errors_per_s: Option<f64>,
}

/// Everything one frame shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Figures {
    /// `/health`'s status, if it answered.
    pub(crate) status: Option<String>,
    /// Each listener instance, by organization and name.
    pub(crate) instances: Vec<InstanceFigures>,
    /// Each organization's intake.
    pub(crate) intake: Vec<IntakeFigures>,
}

impl Figures {
    /// The figures of `cur`, with rates and percentiles over the `elapsed`
    /// since `prev` (none without `prev`).
    pub(crate) fn between(prev: Option<&Snapshot>, cur: &Snapshot, elapsed: Duration) -> Figures {
        let pair = Pair {
            prev: prev.map(|p| &p.metrics),
            cur: &cur.metrics,
            secs: elapsed.as_secs_f64(),
        };
        let instances = pair
            .instances()
            .into_iter()
            .map(|(org, listener)| pair.instance(org, listener))
            .collect();
        let intake = pair
            .orgs()
            .into_iter()
            .map(|org| {
                let mut f = pair.intake(org);
                f.last_poll_age = last_poll_age(cur.health.as_ref(), &f.org)
                    .or(f.last_poll_age.filter(|_| cur.health.is_none()));
                f
            })
            .collect();
        Figures {
            status: cur.health.as_ref().map(|h| h.status.clone()),
            instances,
            intake,
        }
    }
}

/// The last poll's age as `/health` says it (it knows "never").
fn last_poll_age(health: Option<&HealthView>, org: &str) -> Option<f64> {
    let h = health?;
    if org.is_empty() {
        return h.seconds_since_last_poll;
    }
    h.organizations
        .iter()
        .find(|o| o.name == org)
        .and_then(|o| o.seconds_since_last_poll)
}

/// Two scrapes and the seconds between them.
struct Pair<'a> {
    prev: Option<&'a Exposition>,
    cur: &'a Exposition,
    secs: f64,
}

fn org_of(s: &Sample) -> &str {
    s.label("org").unwrap_or("")
}

fn metric(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl Pair<'_> {
    /// (organization, listener) of every instance the daemon exports.
    fn instances(&self) -> BTreeSet<(String, String)> {
        ["listener_runs_in_flight", "events_processed_total"]
            .iter()
            .flat_map(|n| self.cur.named(&metric(n)))
            .filter_map(|s| Some((org_of(s).to_owned(), s.label("listener")?.to_owned())))
            .collect()
    }

    /// Every organization with intake metrics.
    fn orgs(&self) -> BTreeSet<String> {
        self.cur
            .named(&metric("polls_total"))
            .map(|s| org_of(s).to_owned())
            .collect()
    }

    /// The per-second increase of the sum `keep` keeps of counter `name`.
    fn rate(&self, name: &str, keep: impl Fn(&Sample) -> bool + Copy) -> Option<f64> {
        let prev = self.prev?;
        let name = metric(name);
        // A labelled counter has no sample before its first increment.
        let now = self.cur.sum(&name, keep).unwrap_or(0.0);
        let before = prev.sum(&name, keep).unwrap_or(0.0);
        // A smaller total means the daemon restarted: all of it is new.
        let delta = if now >= before { now - before } else { now };
        (self.secs > 0.0).then(|| delta / self.secs)
    }

    /// Quantile `q` of histogram `name` over the interval.
    fn quantile(&self, name: &str, q: f64, keep: impl Fn(&Sample) -> bool + Copy) -> Option<f64> {
        let prev = self.prev?;
        let name = metric(name);
        let now = self.cur.buckets(&name, keep);
        let before = prev.buckets(&name, keep);
        let mut delta: Vec<(f64, f64)> = now
            .iter()
            .map(|(le, c)| {
                let b = before.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
                (*le, c - b)
            })
            .collect();
        if delta.iter().any(|(_, c)| *c < 0.0) {
            delta = now; // restarted: the newer scrape is the interval
        }
        quantile(q, &delta)
    }

    fn gauge(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        self.cur.sum(&metric(name), keep)
    }

    fn instance(&self, org: String, listener: String) -> InstanceFigures {
        let this = |s: &Sample| org_of(s) == org && s.label("listener") == Some(&listener);
        let tries = |s: &Sample| {
            this(s) && matches!(s.label("outcome"), Some("success" | "failure" | "timeout"))
        };
        let int = |name: &str| self.gauge(name, this).map(|v| v as i64);
        InstanceFigures {
            runs_per_s: self.rate("events_processed_total", tries),
            failures_per_s: self.rate("listener_failures_total", this),
            p50: self.quantile("listener_run_duration_seconds", 0.5, this),
            p99: self.quantile("listener_run_duration_seconds", 0.99, this),
            in_flight: int("listener_runs_in_flight"),
            retries_waiting: int("listener_retries_waiting"),
            circuit: int("listener_circuit_state").and_then(CircuitState::from_value),
            dead_letters: int("deadletters_pending"),
            org,
            listener,
        }
    }

    fn intake(&self, org: String) -> IntakeFigures {
        let this = |s: &Sample| org_of(s) == org;
        IntakeFigures {
            events_per_s: self.rate("events_received_total", this),
            lag_p50: self.quantile("queue_lag_seconds", 0.5, this),
            backlog: self.gauge("inbox_backlog", this).map(|v| v as i64),
            last_poll_age: self.gauge("last_poll_age_seconds", this),
            rate_limit_remaining: self
                .gauge("rate_limit_remaining", this)
                .filter(|v| *v >= 0.0)
                .map(|v| v as i64),
            polls_per_s: self.rate("polls_total", this),
            poll_errors_per_s: self.rate("poll_errors_total", this),
            org,
        }
    }
}

/// Quantile `q` of cumulative `buckets` (upper bound, count), by linear
/// interpolation within the bucket it falls in, as Prometheus's
/// `histogram_quantile` does; `None` when nothing was observed. In the
/// `+Inf` bucket it is the largest finite bound.
pub(crate) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let width = count - below;
            let share = if width > 0.0 {
                (rank - below) / width
            } else {
                1.0
            };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}
