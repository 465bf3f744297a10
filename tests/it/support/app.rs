//! [`TestApp`]: the real application in-process, on a free HTTP port,
//! against the fake Zulip and a fresh database; with typed `/health` and
//! `/metrics` helpers. The one place tests build the application.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zulip_event_listeners::app::{AppError, Application, Clock, RunOptions, RunReport};
use zulip_event_listeners::config::Config;
use zulip_event_listeners::listeners::Registry;

use super::config::{setup, Setup};
use super::db::{Backend, TestDb};
use super::fake_zulip::{FakeOptions, FakeZulip};

/// A fake Zulip, a fresh database (dropped with its last handle, also when
/// the test panics), a config for both, and the daemon once
/// [`TestApp::start`]ed (again after each [`TestApp::stop`], for restarts).
pub struct TestApp {
    pub fake: FakeZulip,
    pub db: Arc<TestDb>,
    pub setup: Setup,
    daemon: Option<Daemon>,
}

/// The application running in a task.
struct Daemon {
    /// `None` when it reads an events file (which serves no HTTP).
    addr: Option<SocketAddr>,
    token: CancellationToken,
    handle: JoinHandle<Result<RunReport, AppError>>,
}

/// `GET /health`: the status code and the JSON report.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub code: u16,
    pub body: Value,
}

/// `GET /metrics`, parsed from the Prometheus text format.
#[derive(Debug)]
pub struct Metrics(pub prometheus_parse::Scrape);

impl TestApp {
    /// A fake Zulip with `fake`, a fresh `backend` database (not migrated)
    /// and a config on both with `extra` TOML; the daemon is not started.
    pub async fn new(backend: Backend, fake: FakeOptions, extra: &str) -> TestApp {
        let fake = FakeZulip::start(fake).await;
        let db = Arc::new(TestDb::new(backend).await);
        let setup = setup(Some(&fake), &db.url, extra);
        TestApp {
            fake,
            db,
            setup,
            daemon: None,
        }
    }

    /// [`TestApp::new`] on `db` instead of a fresh database.
    pub async fn on(db: TestDb, fake: FakeOptions, extra: &str) -> TestApp {
        let fake = FakeZulip::start(fake).await;
        let db = Arc::new(db);
        let setup = setup(Some(&fake), &db.url, extra);
        TestApp {
            fake,
            db,
            setup,
            daemon: None,
        }
    }

    /// Another daemon on the same fake Zulip and database, with its own
    /// config with `extra` TOML (e.g. another `[scaling]` instance).
    pub fn beside(&self, extra: &str) -> TestApp {
        TestApp {
            fake: self.fake.clone(),
            db: self.db.clone(),
            setup: setup(Some(&self.fake), &self.db.url, extra),
            daemon: None,
        }
    }

    /// Another daemon on the same fake Zulip, on `db` (e.g. a backup
    /// restored into a fresh database), with its own config with `extra`.
    pub fn on_same_zulip(&self, db: TestDb, extra: &str) -> TestApp {
        TestApp {
            fake: self.fake.clone(),
            setup: setup(Some(&self.fake), &db.url, extra),
            db: Arc::new(db),
            daemon: None,
        }
    }

    /// Starts the daemon on the config with `registry` and `opts`, HTTP on
    /// a free port; returns once it is built. Panics if it fails to build.
    pub async fn start(&mut self, registry: Registry, opts: RunOptions) {
        if let Err(e) = self.try_start(registry, opts).await {
            panic!("the daemon starts: {e}");
        }
    }

    /// [`TestApp::start`], returning why the daemon could not be built.
    pub async fn try_start(
        &mut self,
        registry: Registry,
        opts: RunOptions,
    ) -> Result<(), AppError> {
        assert!(self.daemon.is_none(), "the daemon is already running");
        self.daemon = Some(Daemon::spawn(&self.setup.config, registry, opts, None).await?);
        Ok(())
    }

    /// [`TestApp::start`] with `clock` as the daemon's clocks (to make its
    /// wall clock jump).
    pub async fn start_with_clock(
        &mut self,
        registry: Registry,
        opts: RunOptions,
        clock: Arc<dyn Clock>,
    ) {
        assert!(self.daemon.is_none(), "the daemon is already running");
        let daemon = Daemon::spawn(&self.setup.config, registry, opts, Some(clock)).await;
        self.daemon = Some(daemon.unwrap_or_else(|e| panic!("the daemon starts: {e}")));
    }

    /// The daemon's HTTP address.
    pub fn address(&self) -> SocketAddr {
        self.daemon().addr.expect("the daemon serves HTTP")
    }

    /// `GET /health`.
    pub async fn health(&self) -> Health {
        let response = reqwest::get(format!("http://{}/health", self.address()))
            .await
            .expect("GET /health");
        let code = response.status().as_u16();
        let body = response.json().await.expect("a JSON health report");
        Health { code, body }
    }

    /// `GET /ready`.
    pub async fn ready(&self) -> Health {
        let response = reqwest::get(format!("http://{}/ready", self.address()))
            .await
            .expect("GET /ready");
        let code = response.status().as_u16();
        let body = response.json().await.expect("a JSON readiness report");
        Health { code, body }
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> Metrics {
        let text = reqwest::get(format!("http://{}/metrics", self.address()))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("a metrics body");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())));
        Metrics(scrape.expect("Prometheus text format"))
    }

    /// Asks the daemon to shut down, without waiting.
    pub fn cancel(&self) {
        self.daemon().token.cancel();
    }

    /// Whether the daemon's task has ended.
    pub fn is_finished(&self) -> bool {
        self.daemon().handle.is_finished()
    }

    /// Asks for shutdown and waits (up to a minute) for the daemon's report.
    pub async fn stop(&mut self) -> Result<RunReport, AppError> {
        self.cancel();
        self.wait().await
    }

    /// Waits (up to a minute) for the daemon to end by itself, e.g. at the
    /// end of its events file.
    pub async fn wait(&mut self) -> Result<RunReport, AppError> {
        let daemon = self.daemon.take().expect("the daemon was started");
        tokio::time::timeout(Duration::from_secs(60), daemon.handle)
            .await
            .expect("daemon stops within a minute")
            .expect("daemon task does not panic")
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon was started")
    }
}

impl Daemon {
    /// Builds and runs the application in a task, HTTP on a free port;
    /// returns once it is built, or the error it was not built with.
    async fn spawn(
        config: &Config,
        registry: Registry,
        opts: RunOptions,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Daemon, AppError> {
        let mut config = config.clone();
        config.http.bind = Some("127.0.0.1:0".parse().expect("a socket address"));
        let token = CancellationToken::new();
        let (built, addr) = oneshot::channel();
        let stop = token.clone();
        let handle = tokio::spawn(async move {
            let mut app = Application::build(&config, &registry, opts).await?;
            if let Some(clock) = clock {
                app = app.with_clock(clock);
            }
            let _ = built.send(app.http_addr());
            app.run_until_stopped(stop).await
        });
        match addr.await {
            Ok(addr) => Ok(Daemon {
                addr,
                token,
                handle,
            }),
            // A failed build drops the sender before sending.
            Err(_) => match handle.await.expect("the daemon task does not panic") {
                Err(e) => Err(e),
                Ok(_) => panic!("the daemon ended without being built"),
            },
        }
    }
}

impl Metrics {
    /// The single value of `metric` whose labels include every pair of
    /// `labels`; panics if several match.
    pub fn sample(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| scalar(&s.value))
            .collect();
        assert!(
            matching.len() <= 1,
            "{metric}{labels:?} matches {} samples",
            matching.len()
        );
        matching.first().copied()
    }

    /// The value of the first sample of a counter or gauge `metric`.
    pub fn first(&self, metric: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.metric == metric)
            .and_then(|s| scalar(&s.value))
    }
}

impl Deref for Metrics {
    type Target = prometheus_parse::Scrape;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn scalar(value: &prometheus_parse::Value) -> Option<f64> {
    match value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(*v),
        _ => None,
    }
}
