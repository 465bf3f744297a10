//! Hot reload: on SIGHUP (`systemctl reload`), [`Reloader`] re-reads the
//! configuration file, checks it completely (`validate`, the check
//! `check-config` makes), and either applies its live parts or, when any
//! part is invalid, keeps the running configuration and logs every
//! problem. `/health` shows the last reload (`reload`), and
//! `zulip_event_listeners_config_reloads_total{result}` counts them.
//!
//! - `validate`: the complete check, shared with `check-config`.
//! - `diff`: what is live, what needs a restart, what changed.
//! - `apply`: building every organization's new listener set, then
//!   swapping them in.
//!
//! Live: `[listeners]` (the enabled instances, their filters, retry
//! policies, timeouts, bounds), `[filters]`, `[security]`'s blocked users
//! and per-user rate limit, `[queue]`'s retry policy, `[logging] level`.
//! Everything else (the database, the organizations, HTTP, scaling, …) is
//! named in the log as needing a restart, and keeps its running value.
//!
//! Exactly once across a reload: every run already started (running,
//! retrying, or waiting for its lane or a slot) finishes with the
//! instance it started with and is recorded as before; each event that
//! arrives after the swap goes to the new set. A removed instance gets no
//! runs for events after the swap (as after a restart without it); a
//! re-added or new one does not backfill older events (`cursor rewind`
//! or `replay` does that).

mod apply;
mod diff;
mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub(crate) use apply::OrgHandle;
#[cfg(test)]
pub(crate) use validate::build_each;
pub(crate) use validate::{validate, Validated};

use crate::config::Config;
use crate::listeners::Registry;
use crate::state::{ReloadStatus, State};
use crate::store::Store;

/// Re-reads the configuration on each SIGHUP and applies it.
pub(crate) struct Reloader {
    /// The file to re-read.
    pub(crate) path: PathBuf,
    pub(crate) registry: Registry,
    /// `run --listeners`: the instances the command line chose, which a
    /// reload keeps (their tables still reload).
    pub(crate) listeners: Option<Vec<String>>,
    /// The configuration running now.
    pub(crate) running: Config,
    /// The file as the daemon started with it, for the settings that
    /// need a restart (`None` when it could not be read again).
    pub(crate) started: Option<toml::Table>,
    pub(crate) orgs: Vec<OrgHandle>,
    pub(crate) store: Arc<dyn Store>,
    /// The daemon's state: `/health`'s reload report and the metric.
    pub(crate) daemon: Arc<State>,
}

/// A reload that was applied.
struct Applied {
    changes: Vec<String>,
    restart_needed: Vec<String>,
}

impl Reloader {
    /// Reads the file as the daemon starts with it.
    pub(crate) fn started_table(path: &std::path::Path) -> Option<toml::Table> {
        let text = std::fs::read_to_string(path).ok()?;
        toml::from_str(&text).ok()
    }

    /// Reloads on every SIGHUP until `token` is cancelled.
    pub(crate) async fn run(mut self, token: CancellationToken) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("Cannot listen for SIGHUP; the configuration will not be reloaded");
            return;
        };
        // Both results at 0 from the start, so a query of `failed` has a series.
        for result in ["ok", "failed"] {
            self.daemon
                .metrics
                .config_reloads
                .with_label_values(&[result]);
        }
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                _ = token.cancelled() => return,
            }
            // READY=1 was sent once the daemon polls: only then is a
            // reload one for systemd.
            let running = self.orgs.iter().all(|o| o.state.starting().is_none());
            if running {
                crate::systemd::notify_reloading();
            }
            self.reload().await;
            if running {
                crate::systemd::notify_ready();
            }
        }
    }

    /// One reload: applied, or refused with every problem logged.
    pub(crate) async fn reload(&mut self) {
        let file = self.path.display().to_string();
        tracing::info!(file = %file, "Reloading the configuration (SIGHUP)");
        let last_attempt = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let status = match self.attempt().await {
            Ok(applied) => {
                for change in &applied.changes {
                    tracing::info!(change = %change, "Configuration reload applied a change");
                }
                for setting in &applied.restart_needed {
                    tracing::warn!(setting = %setting, "Configuration reload: this setting changed but needs a restart; it keeps its running value");
                }
                tracing::info!(
                    file = %file,
                    changes = applied.changes.len(),
                    restart_needed = %applied.restart_needed.join(", "),
                    "Configuration reloaded"
                );
                ReloadStatus {
                    last_attempt,
                    result: "ok",
                    problems: Vec::new(),
                    applied: applied.changes,
                    restart_needed: applied.restart_needed,
                }
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(problem = %problem, "Configuration reload refused");
                }
                tracing::error!(
                    file = %file,
                    problems = problems.len(),
                    "Configuration reload failed; the running configuration is kept"
                );
                ReloadStatus {
                    last_attempt,
                    result: "failed",
                    problems,
                    applied: Vec::new(),
                    restart_needed: Vec::new(),
                }
            }
        };
        self.daemon
            .metrics
            .config_reloads
            .with_label_values(&[status.result])
            .inc();
        self.daemon.set_reload(status);
    }

    /// Reads, checks and applies the file; every problem when it is not
    /// applied.
    async fn attempt(&mut self) -> Result<Applied, Vec<String>> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| vec![format!("cannot read {}: {e}", self.path.display())])?;
        let checked = validate(&text, self.running.file_permissions, &self.registry);
        let new = match (checked.config, checked.problems.is_empty()) {
            (Some(config), true) => config,
            _ => return Err(checked.problems),
        };
        let restart_needed = match (&self.started, toml::from_str::<toml::Table>(&text)) {
            (Some(started), Ok(table)) => diff::restart_needed(started, &table),
            _ => Vec::new(),
        };
        let applied = diff::live_config(&self.running, &new);
        let changes = apply::apply(self, &applied).await?;
        self.running = applied;
        Ok(Applied {
            changes,
            restart_needed,
        })
    }
}
