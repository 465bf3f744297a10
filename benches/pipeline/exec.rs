//! The persistent-exec scenario: runs/s through one persistent Python
//! child (the shipped `examples/exec/persistent.py`, which answers every
//! event at once), the daemon in-process on PostgreSQL, the exec instance
//! its only listener. `ZEL_BENCH_ONLY=exec` runs it alone.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use zulip_event_listeners::app::{Application, RunOptions};
use zulip_event_listeners::config::Config;
use zulip_event_listeners::listeners::Registry;

use super::fake_zulip::{FakeOptions, FakeZulip};
use super::{fresh_pg, Probe, PROBE_CHEAP};

/// Requests in flight to the child, and the daemon's concurrency bound.
const IN_FLIGHT: usize = 64;

/// Runs/s of `n` message events through the persistent exec instance.
pub(super) async fn persistent_exec_run(n: usize) -> f64 {
    let url = fresh_pg("zel_bench_exec").await;
    let fake = FakeZulip::start(FakeOptions {
        heartbeat: Duration::from_secs(1),
        ..FakeOptions::default()
    })
    .await;
    super::queued_backlog(&url, &fake, n).await;
    let rc = tempfile::NamedTempFile::new().unwrap();
    super::write_zuliprc(rc.path(), &fake);
    let handler =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exec/persistent.py");
    let registry = Registry::builtin();
    let config = Config::parse(
        &format!(
            "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{url}\"\n[http]\nbind = \"off\"\n\
             [performance]\nmax_concurrent_handlers = {IN_FLIGHT}\n\
             [listeners]\nenabled = [\"bench_exec\"]\n\
             [listeners.bench_exec]\nkind = \"exec\"\nmode = \"persistent\"\n\
             command = [\"python3\", \"{}\"]\nmax_concurrent = {IN_FLIGHT}\n",
            rc.path().display(),
            handler.display()
        ),
        &registry.names(),
    )
    .unwrap();
    let app = Application::build(&config, &registry, RunOptions::default())
        .await
        .unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(token.clone()));
    let mut probe = Probe::connect(&url).await;
    // The clock starts when the first event is stored, as in the
    // listener-count runs; the child starts at the first run, inside it.
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
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (ok, failed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE success), count(*) FILTER (WHERE NOT success) FROM event_listeners_eventlog",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(ok as usize, n, "one successful exec run per event");
    assert_eq!(failed, 0, "every exec run succeeds");
    rate
}
