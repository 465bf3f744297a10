//! Operator notifications and listener state: [`Notice`]s from the
//! dispatcher are POSTed as JSON to `error_handling.notification_webhook`
//! (bounded retries, never blocking dispatch), and `enable` / `disable` run
//! by an operator while the daemon runs reach the dispatcher within a few
//! seconds. (Automatic disables are written to the store by the recorder,
//! not here: a notice may be dropped when the queue is full.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::dispatch::Notice;
use crate::state::OPERATOR_DISABLED;
use crate::store::Store;

/// Notices waiting to be sent at most.
pub const NOTICE_QUEUE: usize = 256;
/// Dead-letter notifications per listener at most once per this period
/// (the others are counted into the next one).
const DEAD_LETTER_EVERY: Duration = Duration::from_secs(60);
/// How often the listener states in the store are read.
const STATE_SYNC_EVERY: Duration = Duration::from_secs(5);

/// Runs the notifier until `token` is cancelled and the channel is drained.
pub(crate) fn spawn_notifier(
    mut rx: mpsc::Receiver<Notice>,
    webhook: Option<String>,
    instance: String,
    token: CancellationToken,
) {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok();
        let mut last_dead_letter: HashMap<String, (Instant, u64)> = HashMap::new();
        loop {
            let notice = tokio::select! {
                n = rx.recv() => match n { Some(n) => n, None => return },
                _ = token.cancelled() => return,
            };
            let suppressed = match &notice {
                Notice::DeadLettered { listener, .. } => {
                    let now = Instant::now();
                    let entry = last_dead_letter
                        .entry(listener.clone())
                        .or_insert((now - DEAD_LETTER_EVERY, 0));
                    if now.duration_since(entry.0) < DEAD_LETTER_EVERY {
                        entry.1 += 1;
                        continue;
                    }
                    let n = entry.1;
                    *entry = (now, 0);
                    n
                }
                _ => 0,
            };
            if let (Some(url), Some(http)) = (&webhook, &http) {
                post(http, url, &body(&notice, &instance, suppressed)).await;
            }
        }
    });
}

fn body(notice: &Notice, instance: &str, suppressed: u64) -> serde_json::Value {
    let at = chrono::Utc::now().to_rfc3339();
    match notice {
        Notice::CircuitOpened { listener, failures } => json!({
            "event": "circuit_opened", "instance": instance, "listener": listener,
            "consecutive_failures": failures, "at": at,
        }),
        Notice::Disabled { listener, reason } => json!({
            "event": "listener_disabled", "instance": instance, "listener": listener,
            "reason": reason, "at": at,
        }),
        Notice::DeadLettered {
            listener,
            inbox_id,
            error,
        } => json!({
            "event": "dead_lettered", "instance": instance, "listener": listener,
            "inbox_id": inbox_id, "error": error, "more_since_last_notification": suppressed, "at": at,
        }),
    }
}

/// POSTs with up to three tries, the waits between them full-jitter
/// backoff under 1 s and 2 s; failures are logged.
async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(2));
    for attempt in 1..=3u32 {
        match http.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                attempt,
                "The notification webhook refused a notification"
            ),
            Err(e) => {
                tracing::warn!(error = %e.without_url(), attempt, "Cannot reach the notification webhook")
            }
        }
        if attempt < 3 {
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
    tracing::error!("Gave up sending a notification to the webhook after 3 tries");
}

/// Applies the store's listener states (operators' `enable` / `disable`) to
/// the dispatcher every few seconds.
pub(crate) fn spawn_state_sync(
    store: Arc<dyn Store>,
    apply: impl Fn(&str, Option<String>) + Send + Sync + 'static,
    token: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATE_SYNC_EVERY);
        let mut known: HashMap<String, bool> = HashMap::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => return,
            }
            let Ok(states) = store.listener_states().await else {
                continue;
            };
            for s in states {
                if known.get(&s.name) == Some(&s.enabled) {
                    continue;
                }
                known.insert(s.name.clone(), s.enabled);
                let reason = (!s.enabled).then(|| {
                    s.reason
                        .clone()
                        .unwrap_or_else(|| OPERATOR_DISABLED.to_owned())
                });
                apply(&s.name, reason);
            }
        }
    });
}
