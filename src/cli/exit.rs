//! Exit codes, and [`Failure`]: an error with the code the process exits
//! with. The `From` impls map each boundary's error to its code once, so
//! subcommands use `?` instead of repeating the mapping.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | any other failure (Zulip rejected a request, a file could not be read, …) |
//! | 2 | bad command line or configuration |
//! | 3 | Zulip refused the credentials (401/403), or they are missing |
//! | 4 | the database is unreachable, failed, was deleted or replaced while running (SQLite), or needs `migrate` (also: `run --events` whose runs it refused to record) |

use crate::app::AppError;
use crate::cli::age::AgeError;
use crate::config::{ConfigError, UnknownOrganization};
use crate::distributed::DistributedError;
use crate::listeners::{InstanceError, RegistryError};
use crate::store::StoreError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: any other failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad command line or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: Zulip refused the credentials, or they are missing.
pub const EXIT_AUTH: u8 = 3;
/// Exit code: database failure.
pub const EXIT_DATABASE: u8 = 4;

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl Failure {
    /// `error`, exiting with `code`.
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let code = match &e {
            AppError::Auth(_) | AppError::Credentials(_) => EXIT_AUTH,
            AppError::Store(StoreError::InstanceLocked { .. }) => EXIT_FAILURE,
            AppError::Store(StoreError::Password(_) | StoreError::Keyring(_)) => EXIT_CONFIG,
            AppError::Store(_) => EXIT_DATABASE,
            AppError::Listeners(_) | AppError::AdminTokens(_) => EXIT_CONFIG,
            AppError::Distributed(DistributedError::Setup(_)) => EXIT_CONFIG,
            AppError::Distributed(DistributedError::Store(_)) => EXIT_DATABASE,
            AppError::Distributed(DistributedError::Broker { .. }) => EXIT_FAILURE,
            AppError::Zulip(_) | AppError::File(_) | AppError::Http(..) | AppError::Pipeline(_) => {
                EXIT_FAILURE
            }
        };
        Failure::new(code, e)
    }
}

/// The database failed: exit 4 (2 when its password cannot be read).
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::Password(_) | StoreError::Keyring(_) => EXIT_CONFIG,
            _ => EXIT_DATABASE,
        };
        Failure::new(code, e)
    }
}

/// The configuration file has problems: exit 2.
impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(EXIT_CONFIG, e)
    }
}

/// The command line named an unknown listener: exit 2.
impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure::new(EXIT_CONFIG, e)
    }
}

/// A listener instance is unknown or cannot be built: exit 2.
impl From<InstanceError> for Failure {
    fn from(e: InstanceError) -> Self {
        Failure::new(EXIT_CONFIG, e)
    }
}

/// An age the command line gave cannot be used: exit 2.
impl From<UnknownOrganization> for Failure {
    fn from(e: UnknownOrganization) -> Self {
        Failure::new(EXIT_CONFIG, e)
    }
}

impl From<AgeError> for Failure {
    fn from(e: AgeError) -> Self {
        Failure::new(EXIT_CONFIG, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_boundary_error_exits_with_its_code() {
        let store = Failure::from(StoreError::PendingMigrations {
            count: 1,
            names: "initial".into(),
        });
        assert_eq!(store.code, EXIT_DATABASE);
        let config = Failure::from(ConfigError {
            path: None,
            problems: vec!["x".into()],
        });
        assert_eq!(config.code, EXIT_CONFIG);
        let unknown = Failure::from(RegistryError::Duplicate("x".into()));
        assert_eq!(unknown.code, EXIT_CONFIG);
        assert!(unknown.error.to_string().contains("`x`"));
    }
}
