//! Metrics that tell filtered from lost: `events_discarded_total` by
//! listener, reason and intent, a stalled listener's gauges, the buffers'
//! fill; and the Grafana dashboard, every query of which must name a
//! metric the daemon exports.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use zulip_event_listeners::app::RunOptions;

use crate::support::fake_zulip::{FakeOptions, Fault, FaultPlan};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

/// A logger of `support` only, a responder and a listener that always
/// fails; user 66 blocked.
const CONFIG: &str = r#"
[listeners]
enabled = ["message_logger", "ops", "failing"]

[listeners.message_logger]
channels = ["support"]

[listeners.ops]
kind = "responder"
rate_limit_per_conversation = 100000
rules = [{ command = "!ping", reply = "pong" }]

[security]
blocked_users = [66]
"#;

/// [`CONFIG`] and a listener that hangs until its 5 s timeout.
fn with_hanging() -> String {
    CONFIG.replace(
        r#"enabled = ["message_logger", "ops", "failing"]"#,
        r#"enabled = ["message_logger", "ops", "failing", "hanging"]"#,
    ) + "[performance]\nhandler_timeout = 5\n"
}

const DISCARDED: &str = "zulip_event_listeners_events_discarded_total";

fn discarded(m: &Metrics, listener: &str, reason: &str) -> Option<(f64, String)> {
    m.samples
        .iter()
        .find(|s| {
            s.metric == DISCARDED
                && s.labels.get("listener") == Some(listener)
                && s.labels.get("reason") == Some(reason)
        })
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => panic!("{DISCARDED} is a counter"),
            };
            (v, s.labels.get("intentional").unwrap_or("").to_owned())
        })
}

async fn started(extra: &str) -> TestApp {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), extra).await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app
}

#[tokio::test]
async fn discards_are_counted_by_listener_and_reason_and_tell_filtered_from_lost() {
    let mut app = started(CONFIG).await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    for i in 0..3 {
        fake.send_channel_message(10, "a@example.com", "support", "t", &format!("s{i}"));
    }
    for i in 0..2 {
        fake.send_channel_message(10, "a@example.com", "general", "t", &format!("g{i}"));
    }
    fake.send_channel_message(66, "spam@example.com", "support", "t", "buy now");
    fake.send_channel_message(7, "ada@example.com", "support", "t", "!ping");
    assert!(
        eventually(WAIT, || async { !fake.sent_messages().is_empty() }).await,
        "the responder answers"
    );
    // 7 messages and the reply's echo, of which `failing` gets all but
    // the blocked sender's.
    assert!(
        eventually(WAIT, || async {
            let m = app.metrics().await;
            discarded(&m, "failing", "dead_lettered").is_some_and(|(v, _)| v == 7.0)
                && discarded(&m, "ops", "own_message").is_some()
        })
        .await,
        "every run is over"
    );
    let m = app.metrics().await;
    app.stop().await.expect("clean stop");
    drop(db);

    let t = "true".to_owned();
    let f = "false".to_owned();
    assert_eq!(
        discarded(&m, "message_logger", "filtered"),
        Some((2.0, t.clone())),
        "the two messages outside `support`"
    );
    for listener in ["message_logger", "ops", "failing"] {
        assert_eq!(
            discarded(&m, listener, "blocked_user"),
            Some((1.0, t.clone())),
            "user 66's message, once per listener that wanted it: {listener}"
        );
    }
    assert_eq!(
        discarded(&m, "ops", "own_message"),
        Some((1.0, t.clone())),
        "the echo of the responder's own reply"
    );
    assert_eq!(
        discarded(&m, "failing", "dead_lettered"),
        Some((7.0, f)),
        "every message it got failed for good: lost, not filtered"
    );
    assert_eq!(discarded(&m, "message_logger", "dead_lettered"), None);
    assert_eq!(discarded(&m, "ops", "filtered"), None);
}

#[tokio::test]
async fn a_hanging_listener_shows_in_flight_with_no_completion_and_the_buffers_their_capacity() {
    let mut app = started(&with_hanging()).await;
    let fake = app.fake.clone();
    let executing = "zulip_event_listeners_listener_in_flight";
    let completed = "zulip_event_listeners_listener_last_completion_timestamp_seconds";
    let before = app.metrics().await;
    let stamp = |m: &Metrics, listener: &str| m.sample(completed, &[("listener", listener)]);
    let hanging_before = stamp(&before, "hanging").expect("stamped at start");
    let failing_before = stamp(&before, "failing").expect("stamped at start");
    assert_eq!(
        before.sample(executing, &[("listener", "hanging")]),
        Some(0.0)
    );

    fake.send_channel_message(10, "a@example.com", "support", "t", "hello");
    let deadline = tokio::time::Instant::now() + WAIT;
    let during = loop {
        let m = app.metrics().await;
        if m.sample(executing, &[("listener", "hanging")]) == Some(1.0)
            && stamp(&m, "failing") > Some(failing_before)
        {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hanging run executes once the failing one completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        stamp(&during, "hanging"),
        Some(hanging_before),
        "no completion while it hangs"
    );
    assert_eq!(
        during.sample(executing, &[("listener", "failing")]),
        Some(0.0)
    );
    let capacity = "zulip_event_listeners_buffer_capacity";
    assert_eq!(
        during.sample(capacity, &[("buffer", "recorder_outcomes")]),
        Some(2048.0)
    );
    assert_eq!(
        during.sample(capacity, &[("buffer", "notices")]),
        Some(256.0)
    );
    assert_eq!(
        during.sample(capacity, &[("buffer", "intake_handoff")]),
        Some(1.0)
    );
    let slots = during
        .sample(capacity, &[("buffer", "run_slots")])
        .expect("the run slots");
    assert!(
        during
            .sample(
                "zulip_event_listeners_buffer_used",
                &[("buffer", "run_slots")]
            )
            .expect("used")
            >= 1.0,
        "the hanging run holds a slot of {slots}"
    );
    assert!(
        eventually(WAIT, || async {
            let m = app.metrics().await;
            m.sample(executing, &[("listener", "hanging")]) == Some(0.0)
                && stamp(&m, "hanging") > Some(hanging_before)
        })
        .await,
        "its timeout ends the try and stamps its completion"
    );
    app.stop().await.expect("clean stop");
}

/// Every `expr` of the dashboard, and its variables' queries.
fn dashboard_queries() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard");
    let json: Value = serde_json::from_str(&text).expect("dashboard JSON");
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&json, &mut out);
    out
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];

/// Aggregation operators, which may take their `by (…)` before the parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names a PromQL expression selects: identifiers outside label
/// matchers, ranges, strings and `by (…)`-style label lists that are not
/// functions, aggregations or keywords. `label_values(m, l)` names `m`.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        let mut in_string = false;
        while i < chars.len() {
            let c = chars[i];
            if in_string {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        i
    };
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        chars.get(j).copied().map(|c| (j, c))
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '"' {
            i = skip_group(i, '"', '"').max(i + 1);
        } else if c.is_ascii_digit() || c == '$' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._$".contains(chars[i]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(i);
            if word == "label_values" {
                if let Some((j, '(')) = next {
                    let inner: String = chars[j + 1..].iter().collect();
                    let metric = inner.split([',', ')']).next().unwrap_or("").trim();
                    names.push(metric.to_owned());
                    i = skip_group(j, '(', ')');
                }
            } else if AGGREGATIONS.contains(&word.as_str()) {
                // `sum by (l) (…)`: the clause, then the expression.
            } else if KEYWORDS.contains(&word.as_str()) {
                if let Some((j, '(')) = next {
                    i = skip_group(j, '(', ')');
                }
            } else if !matches!(next, Some((_, '('))) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_query_reader_finds_metrics_and_nothing_else() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, op) (rate(a_bucket{instance=~"$i", x="y{z}"}[5m])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        metric_names("(time() - max by (l) (b)) and on (l) (c > 0)"),
        ["b", "c"]
    );
    assert_eq!(metric_names("label_values(d, instance)"), ["d"]);
}

#[tokio::test]
async fn every_query_of_the_grafana_dashboard_names_a_metric_the_daemon_exports() {
    let mut app = started(CONFIG).await;
    let fake = app.fake.clone();
    // A 429 and a 500 on the event queue, so the waits and poll errors
    // have samples, as they have on a daemon that ran a while.
    fake.set_faults(FaultPlan {
        every: vec![
            (3, Fault::RateLimit { retry_after: 0.1 }),
            (4, Fault::ServerError),
        ],
        only_paths: Some(vec!["/events".to_owned()]),
    });
    fake.send_channel_message(10, "a@example.com", "general", "t", "filtered");
    fake.send_channel_message(7, "ada@example.com", "support", "t", "!ping");
    assert!(
        eventually(WAIT, || async {
            let m = app.metrics().await;
            let some = |name: &str| m.samples.iter().any(|s| s.metric == name);
            some("zulip_event_listeners_rate_limit_waits_total")
                && some("zulip_event_listeners_poll_errors_total")
                && m.samples
                    .iter()
                    .any(|s| s.metric == DISCARDED && s.labels.get("reason") == Some("own_message"))
        })
        .await,
        "the faults were met and the reply's echo came back"
    );
    fake.set_faults(FaultPlan::default());
    let text = reqwest::get(format!("http://{}/metrics", app.address()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a body");
    app.stop().await.expect("clean stop");

    let families: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let exported = |name: &str| {
        families.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| families.get(base) == Some(&"histogram"))
            })
    };
    let queries = dashboard_queries();
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let mut used = HashSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "a query that names no metric: {q}");
        for name in names {
            assert!(
                name.starts_with("zulip_event_listeners_"),
                "{name} is not one of the daemon's: {q}"
            );
            assert!(exported(&name), "{name} is not exported: {q}\n{text}");
            used.insert(name);
        }
    }
    for new in [
        DISCARDED,
        "zulip_event_listeners_listener_in_flight",
        "zulip_event_listeners_listener_last_completion_timestamp_seconds",
        "zulip_event_listeners_rate_limit_limit",
        "zulip_event_listeners_buffer_used",
        "zulip_event_listeners_buffer_capacity",
    ] {
        assert!(used.contains(new), "the dashboard shows {new}");
    }
}
