//! `top`'s model and frame, from scrapes written by hand.

use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::exposition::Exposition;
use super::figures::{quantile, Figures, HealthView, Snapshot};
use super::parse_interval;
use super::view::{buffer_text, draw, plain_frame, View};
use crate::metrics::CircuitState;

const P: &str = "zulip_event_listeners_";

/// A scrape of two instances, `hook` failing, after `n` rounds of work.
fn scrape(n: f64, lagging_in_inf: bool) -> Snapshot {
    let mut t = String::new();
    for (l, ok, bad) in [("logger", 10.0, 0.0), ("hook", 1.0, 4.0)] {
        t += &format!(
            "{P}events_processed_total{{listener=\"{l}\",outcome=\"success\"}} {}\n",
            ok * n
        );
        t += &format!(
            "{P}events_processed_total{{listener=\"{l}\",outcome=\"failure\"}} {}\n",
            bad * n
        );
        t += &format!(
            "{P}events_processed_total{{listener=\"{l}\",outcome=\"retried\"}} {}\n",
            bad * n
        );
        t += &format!(
            "{P}listener_failures_total{{class=\"transient\",listener=\"{l}\"}} {}\n",
            bad * n
        );
        // Every run of `logger` takes under 10 ms, of `hook` 0.1 to 1 s.
        let (fast, slow) = if l == "logger" {
            (ok * n, ok * n)
        } else {
            (0.0, (ok + bad) * n)
        };
        t += &format!(
            "{P}listener_run_duration_seconds_bucket{{listener=\"{l}\",le=\"0.01\"}} {fast}\n"
        );
        t += &format!(
            "{P}listener_run_duration_seconds_bucket{{listener=\"{l}\",le=\"0.1\"}} {fast}\n"
        );
        t += &format!(
            "{P}listener_run_duration_seconds_bucket{{listener=\"{l}\",le=\"1\"}} {slow}\n"
        );
        t += &format!(
            "{P}listener_run_duration_seconds_bucket{{listener=\"{l}\",le=\"+Inf\"}} {slow}\n"
        );
        t += &format!(
            "{P}listener_runs_in_flight{{listener=\"{l}\"}} {}\n",
            if l == "hook" { 3 } else { 0 }
        );
        t += &format!(
            "{P}listener_retries_waiting{{listener=\"{l}\"}} {}\n",
            if l == "hook" { 2 } else { 0 }
        );
        t += &format!(
            "{P}listener_circuit_state{{listener=\"{l}\"}} {}\n",
            if l == "hook" { 2 } else { 0 }
        );
    }
    t += &format!("{P}deadletters_pending{{listener=\"hook\"}} 17\n");
    t += &format!("{P}events_received_total{{type=\"message\"}} {}\n", 8.0 * n);
    t += &format!(
        "{P}events_received_total{{type=\"reaction\"}} {}\n",
        2.0 * n
    );
    let inf = if lagging_in_inf { 10.0 * n } else { 0.0 };
    t += &format!(
        "{P}queue_lag_seconds_bucket{{le=\"0.5\"}} {}\n",
        10.0 * n - inf
    );
    t += &format!(
        "{P}queue_lag_seconds_bucket{{le=\"3600\"}} {}\n",
        10.0 * n - inf
    );
    t += &format!("{P}queue_lag_seconds_bucket{{le=\"+Inf\"}} {}\n", 10.0 * n);
    t += &format!("{P}inbox_backlog 5\n{P}last_poll_age_seconds 0\n{P}rate_limit_remaining 180\n");
    t += &format!("{P}polls_total {n}\n{P}poll_errors_total{{reason=\"timeout\"}} 0\n");
    let health: HealthView = serde_json::from_str(
        r#"{"status":"degraded","seconds_since_last_poll":1.5,"organizations":[]}"#,
    )
    .expect("a health report");
    Snapshot {
        metrics: Exposition::parse(&t),
        health: Some(health),
    }
}

fn figures() -> Figures {
    Figures::between(
        Some(&scrape(1.0, false)),
        &scrape(3.0, false),
        Duration::from_secs(2),
    )
}

#[test]
fn rates_come_from_counter_deltas_over_the_interval() {
    let f = figures();
    let hook = f
        .instances
        .iter()
        .find(|i| i.listener == "hook")
        .expect("hook");
    // (1 + 4) tries a round, two rounds in two seconds; retries are not runs.
    assert_eq!(hook.runs_per_s, Some(5.0));
    assert_eq!(hook.failures_per_s, Some(4.0));
    let intake = &f.intake[0];
    assert_eq!(intake.events_per_s, Some(10.0));
    assert_eq!(intake.polls_per_s, Some(1.0));
    assert_eq!(intake.poll_errors_per_s, Some(0.0));
}

#[test]
fn gauges_are_read_as_the_newer_scrape_says_them() {
    let f = figures();
    let hook = f
        .instances
        .iter()
        .find(|i| i.listener == "hook")
        .expect("hook");
    assert_eq!(hook.in_flight, Some(3));
    assert_eq!(hook.retries_waiting, Some(2));
    assert_eq!(hook.circuit, Some(CircuitState::Open));
    assert_eq!(hook.dead_letters, Some(17));
    let logger = f
        .instances
        .iter()
        .find(|i| i.listener == "logger")
        .expect("logger");
    assert_eq!(
        logger.dead_letters, None,
        "not exported for logger: shown as -"
    );
    let intake = &f.intake[0];
    assert_eq!(intake.backlog, Some(5));
    assert_eq!(intake.rate_limit_remaining, Some(180));
    assert_eq!(
        intake.last_poll_age,
        Some(1.5),
        "/health's figure, which knows never"
    );
    assert_eq!(f.status.as_deref(), Some("degraded"));
}

#[test]
fn percentiles_come_from_the_buckets_filled_during_the_interval() {
    let f = figures();
    let logger = f
        .instances
        .iter()
        .find(|i| i.listener == "logger")
        .expect("logger");
    let p50 = logger.p50.expect("a p50");
    assert!(p50 > 0.0 && p50 <= 0.01, "{p50}");
    let hook = f
        .instances
        .iter()
        .find(|i| i.listener == "hook")
        .expect("hook");
    let p99 = hook.p99.expect("a p99");
    assert!(p99 > 0.1 && p99 <= 1.0, "{p99}");
    // Lag beyond the largest bound reads as that bound.
    let lagging = Figures::between(
        Some(&scrape(1.0, true)),
        &scrape(2.0, true),
        Duration::from_secs(1),
    );
    assert_eq!(lagging.intake[0].lag_p50, Some(3600.0));
}

#[test]
fn a_first_scrape_has_gauges_but_no_rates() {
    let f = Figures::between(None, &scrape(1.0, false), Duration::ZERO);
    let hook = f
        .instances
        .iter()
        .find(|i| i.listener == "hook")
        .expect("hook");
    assert_eq!(hook.runs_per_s, None);
    assert_eq!(hook.p50, None);
    assert_eq!(hook.in_flight, Some(3));
}

#[test]
fn a_counter_that_went_down_means_a_restart_and_counts_from_zero() {
    let f = Figures::between(
        Some(&scrape(5.0, false)),
        &scrape(1.0, false),
        Duration::from_secs(1),
    );
    let hook = f
        .instances
        .iter()
        .find(|i| i.listener == "hook")
        .expect("hook");
    assert_eq!(hook.runs_per_s, Some(5.0));
    assert!(hook.p50.is_some());
}

#[test]
fn quantiles_interpolate_within_their_bucket_and_need_observations() {
    let b = [(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
    assert_eq!(quantile(0.5, &b), Some(1.5));
    assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    assert_eq!(quantile(0.5, &[]), None);
}

#[test]
fn several_organizations_keep_their_instances_and_intake_apart() {
    let t = format!(
        "{P}listener_runs_in_flight{{listener=\"hook\",org=\"a\"}} 1\n\
         {P}listener_runs_in_flight{{listener=\"hook\",org=\"b\"}} 2\n\
         {P}polls_total{{org=\"a\"}} 1\n{P}polls_total{{org=\"b\"}} 1\n\
         {P}inbox_backlog{{org=\"b\"}} 9\n"
    );
    let s = Snapshot {
        metrics: Exposition::parse(&t),
        health: None,
    };
    let f = Figures::between(None, &s, Duration::ZERO);
    let flights: Vec<_> = f
        .instances
        .iter()
        .map(|i| (i.org.as_str(), i.in_flight))
        .collect();
    assert_eq!(flights, [("a", Some(1)), ("b", Some(2))]);
    assert_eq!(f.intake.len(), 2);
    assert_eq!(f.intake[1].backlog, Some(9));
}

fn view(figures: &Figures) -> View<'_> {
    View {
        address: "127.0.0.1:9187",
        interval: Duration::from_secs(2),
        figures,
        scroll: 0,
        error: None,
    }
}

/// The 80×24 frame of `figures`, as text.
fn frame_80x24(figures: &Figures, scroll: usize) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
    let v = View {
        scroll,
        ..view(figures)
    };
    terminal.draw(|f| draw(f, &v)).expect("a frame");
    buffer_text(terminal.backend().buffer())
}

#[test]
fn the_80x24_frame_shows_every_instance_and_figure_uncut() {
    let text = frame_80x24(&figures(), 0);
    let hook = text
        .lines()
        .find(|l| l.contains("hook"))
        .expect("hook's row");
    for figure in ["5.0", "4.0", "3", "2", "open", "17"] {
        assert!(hook.contains(figure), "{figure} in {hook:?}\n{text}");
    }
    let logger = text
        .lines()
        .find(|l| l.contains("logger"))
        .expect("logger's row");
    let dead = logger.split_whitespace().rev().nth(1);
    assert!(logger.contains("closed") && dead == Some("-"), "{logger:?}");
    for header in [
        "LISTENER", "RUNS/S", "FAIL/S", "P50", "P99", "FLIGHT", "RETRY", "CIRCUIT", "DEAD",
    ] {
        assert!(text.contains(header), "{header}\n{text}");
    }
    for intake in [
        "events/s 10.0",
        "backlog 5",
        "last poll 1.5s ago",
        "rate limit 180 left",
        "degraded",
    ] {
        assert!(text.contains(intake), "{intake}\n{text}");
    }
    assert!(text.contains("q quit"), "{text}");
    println!("{text}");
    assert_eq!(text.lines().count(), 24);
    assert!(text.lines().all(|l| l.chars().count() <= 80));
}

#[test]
fn instances_beyond_the_screen_are_reached_by_scrolling() {
    let mut f = figures();
    let template = f.instances[0].clone();
    f.instances = (0..30)
        .map(|i| {
            let mut x = template.clone();
            x.listener = format!("instance_{i:02}");
            x
        })
        .collect();
    let top = frame_80x24(&f, 0);
    assert!(
        top.contains("instance_00") && !top.contains("instance_29"),
        "{top}"
    );
    assert!(top.contains("of 30"), "{top}");
    let bottom = frame_80x24(&f, 100);
    assert!(
        bottom.contains("instance_29") && !bottom.contains("instance_00"),
        "{bottom}"
    );
    assert!(
        bottom.contains("events/s"),
        "the intake panel stays: {bottom}"
    );
}

#[test]
fn the_plain_frame_holds_every_instance() {
    let mut f = figures();
    let template = f.instances[0].clone();
    f.instances = (0..30)
        .map(|i| {
            let mut x = template.clone();
            x.listener = format!("instance_{i:02}");
            x
        })
        .collect();
    let text = plain_frame(&view(&f), 80).expect("a frame");
    for i in 0..30 {
        assert!(text.contains(&format!("instance_{i:02}")), "{i}\n{text}");
    }
}

#[test]
fn the_interval_is_a_number_of_seconds_within_bounds() {
    assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
    assert!(parse_interval("0").is_err());
    assert!(parse_interval("soon").is_err());
}

#[test]
fn a_counter_with_no_sample_yet_counts_zero_per_second() {
    let t = format!("{P}polls_total 3\n");
    let s = Snapshot {
        metrics: Exposition::parse(&t),
        health: None,
    };
    let f = Figures::between(Some(&s), &s, Duration::from_secs(1));
    assert_eq!(f.intake[0].poll_errors_per_s, Some(0.0));
    assert_eq!(f.intake[0].rate_limit_remaining, None);
}
