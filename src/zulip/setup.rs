//! A [`Client`] for the configured account: the credentials read as the
//! official bindings read them (`[zulip]` keys, `ZULIP_*`, the zuliprc),
//! with the `[network]` timeouts. Used by the daemon and by listeners that
//! ask Zulip things of their own (the responder's bot lookups).

use std::path::PathBuf;

use super::client::Client;
use super::credentials::{load_credentials, CredentialSources, CredentialsError};
use super::error::ZulipError;
use crate::config::Config;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// The credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Zulip(#[from] ZulipError),
}

impl<'a> CredentialSources<'a> {
    /// Where `config` says the credentials are: its `[zulip]` keys (never
    /// an API key: the file cannot hold one), and how secret files and
    /// plain http are judged.
    pub(crate) fn of(config: &'a Config) -> CredentialSources<'a> {
        let z = &config.zulip;
        CredentialSources {
            zuliprc: z.zuliprc.as_deref(),
            email: z.email.as_deref(),
            api_key: None,
            site: z.site.as_deref(),
            allow_insecure_http: z.allow_insecure_http,
            file_permissions: config.file_permissions,
            ignore_environment: !z.use_environment,
        }
    }
}

impl Client {
    /// The client of the account `config` names.
    ///
    /// # Errors
    ///
    /// [`SetupError`] when the credentials cannot be read or TLS set up.
    pub(crate) fn from_config(config: &Config) -> Result<Client, SetupError> {
        let sources = CredentialSources::of(config);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let creds = load_credentials(&sources, &|k| std::env::var(k).ok(), home.as_deref())?;
        Ok(Client::new(
            &creds,
            config.network.connection_timeout,
            config.network.read_timeout,
        )?)
    }
}
