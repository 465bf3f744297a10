//! Intake against the fake Zulip: pacing under the rate limit, backfills
//! that skip no message, the start-up account check and `/health` while it
//! waits, degradation judged by time, and waking up after a suspend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use zulip_event_listeners::app::{AppError, RunOptions};
use zulip_event_listeners::event::Event;
use zulip_event_listeners::listeners::{Context, Listener, ListenerError, Record, Registry};

use crate::support::fake_zulip::{FakeOptions, Fault, FaultPlan, RateLimit, RateLimitModel};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

const MESSAGES: &str = "SELECT count(*) FROM event_listeners_messagelog";

// ---- 3. Pacing under Zulip's rate limit ------------------------------------

/// Steady traffic, a message every 40 ms for 6 s, against a budget of 5
/// requests a second: polling after every small answer would need about
/// 25 a second.
async fn steady_traffic_under_a_small_budget(model: RateLimitModel) {
    let fake = FakeOptions {
        rate_limit: Some(RateLimit {
            requests: 20,
            window: Duration::from_secs(4),
            model,
        }),
        ..FakeOptions::default()
    };
    let mut app = TestApp::new(Backend::Sqlite, fake, "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    for i in 0..150 {
        send(&fake, i..i + 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        eventually(WAIT, || async { count(&db, MESSAGES).await == 150 }).await,
        "every message is stored"
    );
    let metrics = app.metrics().await;
    let paced = metrics
        .sample(
            "zulip_event_listeners_rate_limit_waits_total",
            &[("reason", "paced")],
        )
        .unwrap_or(0.0);
    let remaining = metrics
        .first("zulip_event_listeners_rate_limit_remaining")
        .unwrap_or(-1.0);
    app.stop().await.expect("clean stop");

    let limited: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .collect();
    assert!(limited.is_empty(), "no request hit the limit: {limited:?}");
    assert!(paced > 0.0, "polls were spaced out ({paced} waits)");
    assert!(
        (0.0..=20.0).contains(&remaining),
        "the gauge shows the budget: {remaining}"
    );
}

#[tokio::test]
async fn steady_traffic_under_tornados_leaky_bucket_gets_no_429_and_loses_nothing() {
    steady_traffic_under_a_small_budget(RateLimitModel::LeakyBucket).await;
}

#[tokio::test]
async fn steady_traffic_under_djangos_sliding_window_gets_no_429_and_loses_nothing() {
    steady_traffic_under_a_small_budget(RateLimitModel::SlidingWindow).await;
}

// ---- 4. Backfills skip no message ------------------------------------------

#[tokio::test]
async fn a_message_delivered_after_a_higher_one_is_backfilled_when_the_queue_is_lost() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);

    // Message 1 is sent first but its event is still on its way when
    // message 2's arrives; then the queue is lost, with message 1's event.
    let first = fake.send_channel_message_held(10, "a@example.com", "general", "t", "first");
    let second = fake.send_channel_message(11, "b@example.com", "general", "t", "second");
    assert!(first < second);
    assert!(eventually(WAIT, || async { count(&db, MESSAGES).await == 1 }).await);
    fake.drop_held();
    fake.expire_all_queues();

    assert!(
        eventually(WAIT, || async { count(&db, MESSAGES).await == 2 }).await,
        "the lower id is backfilled"
    );
    app.stop().await.expect("clean stop");
    assert_eq!(fake.register_count(), 2);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM event_listeners_inbox WHERE message_id = {first} AND backfilled"
        ))
        .await,
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE event_type = 'message'")
            .await,
        2,
        "the higher one, re-fetched, is not stored twice"
    );
}

#[tokio::test]
async fn backfill_since_above_the_newest_message_does_not_poison_later_backfills() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let (fake, db) = (app.fake.clone(), app.db.clone());
    // Five messages from an hour before the first start.
    send(&fake, 0..5);
    fake.backdate(1..=5, 3600);
    let opts = RunOptions {
        backfill_since: Some(1_000_000),
        ..RunOptions::default()
    };
    app.start(Registry::builtin(), opts).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    send(&fake, 5..8);
    assert!(eventually(WAIT, || async { count(&db, MESSAGES).await == 3 }).await);
    app.stop().await.expect("clean stop");

    // Down longer than the queue's lifetime: 18 messages are sent meanwhile.
    fake.expire_all_queues();
    send(&fake, 8..26);
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(
        eventually(WAIT, || async { count(&db, MESSAGES).await == 21 }).await,
        "the 18 missed messages are backfilled (stored: {})",
        count(&db, MESSAGES).await
    );
    app.stop().await.expect("clean stop");
    assert_eq!(
        db.scalar("SELECT count(*) FROM event_listeners_inbox WHERE backfilled")
            .await,
        18,
        "the window below the newest id seen leaves out the messages sent an hour before it"
    );
}

// ---- 5. Start-up and health ------------------------------------------------

/// Records the bot's own user id each listener run was given.
struct BotIdProbe(Arc<Mutex<Vec<Option<i64>>>>);

#[async_trait]
impl Listener for BotIdProbe {
    fn name(&self) -> &str {
        "bot_id_probe"
    }
    fn description(&self) -> &str {
        "records ctx.bot_user_id"
    }
    fn event_types(&self) -> &[&str] {
        &["message"]
    }
    async fn handle(&self, _: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        self.0.lock().unwrap().push(ctx.bot_user_id);
        Ok(Vec::new())
    }
}

fn only_users_me(fault: Fault) -> FaultPlan {
    FaultPlan {
        every: vec![(1, fault)],
        only_paths: Some(vec!["/users/me".to_owned()]),
    }
}

#[tokio::test]
async fn the_account_check_is_retried_until_zulip_answers_while_health_says_starting() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let fake = app.fake.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::builtin();
    registry
        .register(Arc::new(BotIdProbe(seen.clone())))
        .unwrap();
    fake.set_faults(only_users_me(Fault::RateLimit { retry_after: 0.2 }));
    let opts = RunOptions {
        listeners: Some(vec!["bot_id_probe".to_owned()]),
        ..RunOptions::default()
    };
    app.start(registry, opts).await;

    let health = app.health().await;
    assert_eq!(health.code, 503, "{health:?}");
    assert_eq!(health.body["status"], "starting", "{health:?}");
    let reasons = health.body["reasons"].to_string();
    assert!(reasons.contains("GET /users/me"), "{reasons}");
    assert!(
        eventually(WAIT, || async {
            let m = app.metrics().await;
            m.sample(
                "zulip_event_listeners_poll_errors_total",
                &[("reason", "rate_limited")],
            ) >= Some(2.0)
                && m.sample(
                    "zulip_event_listeners_rate_limit_waits_total",
                    &[("reason", "retry_after")],
                ) >= Some(2.0)
        })
        .await,
        "the start-up 429s are counted"
    );

    // Then unreachable for a while (a proxy's 502s), then up.
    fake.set_faults(only_users_me(Fault::NonJson));
    assert!(
        eventually(WAIT, || async {
            app.metrics()
                .await
                .sample(
                    "zulip_event_listeners_poll_errors_total",
                    &[("reason", "server_error")],
                )
                .is_some_and(|n| n >= 3.0)
        })
        .await
    );
    assert_eq!(app.health().await.body["status"], "starting");
    assert_eq!(fake.register_count(), 0, "nothing runs before the check");
    fake.set_faults(FaultPlan::default());
    assert!(
        eventually(WAIT, || async {
            app.health().await.body["status"] == "healthy"
        })
        .await
    );
    fake.send_channel_message(10, "a@example.com", "general", "t", "hello");
    assert!(eventually(WAIT, || async { !seen.lock().unwrap().is_empty() }).await);
    app.stop().await.expect("clean stop");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(fake.user_id())],
        "the bot's own user id is known"
    );
}

#[tokio::test]
async fn a_401_while_the_account_check_is_retried_still_stops_the_daemon() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    let fake = app.fake.clone();
    fake.set_faults(only_users_me(Fault::ServerError));
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert_eq!(app.health().await.body["status"], "starting");
    fake.set_faults(only_users_me(Fault::Unauthorized));
    assert!(eventually(WAIT, || async { app.is_finished() }).await);
    let err = app.wait().await.expect_err("refused credentials stop it");
    assert!(matches!(err, AppError::Auth(_)), "{err:?}");
}

/// A daemon whose polls all fail with a 502, as while Zulip restarts.
async fn failing_polls(degraded_after: &str) -> TestApp {
    let extra = format!(
        "[network]\nbackoff_cap = 0.05\n[error_handling]\ncircuit_breaker_threshold = 0\ndegraded_after = \"{degraded_after}\"\n"
    );
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), &extra).await;
    let fake = app.fake.clone();
    app.start(Registry::builtin(), RunOptions::default()).await;
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    fake.set_faults(FaultPlan {
        every: vec![(1, Fault::NonJson)],
        only_paths: Some(vec!["/events".to_owned()]),
    });
    app
}

fn consecutive_failures(h: &Health) -> u64 {
    h.body["queue"]["consecutive_failures"]
        .as_u64()
        .unwrap_or_default()
}

#[tokio::test]
async fn many_quick_failures_are_not_degraded_before_degraded_after() {
    let mut app = failing_polls("1h").await;
    assert!(
        eventually(WAIT, || async {
            consecutive_failures(&app.health().await) >= 12
        })
        .await
    );
    let health = app.health().await;
    assert_eq!(
        health.body["status"], "healthy",
        "12 failures in a row, but not for an hour: {health:?}"
    );
    app.fake.set_faults(FaultPlan::default());
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn failing_for_degraded_after_is_degraded_and_a_poll_that_works_clears_it() {
    let mut app = failing_polls("1s").await;
    assert!(
        eventually(WAIT, || async {
            app.health().await.body["status"] == "degraded"
        })
        .await
    );
    let reasons = app.health().await.body["reasons"].to_string();
    assert!(reasons.contains("have failed for"), "{reasons}");
    app.fake.set_faults(FaultPlan::default());
    assert!(
        eventually(WAIT, || async {
            app.health().await.body["status"] == "healthy"
        })
        .await
    );
    app.stop().await.expect("clean stop");
}

/// This process's CPU time (the daemon runs in it), from the kernel.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[tokio::test]
async fn process_cpu_seconds_are_what_the_kernel_counted_not_whole_seconds() {
    let mut app = TestApp::new(Backend::Sqlite, FakeOptions::default(), "").await;
    app.start(Registry::builtin(), RunOptions::default()).await;
    let before = own_cpu_seconds();
    let cpu = app
        .metrics()
        .await
        .first("zulip_event_listeners_process_cpu_seconds_total")
        .expect("the CPU counter");
    let after = own_cpu_seconds();
    app.stop().await.expect("clean stop");
    assert!(
        before - 0.011 <= cpu && cpu <= after + 0.011,
        "{before} <= {cpu} <= {after}"
    );
}

// ---- 10. Waking up ---------------------------------------------------------

/// A fake whose polls park for an hour (no heartbeat), and a daemon on a
/// clock the test moves.
async fn parked_daemon(extra: &str) -> (TestApp, Arc<JumpingClock>) {
    let fake = FakeOptions {
        heartbeat: Duration::from_secs(3600),
        longpoll_timeout_seconds: 3600,
        ..FakeOptions::default()
    };
    let mut app = TestApp::new(Backend::Sqlite, fake, extra).await;
    let clock = Arc::new(JumpingClock::default());
    app.start_with_clock(Registry::builtin(), RunOptions::default(), clock.clone())
        .await;
    (app, clock)
}

fn polls(app: &TestApp) -> Vec<crate::support::fake_zulip::RequestRecord> {
    app.fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/events" && r.method == "GET")
        .collect()
}

#[tokio::test]
async fn a_clock_jump_aborts_the_parked_poll_and_cuts_a_long_wait_short() {
    let (mut app, clock) = parked_daemon("").await;
    assert!(
        eventually(WAIT, || async { polls(&app).iter().any(|r| r.status == 0) }).await,
        "a poll is parked"
    );
    let parked = polls(&app).len();

    // Resumed after an hour's suspend: the parked poll is given up and the
    // same acknowledgement polled again at once.
    clock.jump(Duration::from_secs(3600));
    assert!(
        eventually(WAIT, || async { polls(&app).len() > parked }).await,
        "a new poll begins"
    );
    let all = polls(&app);
    let (old, new) = (&all[parked - 1], &all[parked]);
    assert_eq!(
        (&new.queue_id, new.last_event_id),
        (&old.queue_id, old.last_event_id)
    );

    // A 429 asking for an hour: the wait is cut short by the next jump.
    app.fake.set_faults(FaultPlan {
        every: vec![(
            1,
            Fault::RateLimit {
                retry_after: 3600.0,
            },
        )],
        only_paths: Some(vec!["/events".to_owned()]),
    });
    app.fake
        .send_channel_message(10, "a@example.com", "general", "t", "before");
    assert!(
        eventually(WAIT, || async {
            polls(&app).iter().any(|r| r.status == 429)
        })
        .await
    );
    assert!(eventually(WAIT, || async { count(&app.db, MESSAGES).await == 1 }).await);
    app.fake.set_faults(FaultPlan::default());
    app.fake
        .send_channel_message(10, "a@example.com", "general", "t", "after");
    clock.jump(Duration::from_secs(3600));
    assert!(
        eventually(WAIT, || async { count(&app.db, MESSAGES).await == 2 }).await,
        "polled again at once, not an hour later"
    );
    let jumps = app
        .metrics()
        .await
        .first("zulip_event_listeners_clock_jumps_total");
    assert!(jumps >= Some(2.0), "{jumps:?}");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_clock_jump_resets_the_backoff_and_the_failure_streak() {
    let extra = "[network]\nbackoff_cap = 60\n[error_handling]\ncircuit_breaker_threshold = 0\ndegraded_after = \"1h\"\n";
    let (mut app, clock) = parked_daemon(extra).await;
    let fake = app.fake.clone();
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    fake.set_faults(FaultPlan {
        every: vec![(1, Fault::ServerError)],
        only_paths: Some(vec!["/events".to_owned()]),
    });
    // The parked poll is not failed by the plan: wake it with an event.
    fake.send_channel_message(10, "a@example.com", "general", "t", "x");
    assert!(
        eventually(WAIT, || async {
            consecutive_failures(&app.health().await) >= 6
        })
        .await
    );
    // The backoff has grown (the next delay is up to 6.4 s, then 12.8 s);
    // after a wake-up it starts over, and so does the streak.
    clock.jump(Duration::from_secs(3600));
    assert!(
        eventually(WAIT, || async {
            consecutive_failures(&app.health().await) < 6
        })
        .await,
        "the failure streak starts over"
    );
    fake.set_faults(FaultPlan::default());
    fake.send_channel_message(10, "a@example.com", "general", "t", "y");
    assert!(eventually(WAIT, || async { count(&app.db, MESSAGES).await == 2 }).await);
    app.stop().await.expect("clean stop");
}
