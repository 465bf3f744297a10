//! The configuration file: TOML text → a validated [`Config`], with every
//! problem reported at once in a [`ConfigError`]. `load.rs` walks the
//! sections, `reader.rs` collects the problems, and each `[section]` has its
//! own file (struct, defaults, known keys, reader); `organizations.rs`
//! reads `[[zulip]]`, and `views.rs` gives each organization its view of
//! the whole.

mod data_protection;
mod database;
mod database_url;
mod distributed;
mod error;
mod error_handling;
mod fallback;
mod filters;
mod http;
mod kinds;
mod listener_filter;
mod listeners;
mod load;
mod logging;
mod network;
mod organizations;
mod performance;
mod permissions;
mod queue;
mod reader;
mod retry;
mod scaling;
mod secret;
mod security;
mod statistics;
mod telemetry;
mod users;
mod views;
mod zulip;

pub use data_protection::DataProtectionConfig;
pub use database::{DatabaseConfig, DEFAULT_DATABASE_URL};
pub use database_url::{Backend, DatabaseUrl, UrlError};
pub use distributed::{AmqpUrl, DistributedConfig, Role};
pub use error::ConfigError;
pub use error_handling::ErrorHandlingConfig;
pub use filters::FiltersConfig;
pub use http::{read_admin_tokens, AdminToken, AdminTokenError, HttpConfig};
pub use kinds::{
    ExecConfig, ExecMode, ListenerKind, ResponderConfig, ResponderRule, RuleTrigger, WebhookConfig,
    WebhookFormat, CONFIG_KINDS,
};
pub use listener_filter::ListenerFilterConfig;
pub use listeners::{ListenerInstanceConfig, ListenersConfig, DEFAULT_LISTENERS};
pub use load::Config;
pub use logging::{LogFormat, LoggingConfig};
pub use network::NetworkConfig;
pub use performance::PerformanceConfig;
pub use permissions::{
    check_secret_file, read_secret_file, FilePermissions, PermissionsError, SecretFileError,
};
pub use queue::QueueConfig;
pub use retry::{PartialRetry, RetryConfig};
pub use scaling::{PartitionStrategy, ScalingConfig};
pub use secret::{SecretError, SecretSource};
pub use security::SecurityConfig;
pub use statistics::StatisticsConfig;
pub use telemetry::{TelemetryConfig, DEFAULT_SERVICE_NAME};
pub use users::UserRef;
pub use views::UnknownOrganization;
pub use zulip::{ZulipConfig, DEFAULT_BACKFILL_WINDOW, DEFAULT_QUEUE_LIFESPAN_SECS};
