//! [`Services`]: the daemon's background tasks — the HTTP server (started
//! by `http.rs`), the
//! health sampler, the systemd watchdog, the drain flag, retention, the
//! notifier, the listener-state sync and the reply sender — under one [`TaskTracker`] and one
//! token, so that shutdown stops them all in one place and waits for them,
//! after the listener runs have drained (the HTTP server answers 503 during
//! the drain, so it must outlive it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::replies::{echo_caveat, ReplySender};
use crate::state::State;
use crate::store::Store;
use crate::zulip::Client;

/// How long [`Services::stop`] waits for the tasks to end.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// The background tasks of one run (a clone is a handle on the same ones).
#[derive(Default, Clone)]
pub(crate) struct Services {
    tracker: TaskTracker,
    /// Cancelled by [`Services::stop`], once the run is over: every task
    /// selects on it. (Not the shutdown request: that one starts the drain.)
    stop_services: CancellationToken,
}

impl Services {
    /// The token every service selects on.
    pub(crate) fn token(&self) -> CancellationToken {
        self.stop_services.clone()
    }

    /// Runs `task` as a service.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Stops every service and waits (a few seconds at most) for them to end.
    pub(crate) async fn stop(&self) {
        self.tracker.close();
        self.stop_services.cancel();
        if tokio::time::timeout(STOP_DEADLINE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = self.tracker.len(),
                "Background services did not stop in time; leaving them"
            );
        }
    }
}

/// The reply sender, as a service: it posts the outbox through `client`
/// until the services stop, after the drain (so replies of the last runs
/// go out). A file run has no Zulip to post to: its replies wait in the
/// outbox for the next run against Zulip.
pub(super) fn spawn_reply_sender(
    services: &Services,
    store: &Arc<dyn Store>,
    client: &Client,
    config: &Config,
    state: &Arc<State>,
) {
    if let Some(why) = echo_caveat(config) {
        tracing::warn!(reason = %why, "The queue may not receive the echo of every reply: a reply whose POST answer is lost (a crash, a broken connection) may then be sent twice");
    }
    let sender = ReplySender::new(
        store.clone(),
        client.clone(),
        config.scaling.instance_id.clone(),
        state.clone(),
        config.network.read_timeout,
    );
    services.spawn(sender.run(services.token()));
}
