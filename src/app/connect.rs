//! Connections to the outside world made at start: the Zulip client and
//! the identity check that fails fast on a wrong key (and, while Zulip does
//! not answer, is retried until it does), and the store, opened and checked
//! for pending migrations.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AppError, Source};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::intake::pacing::{RateLimitEpisodes, WaitReason};
use crate::listeners::BotIdentity;
use crate::pii::Pii;
use crate::state::State;
use crate::store::{self, Cipher, Keyring, Store, StoreError, StoreOptions};
use crate::zulip::{
    resolve_credentials, Client, CredentialSources, Credentials, CredentialsError, ErrorAction,
    SetupError, UserMe, ZulipError,
};

/// Opens the configured database; a SQLite file is created and migrated,
/// a PostgreSQL database must have been migrated with `migrate`.
///
/// # Errors
///
/// [`StoreError`] when it cannot be opened, or has pending migrations.
pub async fn open_store(config: &Config, auto_migrate: bool) -> Result<Arc<dyn Store>, StoreError> {
    let opts = StoreOptions {
        cipher: cipher(config)?,
        ..store_options(config)
    };
    open_store_with(config, &opts, auto_migrate).await
}

/// [`open_store`] with `opts` rather than those the configuration asks for.
///
/// # Errors
///
/// As [`open_store`].
pub async fn open_store_with(
    config: &Config,
    opts: &StoreOptions,
    auto_migrate: bool,
) -> Result<Arc<dyn Store>, StoreError> {
    let url = config
        .database
        .connect_url(config.file_permissions)
        .map_err(StoreError::Password)?;
    let store = store::open(&url, opts).await?;
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
        cipher: Cipher::default(),
    }
}

/// The encryption `[data_protection]` asks for: its keyring read (by the
/// permissions rule), new rows encrypted when `encrypt_sensitive_data` is on.
///
/// # Errors
///
/// [`StoreError::Keyring`] when the keys cannot be read.
pub fn cipher(config: &Config) -> Result<Cipher, StoreError> {
    let dp = &config.data_protection;
    let keys = dp
        .key
        .as_ref()
        .map(|source| Keyring::read(source, config.file_permissions))
        .transpose()
        .map_err(StoreError::Keyring)?;
    Ok(Cipher::new(keys.map(Arc::new), dp.encrypt_sensitive_data))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The credentials of `config` as `run` loads them, or every problem it
/// would meet, without contacting Zulip (`check-config`).
pub(crate) fn check_credentials(config: &Config) -> Result<Credentials, Vec<CredentialsError>> {
    resolve_credentials(
        &CredentialSources::of(config),
        &|k| std::env::var(k).ok(),
        home().as_deref(),
    )
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

/// What the account check at start found.
pub(super) enum Identity {
    /// The bot's identity (`None` for a file source, which checks nothing).
    Known(Option<Arc<BotIdentity>>),
    /// Zulip did not answer yet (unreachable, 5xx, 429): asked again by
    /// [`IdentityCheck::wait`] before anything runs.
    Pending(IdentityCheck),
}

impl Identity {
    /// Waits, while `/health` says starting, for Zulip to answer the
    /// account check that got no answer at build ([`IdentityCheck::wait`]).
    /// False on shutdown.
    pub(super) async fn settle(
        &mut self,
        source: &Source,
        state: &State,
        token: &CancellationToken,
    ) -> Result<bool, AppError> {
        let Source::Zulip(client) = source else {
            return Ok(true);
        };
        let check = match std::mem::replace(self, Identity::Known(None)) {
            Identity::Pending(check) => check,
            known => {
                *self = known;
                return Ok(true);
            }
        };
        let Some(bot) = check.wait(client, state, token).await? else {
            return Ok(false);
        };
        *self = Identity::Known(Some(bot));
        state.set_starting(Some(CONNECTING.to_owned()));
        Ok(true)
    }
}

/// What `/health` says start-up waits for once the account is known.
pub(super) const CONNECTING: &str = "connecting to Zulip's event queue";

/// The first `GET /users/me`, at build: refused credentials fail at once
/// (a wrong key exits in well under a second, before any database work);
/// a Zulip that does not answer leaves the check [`Identity::Pending`], so
/// that the daemon starts serving `/health` (as `starting`) while it keeps
/// asking.
pub(super) async fn identify(
    client: &Client,
    config: &Config,
    state: &State,
) -> Result<Identity, AppError> {
    match client.users_me().await {
        Ok(me) => Ok(Identity::Known(Some(connected_as(&me)))),
        Err(e) => {
            let mut check = IdentityCheck {
                backoff: Backoff::new(Duration::from_millis(100), config.network.backoff_cap),
                episodes: RateLimitEpisodes::default(),
                failing_since: Instant::now(),
                failures: 0,
                quiet_after: config.error_handling.degraded_after,
                said_stuck: false,
                wait: Duration::ZERO,
            };
            check.failed(refused(e)?, state);
            Ok(Identity::Pending(check))
        }
    }
}

/// The account check while Zulip does not answer: retried as the poll
/// loop retries (full-jitter backoff up to `[network] backoff_cap`, or
/// exactly a 429's `Retry-After`), each failure counted in
/// `poll_errors_total` (and a 429 in `rate_limit_waits_total`) and said in
/// `/health`, which reports `starting`.
pub(super) struct IdentityCheck {
    backoff: Backoff,
    episodes: RateLimitEpisodes,
    failing_since: Instant,
    failures: u32,
    /// After failing this long, one error line, then quiet.
    quiet_after: Duration,
    /// That line was written.
    said_stuck: bool,
    /// Before the next try.
    wait: Duration,
}

impl IdentityCheck {
    /// Asks `GET /users/me` until Zulip answers, so that the bot's own user
    /// id is known before any listener runs. `None` when shutdown is asked
    /// for first.
    ///
    /// # Errors
    ///
    /// [`AppError::Auth`] when Zulip refuses the credentials (exit code 3,
    /// as at once), [`AppError::Zulip`] when it rejects the request for good.
    pub(super) async fn wait(
        mut self,
        client: &Client,
        state: &State,
        token: &CancellationToken,
    ) -> Result<Option<Arc<BotIdentity>>, AppError> {
        loop {
            let answer = tokio::select! {
                _ = token.cancelled() => return Ok(None),
                r = async {
                    tokio::time::sleep(self.wait).await;
                    client.users_me().await
                } => r,
            };
            match answer {
                Ok(me) => {
                    tracing::info!(failures = self.failures, "Zulip answered the account check");
                    return Ok(Some(connected_as(&me)));
                }
                Err(e) => self.failed(refused(e)?, state),
            }
        }
    }

    /// Counts a failed check, says it in `/health`, and sets the next wait.
    fn failed(&mut self, e: ZulipError, state: &State) {
        self.failures += 1;
        state.set_starting(Some(format!(
            "waiting for Zulip to answer the account check (GET /users/me): {e}"
        )));
        if let ErrorAction::Wait(d) = e.action() {
            // Counted, and logged once per episode, as the poll loop's 429s.
            self.episodes.waited(state, WaitReason::RetryAfter, d, None);
            self.wait = d;
            return;
        }
        state
            .metrics
            .poll_errors
            .with_label_values(&[e.reason()])
            .inc();
        self.wait = self.backoff.next_delay();
        let failing_for = self.failing_since.elapsed();
        if failing_for < self.quiet_after {
            tracing::warn!(failures = self.failures, error = %e, retry_in_ms = self.wait.as_millis() as u64,
                "Cannot check the account with Zulip; retrying before anything runs");
        } else if !std::mem::replace(&mut self.said_stuck, true) {
            tracing::error!(failures = self.failures, failing_for_s = failing_for.as_secs(), error = %e,
                "Zulip still does not answer the account check; still retrying (/health says starting)");
        }
    }
}

/// The error back when retrying may help; refused credentials, or a request
/// Zulip rejects for good, stop the daemon.
fn refused(e: ZulipError) -> Result<ZulipError, AppError> {
    match e.action() {
        _ if e.is_auth() => Err(AppError::Auth(e)),
        ErrorAction::Stop => Err(AppError::Zulip(e)),
        _ => Ok(e),
    }
}

/// Logs who the daemon is connected as (warning loudly when the key is a
/// person's, not a bot's); the account's identity.
fn connected_as(me: &UserMe) -> Arc<BotIdentity> {
    if me.is_bot {
        tracing::info!(email = %Pii(&me.email), user_id = me.user_id, "Connected as a bot");
    } else {
        tracing::warn!(email = %Pii(&me.email), user_id = me.user_id, "THIS ACCOUNT IS NOT A BOT: a live event queue under a person's API key mutes their email and mobile notifications. Use a bot's zuliprc.");
    }
    Arc::new(BotIdentity {
        user_id: me.user_id,
        email: me.email.clone(),
        full_name: me.full_name.clone(),
    })
}
