//! [`PipelineError`]: why the pipeline did not accept a batch, shared by
//! the pipeline (`inbox.rs`) and the commits it sends (`flight.rs`).

use crate::store::StoreError;

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Shutdown began while the database was unavailable.
    #[error("stopped while waiting for the database")]
    Cancelled,
    /// A database error that retrying cannot fix.
    #[error(transparent)]
    Store(StoreError),
    /// The dispatch task ended (it never should): committed events would
    /// wait unprocessed, so the daemon stops, and the next start dispatches
    /// them.
    #[error(
        "the dispatch task stopped unexpectedly; committed events are dispatched at the next start"
    )]
    DispatchStopped,
    /// The task committing a batch of a page failed (it never should):
    /// what it committed is dispatched at the next start.
    #[error("the task committing a batch failed ({0}); committed events are dispatched at the next start")]
    CommitTask(String),
}
