//! [`Handoff`]: the dispatch task of the normal pipeline and the channel of
//! [`HANDOFF_BATCHES`] committed batches that feeds it (see `inbox.rs`).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dispatch::Dispatcher;
use crate::state::State;
use crate::store::StoredEvent;

/// Committed batches that may wait for dispatch at once.
pub(super) const HANDOFF_BATCHES: usize = 1;

/// The dispatch task and the channel that feeds it.
pub(super) struct Handoff {
    pub(super) tx: mpsc::Sender<Vec<StoredEvent>>,
    pub(super) task: JoinHandle<Dispatcher>,
}

impl Handoff {
    pub(super) fn start(dispatcher: Dispatcher, state: &State) -> Handoff {
        let (tx, mut rx) = mpsc::channel::<Vec<StoredEvent>>(HANDOFF_BATCHES);
        state.metrics.buffers.watch_channel("intake_handoff", &tx);
        let task = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for stored in batch {
                    dispatcher.dispatch(stored, &[]).await;
                }
            }
            dispatcher
        });
        Handoff { tx, task }
    }
}
