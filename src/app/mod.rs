//! [`run`]: the daemon assembled — store, recorder, dispatcher, recovery of
//! unfinished events, then a source (the Zulip queue or a file) until it
//! ends or shutdown is asked for, then an orderly drain.

pub mod malloc_tuning;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dispatch::filters::Filters;
use crate::dispatch::routing::Partitioner;
use crate::dispatch::{
    BreakerSettings, Dispatcher, DispatcherSettings, Progress, Recorder, RecorderReport,
    RetryPolicy,
};
use crate::http::health::Health;
use crate::intake::{run_file, FileError, FileReport};
use crate::intake::{Intake, IntakeError, IntakeSettings, Pipeline, PipelineError, PipelineMode};
use crate::listeners::{wanted_event_types, Listener, Registry, RegistryError};
use crate::state::State;
use crate::store::{self, Store, StoreError, StoreOptions, Summary};
use crate::zulip::{
    load_credentials, Client, CredentialSources, CredentialsError, RegisterParams, ZulipError,
};

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

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `--listeners` named an unknown listener.
    #[error(transparent)]
    Listeners(#[from] RegistryError),
    /// The credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Zulip refused the credentials.
    #[error("{0}")]
    Auth(ZulipError),
    /// Zulip failed in a way retrying cannot fix.
    #[error("{0}")]
    Zulip(ZulipError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The events file could not be processed.
    #[error(transparent)]
    File(FileError),
    /// The HTTP server cannot listen.
    #[error("cannot serve /health and /metrics on {0}: {1}")]
    Http(SocketAddr, #[source] std::io::Error),
    /// Events can no longer be dispatched.
    #[error(transparent)]
    Pipeline(PipelineError),
}

impl From<IntakeError> for AppError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Auth(z) => AppError::Auth(z),
            IntakeError::Rejected(z) => AppError::Zulip(z),
            IntakeError::Store(s) => AppError::Store(s),
            IntakeError::Dispatch(p) => AppError::Pipeline(p),
        }
    }
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

/// Opens the configured database; a SQLite file is created and migrated,
/// a PostgreSQL database must have been migrated with `migrate`.
///
/// # Errors
///
/// [`StoreError`] when it cannot be opened, or has pending migrations.
pub async fn open_store(config: &Config, auto_migrate: bool) -> Result<Arc<dyn Store>, StoreError> {
    let url = store::DatabaseUrl::parse(&config.database.url)?;
    let store = store::open(&url, &store_options(config)).await?;
    if store.backend() == "sqlite" || auto_migrate {
        for m in store.migrate().await? {
            tracing::info!(migration = %m, "Applied a migration");
        }
    } else {
        let pending = store.pending_migrations().await?;
        if !pending.is_empty() {
            return Err(StoreError::PendingMigrations {
                count: pending.len(),
                names: pending.join(", "),
            });
        }
    }
    Ok(store)
}

/// The store options the configuration asks for (pool size, statistics).
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        max_connections: config.database.max_connections,
        stats_interval: config.statistics.aggregation_interval,
        stats_enabled: config.statistics.enabled,
    }
}

/// Builds the Zulip client from the configured credentials.
///
/// # Errors
///
/// [`AppError::Credentials`] or [`AppError::Zulip`].
pub fn zulip_client(config: &Config) -> Result<Client, AppError> {
    let z = &config.zulip;
    let sources = CredentialSources {
        zuliprc: z.zuliprc.as_deref(),
        email: z.email.as_deref(),
        api_key: None,
        site: z.site.as_deref(),
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let creds = load_credentials(&sources, &|k| std::env::var(k).ok(), home.as_deref())?;
    Client::new(
        &creds,
        config.network.connection_timeout,
        config.network.read_timeout,
    )
    .map_err(AppError::Zulip)
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
    listeners: Vec<Arc<dyn Listener>>,
    client: Option<Client>,
    bot_user_id: Option<i64>,
    store: Option<Arc<dyn Store>>,
    state: Arc<State>,
    http_addr: Option<SocketAddr>,
    http_token: CancellationToken,
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
        let listeners = registry.select(&names)?;

        // Zulip first: wrong credentials fail in a second, before any database work.
        let mut bot_user_id = None;
        let client = match &opts.events_file {
            Some(_) => None,
            None => {
                let client = zulip_client(config)?;
                match check_identity(&client, config).await? {
                    Some(me) => {
                        if me.is_bot {
                            tracing::info!(email = %me.email, user_id = me.user_id, "Connected as a bot");
                        } else {
                            tracing::warn!(email = %me.email, "THIS ACCOUNT IS NOT A BOT: a live event queue under a person's API key mutes their email and mobile notifications. Use a bot's zuliprc.");
                        }
                        bot_user_id = Some(me.user_id);
                    }
                    None => tracing::warn!("Cannot reach Zulip to check the account; going on (the poll loop keeps retrying), without the bot's own user id"),
                }
                Some(client)
            }
        };
        let store = if opts.dry_run {
            None
        } else {
            Some(open_store(config, false).await?)
        };
        // Logged once the credentials and the database are known good, so a
        // wrong key or a bad database URL is the only line printed.
        tracing::info!(listeners = %names.join(","), dry_run = opts.dry_run, "Starting");
        let state = Arc::new(State::default());
        let http_token = CancellationToken::new();
        // A file run is a one-off: it serves no HTTP (and cannot fail on a
        // port a running daemon holds).
        let bind = config.http.bind.filter(|_| opts.events_file.is_none());
        let http_addr = match bind {
            Some(addr) => {
                let health = Health::new(
                    state.clone(),
                    store.clone(),
                    config.scaling.instance_id.clone(),
                    names.clone(),
                );
                health.spawn_sampler(http_token.clone());
                Some(
                    crate::http::serve(addr, health, http_token.clone())
                        .await
                        .map_err(|e| AppError::Http(addr, e))?,
                )
            }
            None => None,
        };
        Ok(Application {
            config: config.clone(),
            opts,
            listeners,
            client,
            bot_user_id,
            store,
            state,
            http_addr,
            http_token,
        })
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
    pub async fn run_until_stopped(self, token: CancellationToken) -> Result<RunReport, AppError> {
        let result = self.consume(token).await;
        crate::systemd::notify_stopping();
        self.http_token.cancel();
        result
    }

    async fn consume(&self, token: CancellationToken) -> Result<RunReport, AppError> {
        let config = &self.config;
        let opts = &self.opts;
        let instance = config.scaling.instance_id.clone();
        let state = self.state.clone();
        crate::systemd::spawn_watchdog(state.clone(), self.http_token.clone());
        let draining = {
            let state = state.clone();
            let token = token.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                state
                    .draining
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            })
        };
        let ready = || crate::systemd::notify_ready();

        let Some(store) = self.store.clone() else {
            let pipeline = Pipeline::new(
                instance,
                PipelineMode::DryRun {
                    listeners: self.listeners.clone(),
                },
                state.clone(),
            );
            let mut report = RunReport::default();
            match (&opts.events_file, &self.client) {
                (Some(path), _) => {
                    ready();
                    report.file = Some(
                        run_file(path, &pipeline, &token)
                            .await
                            .map_err(AppError::File)?,
                    );
                }
                (None, Some(client)) => {
                    let mut settings = intake_settings(config, opts, &self.listeners);
                    settings.release_queue = true;
                    Intake::new(client.clone(), &pipeline, settings, state.clone())
                        .run(token, ready)
                        .await?;
                }
                (None, None) => {}
            }
            report.stored = pipeline.stored_total();
            draining.abort();
            return Ok(report);
        };

        if config.statistics.enabled {
            crate::store::retention::spawn_retention(
                store.clone(),
                config.statistics.retention_days,
                self.http_token.clone(),
            );
        }
        let progress = Arc::new(Progress::default());
        let (tx, rx) = mpsc::channel(OUTCOME_CHANNEL);
        let give_up = CancellationToken::new();
        let recorder = tokio::spawn(
            Recorder::new(
                store.clone(),
                instance.clone(),
                progress.clone(),
                rx,
                state.clone(),
            )
            .run(give_up.clone()),
        );
        let dispatcher = Dispatcher::new(
            self.listeners.clone(),
            DispatcherSettings {
                max_concurrent: config.performance.max_concurrent_handlers,
                timeout: config.performance.handler_timeout,
                org: Arc::from(instance.as_str()),
                bot_user_id: self.bot_user_id,
                stop: token.clone(),
                retry: RetryPolicy {
                    max_retries: config.queue.max_retries,
                    delay: config.queue.retry_delay,
                },
                breaker: BreakerSettings {
                    failure_threshold: config.error_handling.circuit_breaker_threshold,
                    cooldown: config.error_handling.circuit_breaker_cooldown,
                    max_failures_per_hour: config.error_handling.max_failures_per_hour,
                    auto_disable_threshold: config.error_handling.auto_disable_threshold,
                },
                partitioner: Partitioner::from_config(&config.scaling),
                filters: Arc::new(Filters::new(config)),
            },
            tx,
            progress,
            state.clone(),
        );
        let (notice_tx, notice_rx) = mpsc::channel(crate::notify::NOTICE_QUEUE);
        let dispatcher = dispatcher.with_notices(notice_tx);
        crate::notify::spawn_notifier(
            notice_rx,
            config.error_handling.notification_webhook.clone(),
            Some(store.clone()),
            instance.clone(),
            self.http_token.clone(),
        );
        let control = dispatcher.control();
        let _ = state.listeners.set(control.clone());
        // Listeners disabled by an operator (or automatically) before this
        // start stay disabled: their runs are skipped and dead-lettered.
        for s in store.listener_states().await? {
            if !s.enabled {
                control.set_disabled(
                    &s.name,
                    Some(
                        s.reason
                            .clone()
                            .unwrap_or_else(|| "disabled by an operator".to_owned()),
                    ),
                );
            }
        }
        crate::notify::spawn_state_sync(
            store.clone(),
            move |name, reason| control.set_disabled(name, reason),
            self.http_token.clone(),
        );

        // Events committed before a crash whose runs were not all recorded.
        let unfinished = store.unfinished(&instance).await?;
        let recovered = unfinished.len();
        if recovered > 0 {
            tracing::info!(
                events = recovered,
                "Dispatching events whose runs were not all recorded before the last stop"
            );
        }
        for u in unfinished {
            dispatcher.dispatch(u.stored, &u.done).await;
        }

        let pipeline = Pipeline::new(
            instance,
            PipelineMode::Store {
                store: store.clone(),
                dispatcher: Box::new(dispatcher),
            },
            state.clone(),
        );
        let mut report = RunReport {
            recovered,
            location: Some(store.location()),
            ..RunReport::default()
        };
        let outcome: Result<(), AppError> = match (&opts.events_file, &self.client) {
            (Some(path), _) => {
                ready();
                match run_file(path, &pipeline, &token).await {
                    Ok(r) => {
                        report.file = Some(r);
                        Ok(())
                    }
                    Err(e) => Err(AppError::File(e)),
                }
            }
            (None, Some(client)) => {
                let settings = intake_settings(config, opts, &self.listeners);
                Intake::new(client.clone(), &pipeline, settings, state.clone())
                    .run(token.clone(), ready)
                    .await
                    .map_err(AppError::from)
            }
            (None, None) => Ok(()),
        };
        report.stored = pipeline.stored_total();
        report.duplicates = pipeline.duplicates_total();

        // Drain: in-flight runs get up to one handler timeout to finish, then
        // the recorder commits what they produced.
        let deadline = config.performance.handler_timeout + Duration::from_millis(500);
        if let Some(dispatcher) = pipeline.into_dispatcher().await {
            if dispatcher.drain(deadline).await > 0 {
                give_up.cancel();
            }
        }
        let grace = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(grace);
        let mut recorder = recorder;
        report.recorder = tokio::select! {
            r = &mut recorder => r.unwrap_or_default(),
            _ = &mut grace => {
                give_up.cancel();
                recorder.await.unwrap_or_default()
            }
        };
        draining.abort();
        outcome?;
        report.summary = store.summary().await.ok();
        Ok(report)
    }
}

/// `GET /users/me`: refused credentials fail at once (a wrong key exits in
/// well under a second); a Zulip that does not answer is retried a few
/// times with backoff, then left to the poll loop, so a daemon started
/// while Zulip restarts does not exit (and hit systemd's start limit).
async fn check_identity(
    client: &Client,
    config: &Config,
) -> Result<Option<crate::zulip::UserMe>, AppError> {
    let mut backoff =
        crate::intake::Backoff::new(Duration::from_millis(100), config.network.backoff_cap);
    loop {
        let e = match client.users_me().await {
            Ok(me) => return Ok(Some(me)),
            Err(e) => e,
        };
        let delay = match e.action() {
            _ if e.is_auth() => return Err(AppError::Auth(e)),
            crate::zulip::ErrorAction::Stop => return Err(AppError::Zulip(e)),
            crate::zulip::ErrorAction::Wait(d) => d,
            _ if backoff.failures() >= 5 => return Ok(None),
            _ => backoff.next_delay(),
        };
        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Cannot check the account with Zulip; retrying");
        tokio::time::sleep(delay).await;
    }
}

fn intake_settings(
    config: &Config,
    opts: &RunOptions,
    listeners: &[Arc<dyn Listener>],
) -> IntakeSettings {
    IntakeSettings {
        register: RegisterParams {
            event_types: wanted_event_types(listeners),
            narrow: config.zulip.narrow.clone(),
            all_public_streams: config.zulip.all_public_streams,
            apply_markdown: config.zulip.apply_markdown,
            queue_lifespan_secs: config.zulip.queue_lifespan_secs,
        },
        backoff_base: Duration::from_millis(100),
        backoff_cap: config.network.backoff_cap,
        max_retries: config.network.max_retries,
        release_queue: opts.release_queue,
        backfill_since: opts.backfill_since,
        memory_threshold: config.performance.memory_threshold,
    }
}
