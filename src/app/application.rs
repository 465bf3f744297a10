//! [`Application`]: the daemon built ([`Application::build`]: credentials
//! checked, store opened, HTTP served) and then run
//! ([`Application::run_until_stopped`]: recorder and dispatcher started,
//! unfinished events re-dispatched, the source fed through the inbox
//! pipeline, then the drain).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connect::{identify, open_store, zulip_client, Identity, CONNECTING};
use super::drain::{drain, recover};
use super::http::{serve_http, HttpParts};
use super::services::{spawn_reply_sender, Services};
use super::source::{intake_settings, Source};
use super::AppError;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, FilePermissions};
use crate::dispatch::filters::Filters;
use crate::dispatch::partition::Partitioner;
use crate::dispatch::{
    BreakerSettings, Dispatcher, DispatcherSettings, Progress, Recorder, RecorderReport,
    RetryPolicy,
};
use crate::intake::{FileReport, Pipeline, PipelineMode};
use crate::listeners::{BotIdentity, Instance, Listener, Registry};
use crate::state::{State, OPERATOR_DISABLED};
use crate::store::{InstanceLock, Store, StoreError, Summary};

/// Capacity of the channel from listener runs to the recorder.
const OUTCOME_CHANNEL: usize = 4096;

/// Run-time choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Describe instead of storing and running.
    pub dry_run: bool,
    /// Run only these listeners instead of `[listeners] enabled`.
    pub listeners: Option<Vec<String>>,
    /// Read events from this JSON-lines file instead of Zulip.
    pub events_file: Option<PathBuf>,
    /// Delete the Zulip queue on exit.
    pub release_queue: bool,
    /// On the first start, backfill messages after this id.
    pub backfill_since: Option<i64>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// The file source's counts, for `--events`.
    pub file: Option<FileReport>,
    /// Events stored by this run.
    pub stored: u64,
    /// Events that were already stored.
    pub duplicates: u64,
    /// Runs re-dispatched from before a restart.
    pub recovered: usize,
    /// The recorder's counts.
    pub recorder: RecorderReport,
    /// Row counts at the end (not in dry-run).
    pub summary: Option<Summary>,
    /// Where the data went.
    pub location: Option<String>,
}

/// Runs the daemon until its source ends or `token` is cancelled.
///
/// # Errors
///
/// [`AppError`] for whatever stopped it.
pub async fn run(
    config: &Config,
    registry: &Registry,
    opts: &RunOptions,
    token: CancellationToken,
) -> Result<RunReport, AppError> {
    Application::build(config, registry, opts.clone())
        .await?
        .run_until_stopped(token)
        .await
}

/// The daemon, built and listening, not yet consuming events.
pub struct Application {
    config: Config,
    opts: RunOptions,
    instances: Vec<Instance>,
    source: Source,
    identity: Identity,
    store: Option<Arc<dyn Store>>,
    lock: Option<InstanceLock>,
    state: Arc<State>,
    http_addr: Option<SocketAddr>,
    services: Services,
    clock: Arc<dyn Clock>,
}

impl Application {
    /// Checks the credentials with Zulip (failing fast on a wrong key),
    /// opens the database, and starts the HTTP server.
    ///
    /// # Errors
    ///
    /// [`AppError`] for whatever is wrong.
    pub async fn build(
        config: &Config,
        registry: &Registry,
        opts: RunOptions,
    ) -> Result<Application, AppError> {
        let names = opts
            .listeners
            .clone()
            .unwrap_or_else(|| config.listeners.enabled.clone());
        let instances = Instance::build_all(registry, config, &names)?;

        let state = Arc::new(State::default());
        // Zulip first: wrong credentials fail in a second, before any
        // database work. A Zulip that does not answer yet is asked again
        // once /health is served (as starting).
        let (source, identity) = match &opts.events_file {
            Some(path) => (Source::File(path.clone()), Identity::Known(None)),
            None => {
                let client = zulip_client(config)?;
                let identity = identify(&client, config, &state).await?;
                if matches!(identity, Identity::Known(_)) {
                    state.set_starting(Some(CONNECTING.to_owned()));
                }
                (Source::Zulip(client), identity)
            }
        };
        let store = if opts.dry_run {
            None
        } else {
            Some(open_store(config, false).await?)
        };
        // One daemon per (database, instance): a second one stops here,
        // naming the first, before it resumes (and steals) its queue.
        let lock = match &store {
            Some(s) => Some(s.lock_instance(&config.scaling.instance_id).await?),
            None => None,
        };
        // Logged once the credentials and the database are known good, so a
        // wrong key or a bad database URL is the only line printed.
        tracing::info!(listeners = %names.join(","), dry_run = opts.dry_run, "Starting");
        if config.file_permissions == FilePermissions::AllowInsecure {
            tracing::warn!("Secret files that others may read, or that another user owns, are used anyway (--allow-insecure-permissions)");
        }
        if config.network.max_retries.is_some() {
            tracing::warn!("[network] max_retries is no longer used: the daemon never gives up on Zulip, and /health reports it degraded once requests have failed for [error_handling] degraded_after");
        }
        let services = Services::default();
        // A file run is a one-off: it serves no HTTP (and cannot fail on a
        // port a running daemon holds).
        let bind = config.http.bind.filter(|_| opts.events_file.is_none());
        let http_addr = match bind {
            Some(addr) => {
                let parts = HttpParts {
                    config,
                    state: &state,
                    store: store.as_ref(),
                    instances: &instances,
                };
                Some(serve_http(addr, parts, &services).await?)
            }
            None => None,
        };
        Ok(Application {
            config: config.clone(),
            opts,
            instances,
            source,
            identity,
            store,
            lock,
            state,
            http_addr,
            services,
            clock: Arc::new(SystemClock),
        })
    }

    /// The listeners of the instances, in order.
    fn listeners(&self) -> Vec<Arc<dyn Listener>> {
        self.instances.iter().map(|i| i.listener.clone()).collect()
    }

    /// The bot's identity, once Zulip told it.
    fn bot(&self) -> Option<Arc<BotIdentity>> {
        match &self.identity {
            Identity::Known(bot) => bot.clone(),
            Identity::Pending(_) => None,
        }
    }

    /// Replaces the clocks the poll loop compares to notice a suspend or a
    /// clock jump (a test makes the wall clock jump with its own).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Application {
        self.clock = clock;
        self
    }

    /// Where `/health` and `/metrics` are served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The live state (metrics, health facts).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Consumes events until the source ends or `token` is cancelled, then
    /// drains in-flight runs and records them.
    ///
    /// # Errors
    ///
    /// [`AppError`] for whatever stopped it.
    pub async fn run_until_stopped(
        mut self,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        self.spawn_watchers(&token);
        let lost = self.watch_lock(&token);
        let result = match self
            .identity
            .settle(&self.source, &self.state, &token)
            .await
        {
            Ok(true) => match self.store.clone() {
                Some(store) => self.consume(store, token).await,
                None => self.describe(token).await,
            },
            Ok(false) => Ok(RunReport::default()),
            Err(e) => Err(e),
        };
        let result = match lost {
            Some(lost) if lost.is_cancelled() => Err(AppError::Store(StoreError::InstanceLocked {
                what: format!("instance `{}`", self.config.scaling.instance_id),
                holder: "another process took its lock while this one's database connection was down, so this one stopped".to_owned(),
            })),
            _ => result,
        };
        crate::systemd::notify_stopping();
        self.services.stop().await;
        result
    }

    /// The systemd watchdog, and the drain flag `/health` reports once
    /// shutdown is asked for.
    fn spawn_watchers(&self, shutdown: &CancellationToken) {
        if let Some(watchdog) = crate::systemd::watchdog(self.state.clone(), self.services.token())
        {
            self.services.spawn(watchdog);
        }
        let (state, shutdown, done) = (self.state.clone(), shutdown.clone(), self.services.token());
        self.services.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => state.draining.store(true, Ordering::Relaxed),
                _ = done.cancelled() => {}
            }
        });
    }

    /// Stops the run (cancels `shutdown`) when another process takes the
    /// instance lock; returns the token that says it happened.
    fn watch_lock(&self, shutdown: &CancellationToken) -> Option<CancellationToken> {
        let lost = self.lock.as_ref()?.lost();
        let (watch, shutdown, done) = (lost.clone(), shutdown.clone(), self.services.token());
        self.services.spawn(async move {
            tokio::select! {
                _ = watch.cancelled() => shutdown.cancel(),
                _ = done.cancelled() => {}
            }
        });
        Some(lost)
    }

    /// `--dry-run`: every event described, nothing stored or run.
    async fn describe(&self, token: CancellationToken) -> Result<RunReport, AppError> {
        let pipeline = Pipeline::new(
            self.config.scaling.instance_id.clone(),
            PipelineMode::DryRun {
                listeners: self.listeners(),
            },
            self.state.clone(),
        );
        let mut settings = intake_settings(&self.config, &self.opts, self.clock.clone());
        settings.release_queue = true;
        let file = self
            .source
            .feed(&pipeline, settings, self.state.clone(), token)
            .await?;
        Ok(RunReport {
            file,
            stored: pipeline.stored_total(),
            ..RunReport::default()
        })
    }

    /// Events stored, dispatched and recorded.
    async fn consume(
        &self,
        store: Arc<dyn Store>,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        let config = &self.config;
        let instance = config.scaling.instance_id.clone();
        if config.statistics.enabled {
            crate::store::retention::spawn_retention(
                store.clone(),
                config.statistics.retention_days,
                self.services.token(),
            );
        }
        let progress = Arc::new(Progress::default());
        let (tx, rx) = mpsc::channel(OUTCOME_CHANNEL);
        let give_up = CancellationToken::new();
        let recorder: JoinHandle<RecorderReport> = tokio::spawn(
            Recorder::new(
                store.clone(),
                instance.clone(),
                progress.clone(),
                rx,
                self.state.clone(),
            )
            .audit_disables(config.data_protection.audit_trail)
            .run(give_up.clone()),
        );
        let dispatcher = Dispatcher::new(
            self.instances.clone(),
            self.dispatcher_settings(&token),
            tx,
            progress,
            self.state.clone(),
        );
        let dispatcher = self.attach_controls(dispatcher, &store).await?;
        if let Source::Zulip(client) = &self.source {
            spawn_reply_sender(&self.services, &store, client, config, &self.state);
        }
        let recovered = recover(&store, &instance, &dispatcher).await?;

        let pipeline = Pipeline::new(
            instance,
            PipelineMode::Store {
                store: store.clone(),
                dispatcher: Box::new(dispatcher),
            },
            self.state.clone(),
        );
        let settings = intake_settings(config, &self.opts, self.clock.clone());
        let outcome = self
            .source
            .feed(&pipeline, settings, self.state.clone(), token)
            .await;
        let mut report = RunReport {
            recovered,
            location: Some(store.location()),
            stored: pipeline.stored_total(),
            duplicates: pipeline.duplicates_total(),
            ..RunReport::default()
        };
        report.recorder = drain(
            pipeline,
            recorder,
            give_up,
            config.performance.handler_timeout,
        )
        .await;
        report.file = outcome?;
        report.summary = store.summary().await.ok();
        Ok(report)
    }

    fn dispatcher_settings(&self, stop: &CancellationToken) -> DispatcherSettings {
        let config = &self.config;
        DispatcherSettings {
            max_concurrent: config.performance.max_concurrent_handlers,
            timeout: config.performance.handler_timeout,
            org: Arc::from(config.scaling.instance_id.as_str()),
            bot_user_id: self.bot().map(|b| b.user_id),
            bot: self.bot(),
            stop: stop.clone(),
            retry: RetryPolicy::from_queue(&config.queue),
            breaker: BreakerSettings {
                failure_threshold: config.error_handling.circuit_breaker_threshold,
                cooldown: config.error_handling.circuit_breaker_cooldown,
                max_failures_per_hour: config.error_handling.max_failures_per_hour,
                auto_disable_threshold: config.error_handling.auto_disable_threshold,
            },
            partitioner: Partitioner::from_config(&config.scaling),
            filters: Arc::new(Filters::new(config)),
        }
    }

    /// Wires the dispatcher's listener controls: notices to the webhook
    /// notifier, the controls to `/health`, the listeners an operator (or an
    /// auto-disable) switched off before this start, and the sync that
    /// applies `enable`/`disable` while running.
    async fn attach_controls(
        &self,
        dispatcher: Dispatcher,
        store: &Arc<dyn Store>,
    ) -> Result<Dispatcher, AppError> {
        let instance = self.config.scaling.instance_id.clone();
        let (notice_tx, notice_rx) = mpsc::channel(crate::notify::NOTICE_QUEUE);
        let dispatcher = dispatcher.with_notices(notice_tx);
        crate::notify::spawn_notifier(
            notice_rx,
            self.config.error_handling.notification_webhook.clone(),
            instance,
            self.services.token(),
        );
        let control = dispatcher.control();
        let _ = self.state.listeners.set(Arc::new(control.clone()));
        // Listeners disabled before this start stay disabled: their runs are
        // skipped and dead-lettered.
        for s in store.listener_states().await? {
            if !s.enabled {
                let reason = s
                    .reason
                    .clone()
                    .unwrap_or_else(|| OPERATOR_DISABLED.to_owned());
                control.set_disabled(&s.name, Some(reason));
            }
        }
        crate::notify::spawn_state_sync(
            store.clone(),
            move |name, reason| control.set_disabled(name, reason),
            self.services.token(),
        );
        Ok(dispatcher)
    }
}
