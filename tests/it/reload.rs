//! Hot reload: the daemon binary, sent SIGHUP after its configuration file
//! changed, applies the live parts to new events with nothing lost or
//! doubled, refuses a file with mistakes (every problem named, `/health`
//! showing the failed reload), and names a setting that needs a restart
//! without applying it.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::support::fake_zulip::{FakeOptions, FakeZulip};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(45);

/// A daemon binary on a config file the test rewrites, HTTP on a free port.
struct Reloadable {
    fake: FakeZulip,
    db: TestDb,
    setup: Setup,
    config: PathBuf,
    port: u16,
    stderr: PathBuf,
    child: Child,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl Reloadable {
    /// Starts the binary on the base config plus `extra` (logging as the
    /// file says: no RUST_LOG), once the fake Zulip has its queue.
    async fn start(extra: &str) -> Reloadable {
        let fake = FakeZulip::start(FakeOptions::default()).await;
        let db = TestDb::new(Backend::Sqlite).await;
        let setup = setup(Some(&fake), &db.url, "");
        let config = setup.dir.path().join("reload.toml");
        let stderr = setup.dir.path().join("stderr.log");
        let port = free_port();
        let mut daemon = Reloadable {
            child: std::process::Command::new("true")
                .spawn()
                .expect("spawn true"),
            fake,
            db,
            setup,
            config,
            port,
            stderr,
        };
        daemon.write(extra);
        daemon.child = daemon_command(&daemon.config)
            .env_remove("RUST_LOG")
            .stderr(std::fs::File::create(&daemon.stderr).expect("create the stderr log"))
            .spawn()
            .expect("spawn the daemon");
        let fake = daemon.fake.clone();
        assert!(
            eventually(WAIT, || async { fake.register_count() == 1 }).await,
            "the daemon registers a queue: {}",
            daemon.log()
        );
        daemon
    }

    /// Rewrites the config file: the base (this fake, this database, this
    /// port, no retries) with `extra`.
    fn write(&self, extra: &str) {
        let text = format!(
            "[zulip]\nzuliprc = \"{}\"\n[database]\nurl = \"{}\"\n[http]\nbind = \"127.0.0.1:{}\"\n\
             [queue]\nmax_retries = 0\n[error_handling]\ncircuit_breaker_threshold = 0\n{extra}",
            self.setup.dir.path().join("zuliprc").display(),
            self.db.url,
            self.port
        );
        std::fs::write(&self.config, text).expect("write the config");
    }

    fn log(&self) -> String {
        stderr_of(&self.stderr)
    }

    /// Sends SIGHUP and waits for the `n`th reload with `result`.
    async fn reload(&self, result: &str, n: u64) {
        signal(&self.child, "-HUP");
        let line = format!("zulip_event_listeners_config_reloads_total{{result=\"{result}\"}} {n}");
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let done = eventually(WAIT, || async {
            match reqwest::get(&url).await {
                Ok(r) => r.text().await.is_ok_and(|t| t.lines().any(|l| l == line)),
                Err(_) => false,
            }
        })
        .await;
        assert!(done, "reload {n} is {result}: {}", self.log());
    }

    async fn health(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        reqwest::get(&url)
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("/health is JSON")
    }

    /// Runs recorded for `listener`.
    async fn runs(&self, listener: &str) -> i64 {
        count(
            &self.db,
            &format!(
                "SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = '{listener}'"
            ),
        )
        .await
    }

    /// (event, listener) pairs recorded more than once.
    async fn doubled(&self) -> i64 {
        count(
            &self.db,
            "SELECT count(*) FROM (SELECT inbox_id, listener_name FROM event_listeners_eventlog \
             GROUP BY inbox_id, listener_name HAVING count(*) > 1) AS d",
        )
        .await
    }

    fn send(&self, channel: &str, n: usize) {
        for i in 0..n {
            self.fake.send_channel_message(
                10,
                "user10@example.com",
                channel,
                "t",
                &format!("m{i}"),
            );
        }
    }

    async fn stop(mut self) {
        signal(&self.child, "-TERM");
        let status = wait_exit(&mut self.child, WAIT).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", self.log());
    }
}

async fn reach<F, Fut>(what: &str, daemon: &Reloadable, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(eventually(WAIT, check).await, "{what}: {}", daemon.log());
}

const LOGGER_ONLY: &str =
    "[logging]\nlevel = \"info\"\n[listeners]\nenabled = [\"message_logger\"]\n";

#[tokio::test]
async fn a_valid_reload_changes_listeners_filters_and_level_for_new_events_with_nothing_lost_or_doubled(
) {
    let d = Reloadable::start(LOGGER_ONLY).await;
    d.send("general", 3);
    reach("the logger runs for the first 3", &d, || async {
        d.runs("message_logger").await == 3
    })
    .await;
    assert!(
        !d.log().contains("DEBUG"),
        "info level before the reload: {}",
        d.log()
    );

    // Add an instance, filter the logger to another channel, log at debug.
    d.write(
        "[logging]\nlevel = \"info,zulip_event_listeners=debug\"\n\
         [listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\"]\n\
         [listeners.message_logger]\nchannels = [\"other\"]\n",
    );
    d.reload("ok", 1).await;
    let health = d.health().await;
    let applied = health["reload"]["applied"].to_string();
    assert_eq!(health["reload"]["result"], "ok", "{health}");
    assert!(applied.contains("added: user_activity_tracker"), "{health}");
    assert!(applied.contains("reconfigured: message_logger"), "{health}");
    assert!(applied.contains("logging.level"), "{health}");
    d.send("general", 2);
    d.send("other", 2);
    reach(
        "the added tracker runs for the 4 new events only",
        &d,
        || async { d.runs("user_activity_tracker").await == 4 },
    )
    .await;
    reach("the logger runs for the 2 in `other` only", &d, || async {
        d.runs("message_logger").await == 5
    })
    .await;
    assert!(
        d.log().contains("Skipping a run"),
        "the debug level applies after the reload: {}",
        d.log()
    );

    // Remove the logger.
    d.write("[logging]\nlevel = \"info\"\n[listeners]\nenabled = [\"user_activity_tracker\"]\n");
    d.reload("ok", 2).await;
    d.send("other", 2);
    reach("the tracker runs for the last 2", &d, || async {
        d.runs("user_activity_tracker").await == 6
    })
    .await;
    assert_eq!(
        d.runs("message_logger").await,
        5,
        "a removed instance runs no more"
    );
    assert_eq!(
        count(&d.db, "SELECT count(*) FROM event_listeners_inbox").await,
        9,
        "every event stored once"
    );
    assert_eq!(d.doubled().await, 0, "no run recorded twice");
    assert_eq!(d.fake.register_count(), 1, "no restart: one queue");
    d.stop().await;
}

#[tokio::test]
async fn a_reload_with_mistakes_keeps_the_running_configuration_and_names_every_problem() {
    let d = Reloadable::start(LOGGER_ONLY).await;
    d.write(
        "[listeners]\nenabeld = [\"user_activity_tracker\"]\n[performance]\nhandler_timeout = -3\n",
    );
    d.reload("failed", 1).await;
    let health = d.health().await;
    let problems = health["reload"]["problems"].to_string();
    assert_eq!(health["reload"]["result"], "failed", "{health}");
    assert!(problems.contains("enabeld"), "{health}");
    assert!(problems.contains("performance.handler_timeout"), "{health}");
    assert_ne!(health["status"], "unhealthy", "{health}");
    let log = d.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Configuration reload refused"))
        .collect();
    assert!(refused.iter().any(|l| l.contains("enabeld")), "{log}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("performance.handler_timeout")),
        "{log}"
    );

    d.send("general", 2);
    reach("the running listeners go on", &d, || async {
        d.runs("message_logger").await == 2
    })
    .await;
    assert_eq!(
        d.runs("user_activity_tracker").await,
        0,
        "nothing of the bad file applied"
    );

    // Fixed, the next reload applies.
    d.write("[listeners]\nenabled = [\"message_logger\", \"user_activity_tracker\"]\n");
    d.reload("ok", 1).await;
    assert_eq!(d.health().await["reload"]["result"], "ok");
    d.stop().await;
}

#[tokio::test]
async fn a_setting_that_needs_a_restart_is_named_in_the_log_and_not_applied() {
    let d = Reloadable::start(LOGGER_ONLY).await;
    let other = d.setup.dir.path().join("other.db");
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace(&d.db.url, &format!("sqlite://{}", other.display()));
    std::fs::write(&d.config, text).unwrap();
    d.reload("ok", 1).await;
    let health = d.health().await;
    assert_eq!(
        health["reload"]["restart_needed"],
        serde_json::json!(["database.url"]),
        "{health}"
    );
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("needs a restart") && l.contains("database.url")),
        "{}",
        d.log()
    );
    d.send("general", 1);
    reach("events still go to the running database", &d, || async {
        d.runs("message_logger").await == 1
    })
    .await;
    assert!(
        !Path::new(&other).exists(),
        "the new database is not opened"
    );
    d.stop().await;
}
