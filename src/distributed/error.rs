//! [`DistributedError`]: why a distributed role cannot start or go on.

use crate::store::StoreError;

/// Why an `ingest` or `worker` process stopped.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// The role cannot run with this configuration (each problem listed).
    #[error("{}", .0.join("; "))]
    Setup(Vec<String>),
    /// RabbitMQ refused or failed in a way retrying cannot fix.
    #[error("RabbitMQ at {url}: {source}")]
    Broker {
        /// The URL, without its password.
        url: String,
        /// What lapin said.
        #[source]
        source: lapin::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
