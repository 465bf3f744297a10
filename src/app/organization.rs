//! [`Organization`]: one organization's part of the daemon — its view of
//! the configuration (`Config::organizations`), its listener instances,
//! its source (its own Zulip client and account check), its live
//! [`State`], and, once run, its own recorder, dispatcher, listener
//! controls, reply sender and intake, all tagged with its name (the store's
//! `instance`). The organizations of one process share the store, the
//! HTTP server, the background services and the shutdown token; when Zulip
//! refuses one of them (a revoked key), that one stops, loudly, and the
//! others go on.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use super::connect::{identify, zulip_client, Identity, CONNECTING};
use super::drain::{drain, recover};
use super::run::{RunOptions, RunReport};
use super::services::{spawn_reply_sender, Services};
use super::source::{intake_settings, Source};
use super::AppError;
use crate::clock::Clock;
use crate::config::{Config, Role};
use crate::dispatch::Control;
use crate::intake::{Pipeline, PipelineMode};
use crate::listeners::{BotIdentity, Instance, Listener, Registry};
use crate::state::State;
use crate::store::Store;

/// What the organizations of one run share.
#[derive(Clone)]
pub(super) struct Shared {
    /// `None` in a dry run.
    pub(super) store: Option<Arc<dyn Store>>,
    pub(super) opts: RunOptions,
    pub(super) services: Services,
    pub(super) clock: Arc<dyn Clock>,
    /// Several organizations: one Zulip refuses stops alone.
    pub(super) several: bool,
}

/// One organization, built, not yet consuming events.
pub(super) struct Organization {
    /// The configuration as this organization sees it.
    pub(super) config: Config,
    pub(super) instances: Vec<Instance>,
    pub(super) source: Source,
    identity: Identity,
    pub(super) state: Arc<State>,
    /// Its dispatcher's controls, once it runs: a reload replaces its
    /// listener set through them.
    pub(super) control: Arc<OnceLock<Control>>,
    /// Zulip refused the account check at build: the organization does
    /// not run (with several organizations; one alone fails the start).
    refused: Option<AppError>,
}

impl AppError {
    /// Whether the error is one organization's own (Zulip refused its key
    /// or its request), which stops that organization only.
    pub(super) fn is_organization_own(&self) -> bool {
        matches!(self, AppError::Auth(_) | AppError::Zulip(_))
    }
}

impl Organization {
    /// Builds the listener instances and the source of the organization
    /// `config` describes, and checks its account with Zulip. With
    /// `isolated`, a refusal by Zulip leaves the organization stopped
    /// (logged, `/health` unhealthy for it) instead of failing.
    ///
    /// # Errors
    ///
    /// [`AppError`] when the organization cannot be built.
    pub(super) async fn build(
        config: Config,
        registry: &Registry,
        opts: &RunOptions,
        state: Arc<State>,
        isolated: bool,
    ) -> Result<Organization, AppError> {
        let names = opts
            .listeners
            .clone()
            .unwrap_or_else(|| config.listeners.enabled.clone());
        let names = config.listeners.with_fallbacks(&names);
        let instances = Instance::build_all(registry, &config, &names)?;
        let mut refused = None;
        // Zulip first: wrong credentials fail in a second, before any
        // database work. A Zulip that does not answer yet is asked again
        // once /health is served (as starting).
        let (source, identity) = match &opts.events_file {
            Some(path) => (Source::File(path.clone()), Identity::Known(None)),
            None => {
                let client = zulip_client(&config)?;
                let identity = match identify(&client, &config, &state).await {
                    Ok(identity) => identity,
                    Err(e) if isolated && e.is_organization_own() => {
                        stopped(&config, &state, &e);
                        refused = Some(e);
                        Identity::Known(None)
                    }
                    Err(e) => return Err(e),
                };
                if matches!(identity, Identity::Known(Some(_))) {
                    state.set_starting(Some(CONNECTING.to_owned()));
                }
                (Source::Zulip(client), identity)
            }
        };
        Ok(Organization {
            config,
            instances,
            source,
            identity,
            state,
            control: Arc::default(),
            refused,
        })
    }

    /// Its name: its rows' `instance`.
    pub(super) fn name(&self) -> &str {
        &self.config.scaling.instance_id
    }

    /// Whether Zulip refused it at build.
    pub(super) fn is_refused(&self) -> bool {
        self.refused.is_some()
    }

    /// Takes the error that stopped it at build.
    pub(super) fn take_refusal(&mut self) -> Option<AppError> {
        self.refused.take()
    }

    fn listeners(&self) -> Vec<Arc<dyn Listener>> {
        self.instances.iter().map(|i| i.listener.clone()).collect()
    }

    pub(super) fn bot(&self) -> Option<Arc<BotIdentity>> {
        match &self.identity {
            Identity::Known(bot) => bot.clone(),
            Identity::Pending(_) => None,
        }
    }

    /// Consumes the organization's events until its source ends, `token`
    /// is cancelled, or Zulip refuses it (then it is marked stopped).
    ///
    /// # Errors
    ///
    /// [`AppError`] for whatever stopped it.
    pub(super) async fn run(
        mut self,
        shared: Shared,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        if let Some(e) = self.refused.take() {
            return Err(e);
        }
        let result = match self
            .identity
            .settle(&self.source, &self.state, &token)
            .await
        {
            Ok(true) => match (shared.store.clone(), shared.opts.role) {
                (Some(store), Role::All) => self.consume(store, &shared, token).await,
                (Some(store), Role::Ingest) => self.ingest(store, &shared, token).await,
                (Some(store), Role::Worker) => self.work(store, &shared, token).await,
                (None, _) => self.describe(&shared, token).await,
            },
            Ok(false) => Ok(RunReport::default()),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            if shared.several && e.is_organization_own() {
                stopped(&self.config, &self.state, e);
            }
        }
        result
    }

    /// `--dry-run`: every event described, nothing stored or run.
    async fn describe(
        &self,
        shared: &Shared,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        let pipeline = Pipeline::new(
            self.name().to_owned(),
            PipelineMode::DryRun {
                listeners: self.listeners(),
            },
            self.state.clone(),
        );
        let mut settings = intake_settings(&self.config, &shared.opts, shared.clock.clone());
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
        shared: &Shared,
        token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        let config = &self.config;
        let instance = self.name().to_owned();
        let engine = self
            .engine(&store, shared, &token, Arc::default(), false)
            .await?;
        let (dispatcher, recorder, give_up) = (engine.dispatcher, engine.recorder, engine.give_up);
        if let Source::Zulip(client) = &self.source {
            spawn_reply_sender(&shared.services, &store, client, config, &self.state);
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
        let settings = intake_settings(config, &shared.opts, shared.clock.clone());
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
        Ok(report)
    }
}

/// Says, loudly, that Zulip refused organization `config` for good: the
/// error log, and `/health` unhealthy for it.
fn stopped(config: &Config, state: &State, e: &AppError) {
    tracing::error!(organization = %config.scaling.instance_id, error = %e,
        "This organization stopped: Zulip refused it; the daemon's other organizations, if any, go on (fix its key and restart)");
    state.set_starting(None);
    state.set_stopped(e.to_string());
}
