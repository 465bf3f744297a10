//! `check-config`: say that the file is valid and what it sets up (loading
//! it already reported every problem), with the database password hidden.

use std::path::Path;

use anyhow::{anyhow, Context as _};

use crate::cli::exit::{Failure, EXIT_CONFIG};
use crate::config::Config;

/// `check-config`.
///
/// # Errors
///
/// A [`Failure`] with exit code 2 when no file was given or it cannot be found.
pub(crate) fn cmd_check_config(path: Option<&Path>, config: &Config) -> Result<(), Failure> {
    // Loading already validated the file; reaching here means it is valid.
    let path = path
        .ok_or_else(|| anyhow!("no configuration file given (use --config PATH)"))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let path = path
        .canonicalize()
        .with_context(|| path.display().to_string())
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    println!(
        "{} is valid: database {}, listeners {}.",
        path.display(),
        config.database.url.redacted(),
        config.listeners.enabled.join(", ")
    );
    Ok(())
}
