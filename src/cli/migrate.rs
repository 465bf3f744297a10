//! `migrate`: apply the pending database migrations and say which, with
//! an audit row (when `[data_protection] audit_trail` is on) naming them,
//! or why they failed (written when the audit table can take it).

use crate::app;
use crate::cli::actor::actor;
use crate::cli::exit::Failure;
use crate::config::Config;
use crate::store::{
    self, AuditAction, AuditEntry, AuditOutcome, AuditTrail, StoreError, StoreOptions,
};

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
    let result = store.migrate().await;
    let (outcome, detail) = match &result {
        Ok(applied) if applied.is_empty() => (AuditOutcome::Ok, "up to date".to_owned()),
        Ok(applied) => (AuditOutcome::Ok, format!("applied {}", applied.join(", "))),
        Err(e) => (AuditOutcome::Failed, e.to_string()),
    };
    AuditTrail::new(store.clone(), config.data_protection.audit_trail)
        .record(AuditEntry {
            actor: &actor(),
            action: AuditAction::Migrate,
            target: Some(&store.location()),
            detail: &detail,
            outcome,
        })
        .await;
    let applied = result?;
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
