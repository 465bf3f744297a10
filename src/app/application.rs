//! [`Application`]: the daemon built ([`Application::build`]: each
//! organization's credentials checked, store opened and locked for every
//! organization, HTTP served) and then run
//! ([`Application::run_until_stopped`]: each organization in its own task,
//! with its recorder and dispatcher started, unfinished events
//! re-dispatched, its source fed through the inbox pipeline, then the
//! drain; see `organization.rs`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::connect::open_store;
use super::http::{serve_http, HttpParts};
use super::organization::{Organization, Shared};
use super::reload::{OrgHandle, Reloader};
use super::run::{RunOptions, RunReport};
use super::services::Services;
use super::AppError;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, FilePermissions};
use crate::listeners::{Instance, Registry};
use crate::state::{EveryOrganization, State};
use crate::store::{InstanceLock, Store, StoreError};

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
    orgs: Vec<Organization>,
    store: Option<Arc<dyn Store>>,
    locks: Vec<InstanceLock>,
    /// The daemon's state: with one organization, that organization's.
    state: Arc<State>,
    http_addr: Option<SocketAddr>,
    services: Services,
    clock: Arc<dyn Clock>,
    /// Reloads the configuration on SIGHUP, for a daemon run from a file.
    reloader: Option<Reloader>,
}

impl Application {
    /// Checks each organization's credentials with Zulip (failing fast on
    /// a wrong key; with several organizations, one Zulip refuses is left
    /// stopped unless all are), opens the database, and starts the HTTP
    /// server.
    ///
    /// # Errors
    ///
    /// [`AppError`] for whatever is wrong.
    pub async fn build(
        config: &Config,
        registry: &Registry,
        opts: RunOptions,
    ) -> Result<Application, AppError> {
        crate::distributed::check_role(
            config,
            opts.role,
            opts.events_file.is_some(),
            opts.dry_run,
        )?;
        let mut views = config.organizations();
        if opts.events_file.is_some() && views.len() > 1 {
            tracing::info!(organization = %views[0].scaling.instance_id, "The events file is read into the first organization");
            views.truncate(1);
        }
        let several = views.len() > 1;
        let state = Arc::new(State::default());
        let mut orgs = Vec::with_capacity(views.len());
        for view in views {
            let org_state = match several {
                true => Arc::new(State {
                    tap: state.tap.clone(),
                    ..State::for_organization(&view.scaling.instance_id)
                }),
                false => state.clone(),
            };
            orgs.push(Organization::build(view, registry, &opts, org_state, several).await?);
        }
        if orgs.iter().all(Organization::is_refused) {
            if let Some(e) = orgs.first_mut().and_then(Organization::take_refusal) {
                return Err(e);
            }
        }
        if several {
            let every = orgs.iter().map(|o| o.state.clone()).collect();
            let _ = state.listeners.set(Arc::new(EveryOrganization(every)));
        }
        let store = if opts.dry_run {
            None
        } else {
            Some(open_store(config, false).await?)
        };
        // One daemon per (database, instance): a second one stops here,
        // naming the first, before it resumes (and steals) its queue.
        let names: Vec<String> = orgs.iter().map(|o| o.name().to_owned()).collect();
        // In a distributed deployment the ingests take the lock themselves,
        // waiting for it as standbys (it makes one the leader), and any
        // number of workers share an instance.
        let locks = match &store {
            Some(s) if !opts.role.is_distributed() => s.lock_instances(&names).await?,
            _ => Vec::new(),
        };
        let listeners = every_listener(&orgs);
        // Logged once the credentials and the database are known good, so a
        // wrong key or a bad database URL is the only line printed.
        let listed = listeners
            .iter()
            .map(|i| i.listener.name())
            .collect::<Vec<_>>();
        match several {
            true => {
                tracing::info!(organizations = %names.join(","), listeners = %listed.join(","), dry_run = opts.dry_run, "Starting")
            }
            false => {
                tracing::info!(listeners = %listed.join(","), dry_run = opts.dry_run, "Starting")
            }
        }
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
                    orgs: orgs
                        .iter()
                        .map(|o| (o.name().to_owned(), o.state.clone()))
                        .collect(),
                    store: store.as_ref(),
                    instances: &listeners,
                };
                Some(serve_http(addr, parts, &services).await?)
            }
            None => None,
        };
        let reloader = reloader(config, registry, &opts, &orgs, store.as_ref(), &state);
        Ok(Application {
            reloader,
            config: config.clone(),
            opts,
            orgs,
            store,
            locks,
            state,
            http_addr,
            services,
            clock: Arc::new(SystemClock),
        })
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

    /// The live state (metrics, health facts): with several organizations,
    /// the daemon's own (each organization has its own).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Consumes events until the sources end or `token` is cancelled, then
    /// drains in-flight runs and records them. Each organization runs in
    /// its own task; one that Zulip refuses stops alone, and any other
    /// failure stops them all.
    ///
    /// # Errors
    ///
    /// [`AppError`] for whatever stopped it: a failure shared by the
    /// organizations, or, when every organization stopped, the first one's.
    pub async fn run_until_stopped(
        mut self,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        self.spawn_watchers(&token);
        if let Some(reloader) = self.reloader.take() {
            self.services.spawn(reloader.run(self.services.token()));
        }
        let lost = self.watch_locks(&token);
        if let (Some(store), true) = (&self.store, self.config.statistics.enabled) {
            crate::store::retention::spawn_retention(
                store.clone(),
                self.config.statistics.retention_days,
                self.services.token(),
            );
        }
        let dead_days = self.config.error_handling.deadletter_retention_days;
        if let (Some(store), true) = (&self.store, dead_days > 0) {
            crate::store::retention::spawn_deadletter_retention(
                store.clone(),
                dead_days,
                self.services.token(),
            );
        }
        let shared = Shared {
            store: self.store.clone(),
            opts: self.opts.clone(),
            services: self.services.clone(),
            clock: self.clock.clone(),
            several: self.orgs.len() > 1,
        };
        // A failure the organizations share (the database) stops them all.
        let all = token.child_token();
        let tasks: Vec<_> = std::mem::take(&mut self.orgs)
            .into_iter()
            .map(|org| {
                let (shared, all) = (shared.clone(), all.clone());
                tokio::spawn(async move {
                    let result = org.run(shared, all.clone()).await;
                    if matches!(&result, Err(e) if !e.is_organization_own()) {
                        all.cancel();
                    }
                    result
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            // A task only ends by returning or panicking (none is aborted):
            // a panic goes on as the panic it was.
            match task.await {
                Ok(result) => results.push(result),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        let mut result = combine(results);
        if let (Ok(report), Some(store)) = (&mut result, &self.store) {
            report.summary = store.summary().await.ok();
        }
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
        let mut states = vec![self.state.clone()];
        states.extend(self.orgs.iter().map(|o| o.state.clone()));
        let (shutdown, done) = (shutdown.clone(), self.services.token());
        self.services.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    for state in states {
                        state.draining.store(true, Ordering::Relaxed);
                    }
                }
                _ = done.cancelled() => {}
            }
        });
    }

    /// Stops the run (cancels `shutdown`) when another process takes an
    /// instance lock; returns the token that says it happened.
    fn watch_locks(&self, shutdown: &CancellationToken) -> Option<CancellationToken> {
        if self.locks.is_empty() {
            return None;
        }
        let lost = CancellationToken::new();
        for lock in &self.locks {
            let (watch, lost, shutdown, done) = (
                lock.lost(),
                lost.clone(),
                shutdown.clone(),
                self.services.token(),
            );
            self.services.spawn(async move {
                tokio::select! {
                    _ = watch.cancelled() => {
                        lost.cancel();
                        shutdown.cancel();
                    }
                    _ = done.cancelled() => {}
                }
            });
        }
        Some(lost)
    }
}

/// The reloader of a daemon run from a configuration file (not of a dry
/// run nor of an events file, which end on their own).
fn reloader(
    config: &Config,
    registry: &Registry,
    opts: &RunOptions,
    orgs: &[Organization],
    store: Option<&Arc<dyn Store>>,
    state: &Arc<State>,
) -> Option<Reloader> {
    let (path, store) = (opts.config_file.clone()?, store?.clone());
    if opts.events_file.is_some() {
        return None;
    }
    Some(Reloader {
        started: Reloader::started_table(&path),
        path,
        registry: registry.clone(),
        listeners: opts.listeners.clone(),
        running: config.clone(),
        orgs: orgs
            .iter()
            .map(|o| OrgHandle {
                name: o.name().to_owned(),
                state: o.state.clone(),
                control: o.control.clone(),
            })
            .collect(),
        store,
        daemon: state.clone(),
    })
}

/// Every organization's listener instances, each name once (the HTTP
/// server's list and admin API).
fn every_listener(orgs: &[Organization]) -> Vec<Instance> {
    let mut all: Vec<Instance> = Vec::new();
    for instance in orgs.iter().flat_map(|o| &o.instances) {
        if !all
            .iter()
            .any(|i| i.listener.name() == instance.listener.name())
        {
            all.push(instance.clone());
        }
    }
    all
}

/// The run's outcome from each organization's: a shared failure wins;
/// else the counts of those that ran, unless every one stopped (then the
/// first one's error).
fn combine(results: Vec<Result<RunReport, AppError>>) -> Result<RunReport, AppError> {
    let mut report = RunReport::default();
    let mut ran = false;
    let mut first_own = None;
    for result in results {
        match result {
            Ok(r) => {
                ran = true;
                report.absorb(r);
            }
            Err(e) if e.is_organization_own() => {
                first_own.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (ran, first_own) {
        (false, Some(e)) => Err(e),
        _ => Ok(report),
    }
}
