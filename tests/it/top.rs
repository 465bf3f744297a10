//! `top`: the binary's `--once` frame against a running daemon (the fake
//! Zulip, a failing listener, admin tokens required), the live view under
//! tmux at 80×24 when tmux is installed, and the gauges it reads that the
//! daemon exports for it (retries waiting, circuit state).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

/// Sends a channel message every 20 ms until the flag is dropped.
fn keep_sending(fake: &FakeZulip) -> Arc<AtomicBool> {
    let on = Arc::new(AtomicBool::new(true));
    let (fake, flag) = (fake.clone(), on.clone());
    tokio::spawn(async move {
        let mut i = 0;
        while flag.load(Ordering::Relaxed) {
            fake.send_channel_message(
                11,
                "user11@example.com",
                "general",
                "top",
                &format!("m {i}"),
            );
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    on
}

/// A config for `top` naming the daemon at `addr`, with the token file.
fn top_config(dir: &Path, addr: std::net::SocketAddr, tokens: Option<&Path>) -> PathBuf {
    let mut text = format!("[http]\nbind = \"{addr}\"\n");
    if let Some(t) = tokens {
        text += &format!(
            "admin_token_file = \"{}\"\nmetrics_requires_token = true\nhealth_requires_token = true\n",
            t.display()
        );
    }
    let path = dir.join(if tokens.is_some() {
        "top.toml"
    } else {
        "top-no-token.toml"
    });
    std::fs::write(&path, text).unwrap();
    path
}

/// The whitespace-separated fields of the frame's row for `listener`.
fn row<'a>(frame: &'a str, listener: &str) -> Vec<&'a str> {
    let line = frame
        .lines()
        .find(|l| {
            l.trim_start_matches('│')
                .starts_with(&format!("{listener} "))
        })
        .unwrap_or_else(|| panic!("a row for {listener} in\n{frame}"));
    line.trim_matches('│').split_whitespace().collect()
}

#[tokio::test]
async fn top_once_shows_the_failing_instance_and_the_intake_figures() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"failing\", \"message_logger\"]\n",
    )
    .await;
    let tokens = app.setup.dir.path().join("admin-tokens");
    std::fs::write(&tokens, "ops:top-token-0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.setup.config.http.admin_token_file = Some(tokens.clone());
    app.setup.config.http.metrics_requires_token = true;
    app.setup.config.http.health_requires_token = true;
    app.db.migrate().await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let traffic = keep_sending(&fake);
    let dir = app.setup.dir.path().to_owned();
    let config = top_config(&dir, app.address(), Some(&tokens));
    let cfg = config.to_str().unwrap();

    let out = zel_async(args(cfg, &["top", "--once", "--interval", "1.5"])).await;

    let frame = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{frame}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // LISTENER RUNS/S FAIL/S P50 P99 FLIGHT RETRY CIRCUIT DEAD
    let failing = row(&frame, "failing");
    assert_eq!(failing.len(), 9, "{failing:?}\n{frame}");
    let rate = |s: &str| {
        s.parse::<f64>()
            .unwrap_or_else(|_| panic!("a rate, not {s}\n{frame}"))
    };
    assert!(rate(failing[1]) > 0.0 && rate(failing[2]) > 0.0, "{frame}");
    assert_ne!(failing[3], "-", "a p50 of the failing runs: {frame}");
    assert_eq!(failing[7], "closed", "no breaker in these tests: {frame}");
    let logger = row(&frame, "message_logger");
    assert!(rate(logger[1]) > 0.0 && rate(logger[2]) == 0.0, "{frame}");
    let events = frame
        .split("events/s ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("events/s in\n{frame}"));
    assert!(rate(events) > 0.0, "{frame}");
    for figure in ["queue lag p50", "backlog", "last poll", "ago", "rate limit"] {
        assert!(frame.contains(figure), "{figure} in\n{frame}");
    }
    assert!(frame.lines().all(|l| l.chars().count() <= 80), "{frame}");

    // Without the token the daemon refuses, and top says so.
    let bare = top_config(&dir, app.address(), None);
    let refused = zel_async(args(
        bare.to_str().unwrap(),
        &["top", "--once", "--interval", "0.1"],
    ))
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );

    live_view_under_tmux(cfg).await;
    traffic.store(false, Ordering::Relaxed);
    app.stop().await.expect("clean stop");
}

/// The live view in a real terminal: tmux, 80×24; `q` ends it.
async fn live_view_under_tmux(cfg: &str) {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("skipped the tmux check: tmux is not installed");
        return;
    }
    let session = format!("zel-top-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux runs");
    let command = format!("{} --config {cfg} top --interval 0.5", bin().display());
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "80",
        "-y",
        "24",
        "-s",
        &session,
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let drawn = eventually(WAIT, || async {
        let screen = capture();
        screen.contains("failing") && screen.contains("events/s") && !screen.contains("events/s -")
    })
    .await;
    let screen = capture();
    let _ = tmux(&["send-keys", "-t", &session, "q"]);
    let ended = eventually(WAIT, || async {
        !tmux(&["has-session", "-t", &session]).status.success()
    })
    .await;
    if !ended {
        let _ = tmux(&["kill-session", "-t", &session]);
    }
    println!("top under tmux, 80x24:\n{screen}");
    assert!(
        drawn,
        "the live view draws the instances and intake:\n{screen}"
    );
    assert_eq!(screen.lines().count(), 24, "{screen}");
    assert!(
        screen.contains("q quit") && screen.contains("message_logger"),
        "{screen}"
    );
    assert!(ended, "q ends top");
}

/// `top --once` of `app`'s daemon (no token), printed and returned.
async fn once(app: &TestApp) -> String {
    let config = top_config(app.setup.dir.path(), app.address(), None);
    let out = zel_async(args(
        config.to_str().unwrap(),
        &["top", "--once", "--interval", "0.2"],
    ))
    .await;
    let frame = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{frame}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{frame}");
    frame
}

#[tokio::test]
async fn runs_waiting_to_retry_are_counted_per_instance() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"failing\", \"message_logger\"]\n[queue]\nmax_retries = 5\nretry_delay = 3600\n",
    )
    .await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for i in 0..2 {
        fake.send_channel_message(
            11,
            "user11@example.com",
            "general",
            // One topic each: runs in one conversation keep their order.
            &format!("retry {i}"),
            "m",
        );
    }
    let waiting = |l: &'static str| {
        let app = &app;
        async move {
            app.metrics().await.sample(
                "zulip_event_listeners_listener_retries_waiting",
                &[("listener", l)],
            )
        }
    };
    assert!(
        eventually(WAIT, || async { waiting("failing").await == Some(2.0) }).await,
        "both failed runs wait to retry: {:?}",
        waiting("failing").await
    );
    assert_eq!(waiting("message_logger").await, Some(0.0));
    let frame = once(&app).await;
    assert_eq!(row(&frame, "failing")[6], "2", "RETRY: {frame}");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_circuit_state_gauge_says_open_once_the_breaker_trips() {
    let mut app = TestApp::new(
        Backend::Sqlite,
        FakeOptions::default(),
        "[listeners]\nenabled = [\"failing\", \"message_logger\"]\n[error_handling]\ncircuit_breaker_threshold = 2\ncircuit_breaker_cooldown = 3600\n",
    )
    .await;
    let (registry, _) = registry_with_test_listeners();
    app.start(registry, RunOptions::default()).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    let state = |l: &'static str| {
        let app = &app;
        async move {
            app.metrics().await.sample(
                "zulip_event_listeners_listener_circuit_state",
                &[("listener", l)],
            )
        }
    };
    assert_eq!(state("failing").await, Some(0.0), "closed at start");
    for i in 0..3 {
        fake.send_channel_message(
            11,
            "user11@example.com",
            "general",
            "trip",
            &format!("m {i}"),
        );
    }
    assert!(
        eventually(WAIT, || async { state("failing").await == Some(2.0) }).await,
        "open after two failures: {:?}",
        state("failing").await
    );
    assert_eq!(state("message_logger").await, Some(0.0));
    let frame = once(&app).await;
    assert_eq!(row(&frame, "failing")[7], "open", "CIRCUIT: {frame}");
    assert_eq!(row(&frame, "message_logger")[7], "closed", "{frame}");
    app.stop().await.expect("clean stop");
}
