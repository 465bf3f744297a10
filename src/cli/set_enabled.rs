//! `enable NAME` / `disable NAME [--reason TEXT]`: a listener's state in the
//! database, with who switched it and why (and its audit row, in the same
//! transaction, when `[data_protection] audit_trail` is on).

use crate::app;
use crate::cli::actor::{actor, known};
use crate::cli::exit::Failure;
use crate::config::Config;
use crate::listeners::Registry;

/// `enable NAME` / `disable NAME [--reason TEXT]`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 for an unknown listener, 4 when the database fails.
pub(crate) async fn cmd_set_enabled(
    config: &Config,
    registry: &Registry,
    name: &str,
    enabled: bool,
    reason: Option<&str>,
) -> Result<(), Failure> {
    known(config, registry, name)?;
    let store = app::open_store(config, false).await?;
    let who = actor();
    store
        .set_listener_enabled(
            name,
            enabled,
            reason,
            &who,
            config.data_protection.audit_trail,
        )
        .await?;
    let why = reason.map_or_else(String::new, |r| format!(" ({r})"));
    if enabled {
        println!("Enabled `{name}` as {who}{why}.");
    } else {
        println!("Disabled `{name}` as {who}{why}.");
    }
    println!("The daemon applies it at its next start or listener state refresh.");
    Ok(())
}
