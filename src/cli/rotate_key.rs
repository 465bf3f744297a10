//! `rotate-key --new-key-file F`: every sealed row (inbox raw JSON,
//! listener data values, reply contents), and every row still in plain
//! text, sealed again under the first key of F, in batches of
//! `--batch-size` rows (one transaction each) with a progress bar on
//! stderr when it is a terminal. F's key must already be the first of
//! `[data_protection] key_file`, so the daemon, restarted on that file,
//! writes under it and reads every row rewritten while it runs. A run cut
//! short is resumed by running it again: every row carries its key id, and
//! rows already under the new key are skipped. One audit row says how it
//! ended.

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::app;
use crate::cli::actor::actor;
use crate::cli::exit::{Failure, EXIT_CONFIG};
use crate::config::{Config, SecretSource};
use crate::store::{
    AuditAction, AuditEntry, AuditOutcome, AuditTrail, Cipher, KeyId, Keyring, SealedTable, Store,
    StoreError, StoreOptions, WalkFrom,
};

/// Why `rotate-key` will not start.
#[derive(Debug, thiserror::Error)]
enum RotateRefusal {
    /// No keyring is configured.
    #[error("rotate-key needs `[data_protection] key_file`: it reads the rows with the keys listed there")]
    NoKeyFile,
    /// The new key is not the first of `key_file`: (its id, why).
    #[error("key {0} (the first of --new-key-file) {1} of `[data_protection] key_file`: put it on the file's first line, the old key(s) after it, and restart the daemon, so that it writes under the new key and reads the rows rewritten while it runs; then run rotate-key again")]
    NotFirst(KeyId, &'static str),
}

/// `rotate-key --new-key-file F`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 when the keys cannot be read or the new key is not
/// `key_file`'s first, 4 when the database fails or a row does not open.
pub(crate) async fn cmd_rotate_key(
    config: &Config,
    new_key_file: &Path,
    batch_size: u32,
    pause: Duration,
) -> Result<(), Failure> {
    let policy = config.file_permissions;
    let source = config
        .data_protection
        .key
        .as_ref()
        .ok_or_else(|| Failure::new(EXIT_CONFIG, RotateRefusal::NoKeyFile))?;
    let current = Keyring::read(source, policy).map_err(StoreError::Keyring)?;
    let new = Keyring::read(&SecretSource::File(new_key_file.to_owned()), policy)
        .map_err(StoreError::Keyring)?;
    let target = new.primary().clone();
    if current.primary() != &target {
        let why = if current.contains(&target) {
            "is not the first key"
        } else {
            "is not a key"
        };
        return Err(Failure::new(
            EXIT_CONFIG,
            RotateRefusal::NotFirst(target, why),
        ));
    }
    let opts = StoreOptions {
        max_connections: 2,
        cipher: Cipher::new(Some(Arc::new(current.led_by(new))), true),
        ..app::store_options(config)
    };
    let store = app::open_store_with(config, &opts, false).await?;
    let trail = AuditTrail::new(store.clone(), config.data_protection.audit_trail);
    let result = rotate(&*store, &target, batch_size, pause).await;
    let (outcome, detail) = match &result {
        Ok(r) => (AuditOutcome::Ok, r.to_string()),
        Err(e) => (AuditOutcome::Failed, e.to_string()),
    };
    trail
        .record(AuditEntry {
            actor: &actor(),
            action: AuditAction::RotateKey,
            target: Some(target.as_str()),
            detail: &detail,
            outcome,
        })
        .await;
    let report = result?;
    println!("Key {target}: {report}.");
    if report.remaining > 0 {
        println!("Those rows were written meanwhile by a daemon that encrypts with another key: restart it on a key_file whose first key is {target}, then run rotate-key again.");
    } else {
        println!("No row is under another key: the other keys can be removed from key_file.");
    }
    Ok(())
}

/// What a rotation did: rows rewritten per table, and rows left under
/// another key at the end.
#[derive(Debug, Default)]
struct Report {
    rewritten: [u64; 3],
    remaining: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [inbox, data, outbox] = self.rewritten;
        write!(
            f,
            "{} row(s) rewritten (inbox {inbox}, listener data {data}, reply outbox {outbox}), {} row(s) under another key",
            inbox + data + outbox,
            self.remaining
        )
    }
}

/// Walks every sealed table, `batch_size` rows a transaction, `pause`
/// between batches.
async fn rotate(
    store: &dyn Store,
    target: &KeyId,
    batch_size: u32,
    pause: Duration,
) -> Result<Report, StoreError> {
    let mut total = 0;
    for table in SealedTable::ALL {
        total += store.rows_off_key(table, target).await?;
    }
    let bar = progress_bar(total);
    let mut report = Report::default();
    for (i, table) in SealedTable::ALL.into_iter().enumerate() {
        bar.set_message(table.name());
        let mut from = WalkFrom::Start;
        loop {
            let batch = store.rotate_batch(table, &from, batch_size).await?;
            report.rewritten[i] += batch.rewritten;
            bar.inc(batch.read);
            let Some(next) = batch.next else { break };
            from = next;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    bar.finish_and_clear();
    for table in SealedTable::ALL {
        report.remaining += store.rows_off_key(table, target).await?;
    }
    Ok(report)
}

/// A bar of `total` rows on stderr, hidden when stderr is no terminal.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len} rows ({per_sec}, {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
