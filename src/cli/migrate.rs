//! `migrate`: apply the pending database migrations and say which.

use crate::app;
use crate::cli::exit::Failure;
use crate::config::Config;
use crate::store::{self, StoreError, StoreOptions};

/// `migrate`.
///
/// # Errors
///
/// A [`Failure`] with exit code 4 when the database fails.
pub(crate) async fn cmd_migrate(config: &Config) -> Result<(), Failure> {
    let opts = StoreOptions {
        max_connections: 2,
        ..app::store_options(config)
    };
    let url = config
        .database
        .connect_url(config.file_permissions)
        .map_err(StoreError::Password)?;
    let store = store::open(&url, &opts).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("{} is up to date; no migration applied.", store.location());
    } else {
        for m in &applied {
            println!("Applied {m}");
        }
        println!(
            "{}: {} migration(s) applied.",
            store.location(),
            applied.len()
        );
    }
    Ok(())
}
