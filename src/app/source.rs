//! [`Source`]: where a run's events come from — the Zulip event queue,
//! polled by intake, or a JSON-lines file of recorded events — and the one
//! place that feeds either into the inbox pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AppError, RunOptions};
use crate::clock::Clock;
use crate::config::Config;
use crate::intake::{run_file, FileReport, Intake, IntakeSettings, Pipeline};
use crate::state::State;
use crate::zulip::{Client, RegisterParams};

/// Where events come from.
pub enum Source {
    /// The organization's Zulip event queue, through this client.
    Zulip(Client),
    /// A JSON-lines file (`run --events`).
    File(PathBuf),
}

impl Source {
    /// Feeds events into `pipeline` until the source ends (a file) or
    /// `token` is cancelled or intake fails for good (Zulip). Tells systemd
    /// the daemon is ready once events flow.
    pub(super) async fn feed(
        &self,
        pipeline: &Pipeline,
        settings: IntakeSettings,
        state: Arc<State>,
        token: CancellationToken,
    ) -> Result<Option<FileReport>, AppError> {
        match self {
            Source::File(path) => {
                crate::systemd::notify_ready();
                let report = run_file(path, pipeline, &token)
                    .await
                    .map_err(AppError::File)?;
                Ok(Some(report))
            }
            Source::Zulip(client) => {
                let started = state.clone();
                let ready = move || {
                    started.set_starting(None);
                    crate::systemd::notify_ready();
                };
                Intake::new(client.clone(), pipeline, settings, state)
                    .run(token, ready)
                    .await?;
                Ok(None)
            }
        }
    }
}

/// What intake asks Zulip for and how it retries, from the configuration.
/// Every event type is asked for unless `[zulip] event_types` narrows it:
/// the inbox stores every event (edits, deletions, subscriptions, …), and
/// each listener still runs only for the types it wants.
pub(super) fn intake_settings(
    config: &Config,
    opts: &RunOptions,
    clock: Arc<dyn Clock>,
) -> IntakeSettings {
    IntakeSettings {
        register: RegisterParams {
            event_types: config.zulip.event_types.clone(),
            narrow: config.zulip.narrow.clone(),
            all_public_streams: config.zulip.all_public_streams,
            apply_markdown: config.zulip.apply_markdown,
            queue_lifespan_secs: config.zulip.queue_lifespan_secs,
        },
        backoff_base: Duration::from_millis(100),
        backoff_cap: config.network.backoff_cap,
        degraded_after: config.error_handling.degraded_after,
        release_queue: opts.release_queue,
        backfill_since: opts.backfill_since,
        backfill_window: config.zulip.backfill_window,
        memory_threshold: config.performance.memory_threshold,
        clock,
    }
}
