//! The shutdown drain: in-flight listener runs get up to one handler
//! timeout (and a little) to finish, then the recorder gets a grace period
//! to commit what they produced. Runs still going when the deadline expires
//! are abandoned and named in the log; their events have no recorded
//! outcome, so the next start dispatches them again ([`recover`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::AppError;
use crate::dispatch::{Dispatcher, RecorderReport};
use crate::intake::Pipeline;
use crate::store::Store;

/// Extra time past the handler timeout for runs to hand in their outcome.
const RUN_GRACE: Duration = Duration::from_millis(500);
/// How long the recorder may take to commit the last outcomes.
const RECORDER_GRACE: Duration = Duration::from_secs(10);

/// Drains `pipeline`'s dispatcher and waits for `recorder`; `give_up` tells
/// the recorder to stop retrying once runs were abandoned or its grace ran out.
pub(super) async fn drain(
    pipeline: Pipeline,
    recorder: JoinHandle<RecorderReport>,
    give_up: CancellationToken,
    handler_timeout: Duration,
) -> RecorderReport {
    finish(
        pipeline.into_dispatcher().await,
        recorder,
        give_up,
        handler_timeout,
    )
    .await
}

/// Drains `dispatcher` (if any) and waits for `recorder`, as [`drain`].
pub(super) async fn finish(
    dispatcher: Option<Dispatcher>,
    recorder: JoinHandle<RecorderReport>,
    give_up: CancellationToken,
    handler_timeout: Duration,
) -> RecorderReport {
    if let Some(dispatcher) = dispatcher {
        if dispatcher.drain(handler_timeout + RUN_GRACE).await > 0 {
            give_up.cancel();
        }
    }
    let grace = tokio::time::sleep(RECORDER_GRACE);
    tokio::pin!(grace);
    let mut recorder = recorder;
    tokio::select! {
        r = &mut recorder => r.unwrap_or_default(),
        _ = &mut grace => {
            give_up.cancel();
            recorder.await.unwrap_or_default()
        }
    }
}

/// Re-dispatches the events committed before a crash whose runs were not
/// all recorded; returns how many.
pub(super) async fn recover(
    store: &Arc<dyn Store>,
    instance: &str,
    dispatcher: &Dispatcher,
) -> Result<usize, AppError> {
    let unfinished = store.unfinished(instance).await?;
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
    Ok(recovered)
}
