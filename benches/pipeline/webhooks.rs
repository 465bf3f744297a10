//! The webhook scenario: events/s through 1, 4 and 16 `kind = "webhook"`
//! instances, the daemon in-process on PostgreSQL, each instance POSTing
//! every event (signed, as the envelope) to a local receiver in this
//! process that answers 200 at once. So it measures the daemon's cost per
//! delivery (envelope, signature, HTTP/1.1 over a pooled loopback
//! connection, one logged run), not a receiver's: the receiver, the fake
//! Zulip and PostgreSQL share the machine's cores with the daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use tokio_util::sync::CancellationToken;
use zulip_event_listeners::app::{Application, RunOptions};
use zulip_event_listeners::config::Config;
use zulip_event_listeners::listeners::Registry;

use super::fake_zulip::{FakeOptions, FakeZulip};
use super::{fresh_pg, Probe, PROBE_CHEAP};

/// A receiver that counts requests and answers 200 with an empty body.
async fn receiver() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let app = Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), count)
}

/// Events/s with `k` webhook instances over a backlog of `n` messages, and
/// the requests the receiver got.
pub(super) async fn webhooks_run(k: usize, n: usize) -> (f64, u64) {
    let url = fresh_pg("zel_bench_webhooks").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        ..FakeOptions::default()
    })
    .await;
    super::queued_backlog(&url, &fake, n).await;
    let (hook_url, requests) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (rc, secret) = (dir.path().join("zuliprc"), dir.path().join("secret"));
    super::write_zuliprc(&rc, &fake);
    super::write_secret(&secret, "bench-secret");
    let names: Vec<String> = (1..=k).map(|i| format!("hook_{i}")).collect();
    let mut text = format!(
        "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{url}\"\n[http]\nbind = \"off\"\n[performance]\nmax_concurrent_handlers = 16\n[listeners]\nenabled = {names:?}\n",
        rc.display()
    );
    for name in &names {
        text.push_str(&format!(
            "[listeners.{name}]\nkind = \"webhook\"\nurl = \"{hook_url}\"\nsecret_file = \"{}\"\n",
            secret.display()
        ));
    }
    let registry = Registry::builtin();
    let config = Config::parse(&text, &registry.names()).unwrap();
    let app = Application::build(&config, &registry, RunOptions::default())
        .await
        .unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(token.clone()));
    let mut probe = Probe::connect(&url).await;
    // The clock starts when the first event is stored, as in the
    // listener-count runs.
    let mut start = Instant::now();
    let mut started = false;
    while !probe.done(n).await {
        if !started && probe.one(PROBE_CHEAP).await.is_some_and(|(max, _)| max > 0) {
            start = Instant::now();
            started = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    token.cancel();
    let _ = handle.await;
    (rate, requests.load(Ordering::Relaxed))
}
