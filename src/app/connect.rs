//! Connections to the outside world made at start: the Zulip client and
//! the identity check that fails fast on a wrong key, and the store, opened
//! and checked for pending migrations.

use std::sync::Arc;
use std::time::Duration;

use super::AppError;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::store::{self, Store, StoreError, StoreOptions};
use crate::zulip::{Client, ErrorAction, SetupError, UserMe};

/// Opens the configured database; a SQLite file is created and migrated,
/// a PostgreSQL database must have been migrated with `migrate`.
///
/// # Errors
///
/// [`StoreError`] when it cannot be opened, or has pending migrations.
pub async fn open_store(config: &Config, auto_migrate: bool) -> Result<Arc<dyn Store>, StoreError> {
    let store = store::open(&config.database.url, &store_options(config)).await?;
    if store.backend() == "sqlite" || auto_migrate {
        for m in store.migrate().await? {
            tracing::info!(migration = %m, "Applied a migration");
        }
    } else {
        let pending = store.pending_migrations().await?;
        if !pending.is_empty() {
            return Err(StoreError::PendingMigrations {
                count: pending.len(),
                names: pending.join(", "),
            });
        }
    }
    Ok(store)
}

/// The store options the configuration asks for (pool size, statistics).
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        max_connections: config.database.max_connections,
        stats_interval: config.statistics.aggregation_interval,
        stats_enabled: config.statistics.enabled,
    }
}

/// Builds the Zulip client from the configured credentials.
///
/// # Errors
///
/// [`AppError::Credentials`] or [`AppError::Zulip`].
pub fn zulip_client(config: &Config) -> Result<Client, AppError> {
    Client::from_config(config).map_err(|e| match e {
        SetupError::Credentials(e) => AppError::Credentials(e),
        SetupError::Zulip(e) => AppError::Zulip(e),
    })
}

/// `GET /users/me`: refused credentials fail at once (a wrong key exits in
/// well under a second); a Zulip that does not answer is retried a few
/// times with backoff, then left to the poll loop, so a daemon started
/// while Zulip restarts does not exit (and hit systemd's start limit).
async fn check_identity(client: &Client, config: &Config) -> Result<Option<UserMe>, AppError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), config.network.backoff_cap);
    loop {
        let e = match client.users_me().await {
            Ok(me) => return Ok(Some(me)),
            Err(e) => e,
        };
        let delay = match e.action() {
            _ if e.is_auth() => return Err(AppError::Auth(e)),
            ErrorAction::Stop => return Err(AppError::Zulip(e)),
            ErrorAction::Wait(d) => d,
            _ if backoff.failures() >= 5 => return Ok(None),
            _ => backoff.next_delay(),
        };
        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Cannot check the account with Zulip; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// `GET /users/me` at start; returns the bot's user id when Zulip answered
/// (and warns loudly when the key is a person's, not a bot's).
pub(super) async fn identify(client: &Client, config: &Config) -> Result<Option<i64>, AppError> {
    match check_identity(client, config).await? {
        Some(me) => {
            if me.is_bot {
                tracing::info!(email = %me.email, user_id = me.user_id, "Connected as a bot");
            } else {
                tracing::warn!(email = %me.email, "THIS ACCOUNT IS NOT A BOT: a live event queue under a person's API key mutes their email and mobile notifications. Use a bot's zuliprc.");
            }
            Ok(Some(me.user_id))
        }
        None => {
            tracing::warn!("Cannot reach Zulip to check the account; going on (the poll loop keeps retrying), without the bot's own user id");
            Ok(None)
        }
    }
}
