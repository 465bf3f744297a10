//! [`AppError`]: why the daemon stopped, sorted by what the command line
//! does about it (each maps to an exit code in `cli`).

use std::net::SocketAddr;

use crate::config::AdminTokenError;
use crate::distributed::DistributedError;
use crate::intake::{FileError, IntakeError, PipelineError};
use crate::listeners::InstanceError;
use crate::store::StoreError;
use crate::zulip::{CredentialsError, ZulipError};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `--listeners` named an unknown listener, or an instance cannot be built.
    #[error(transparent)]
    Listeners(#[from] InstanceError),
    /// The credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Zulip refused the credentials.
    #[error("{0}")]
    Auth(ZulipError),
    /// Zulip failed in a way retrying cannot fix.
    #[error("{0}")]
    Zulip(ZulipError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The events file could not be processed.
    #[error(transparent)]
    File(FileError),
    /// The admin token file cannot be used.
    #[error(transparent)]
    AdminTokens(#[from] AdminTokenError),
    /// The HTTP server cannot listen.
    #[error("cannot serve /health and /metrics on {0}: {1}")]
    Http(SocketAddr, #[source] std::io::Error),
    /// Events can no longer be dispatched.
    #[error(transparent)]
    Pipeline(PipelineError),
    /// A distributed role (`--role ingest|worker`) cannot start or go on.
    #[error(transparent)]
    Distributed(#[from] DistributedError),
}

impl From<IntakeError> for AppError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Auth(z) => AppError::Auth(z),
            IntakeError::Rejected(z) => AppError::Zulip(z),
            IntakeError::Store(s) => AppError::Store(s),
            IntakeError::Dispatch(p) => AppError::Pipeline(p),
        }
    }
}
