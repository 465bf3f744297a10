//! [`Engine`]: what an organization runs its listeners with, in the
//! single process (`consume`) and in a worker (`work`) alike: the recorder,
//! running, the dispatcher that feeds it, with its listener controls wired
//! (notices, `/health`, the disables an operator made), and the
//! dead-letter gauge. A worker's recorder writes no watermark (several
//! workers share the instance).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dead_letter_gauge::spawn_dead_letter_gauge;
use super::organization::{Organization, Shared};
use super::services::Services;
use super::AppError;
use crate::dispatch::filters::Filters;
use crate::dispatch::partition::Partitioner;
use crate::dispatch::{
    BreakerSettings, Dispatcher, DispatcherSettings, Progress, Recorder, RecorderReport,
    RetryPolicy,
};
use crate::state::OPERATOR_DISABLED;
use crate::store::Store;

/// Capacity of the channel from listener runs to the recorder.
const OUTCOME_CHANNEL: usize = 2048;

/// The recorder and the dispatcher of a running organization.
pub(super) struct Engine {
    pub(super) dispatcher: Dispatcher,
    pub(super) recorder: JoinHandle<RecorderReport>,
    /// Ends the recorder's retries at shutdown.
    pub(super) give_up: CancellationToken,
}

impl Organization {
    /// The recorder (running) and the dispatcher feeding it, its controls
    /// attached, and the dead-letter gauge: what `consume` and `work`
    /// share. A worker's recorder writes no watermark.
    pub(super) async fn engine(
        &self,
        store: &Arc<dyn Store>,
        shared: &Shared,
        token: &CancellationToken,
        progress: Arc<Progress>,
        worker: bool,
    ) -> Result<Engine, AppError> {
        let instance = self.name().to_owned();
        let (tx, rx) = mpsc::channel(OUTCOME_CHANNEL);
        let buffers = &self.state.metrics.buffers;
        buffers.watch_channel("recorder_outcomes", &tx);
        let give_up = CancellationToken::new();
        let mut recorder = Recorder::new(
            store.clone(),
            instance.clone(),
            progress.clone(),
            rx,
            self.state.clone(),
        )
        .audit_disables(self.config.data_protection.audit_trail);
        if worker {
            recorder = recorder.without_watermark();
        }
        let recorder: JoinHandle<RecorderReport> = tokio::spawn(recorder.run(give_up.clone()));
        let dispatcher = Dispatcher::new(
            self.instances.clone(),
            self.dispatcher_settings(token),
            tx,
            progress,
            self.state.clone(),
        );
        let dispatcher = self
            .attach_controls(dispatcher, store, &shared.services)
            .await?;
        spawn_dead_letter_gauge(
            &shared.services,
            store.clone(),
            instance,
            self.instances.iter().map(|i| i.name().to_owned()).collect(),
            self.state.clone(),
        );
        Ok(Engine {
            dispatcher,
            recorder,
            give_up,
        })
    }

    fn dispatcher_settings(&self, stop: &CancellationToken) -> DispatcherSettings {
        let config = &self.config;
        DispatcherSettings {
            max_concurrent: config.performance.max_concurrent_handlers,
            timeout: config.performance.handler_timeout,
            org: Arc::from(self.name()),
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
        services: &Services,
    ) -> Result<Dispatcher, AppError> {
        let (notice_tx, notice_rx) = mpsc::channel(crate::notify::NOTICE_QUEUE);
        self.state
            .metrics
            .buffers
            .watch_channel("notices", &notice_tx);
        let dispatcher = dispatcher.with_notices(notice_tx);
        crate::notify::spawn_notifier(
            notice_rx,
            self.config.error_handling.notification_webhook.clone(),
            self.name().to_owned(),
            services.token(),
        );
        let control = dispatcher.control();
        let _ = self.state.listeners.set(Arc::new(control.clone()));
        let _ = self.control.set(control.clone());
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
            services.token(),
        );
        Ok(dispatcher)
    }
}
