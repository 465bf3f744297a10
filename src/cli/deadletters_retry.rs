//! `deadletters retry [filters]`: the pending dead letters the filters
//! select, run again as `replay` runs them (`dispatch::replay`: the
//! listener under the configured timeout, panics caught, the run recorded
//! with its rows, the dead letters marked replayed: resolved when the run
//! succeeds, failed with a new pending dead letter when it fails again;
//! nothing is deleted), grouped by organization and listener. A refused
//! reply's dead letter (stage `reply`) puts the reply back in the outbox
//! for the daemon's reply sender, and is resolved then; refused again, it
//! is a new dead letter. A progress bar (or log lines) counts the dead
//! letters; one audit row says how it ended.

use std::collections::{BTreeMap, BTreeSet};

use crate::app;
use crate::cli::actor::{actor, instance};
use crate::cli::deadletter_filter::describe;
use crate::cli::exit::{Failure, EXIT_FAILURE};
use crate::cli::progress::Progress;
use crate::cli::replay::replay_line;
use crate::config::Config;
use crate::dispatch::replay::{self, ReplaySettings};
use crate::listeners::Registry;
use crate::store::{
    AuditAction, AuditEntry, AuditOutcome, AuditTrail, DeadLetterFilter, DeadLetterSummary, Stage,
    Store, StoreError,
};

/// What a retry did, in dead letters.
#[derive(Debug, Default)]
struct Tally {
    resolved: usize,
    failed: usize,
}

/// `deadletters retry`.
///
/// # Errors
///
/// A [`Failure`]: exit 4 when the database fails, 1 when a retry failed
/// (its event is a pending dead letter again) or could not start.
pub(crate) async fn cmd_retry(
    config: &Config,
    registry: &Registry,
    filter: &DeadLetterFilter,
) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let letters = store.list_dead_letters(filter).await?;
    let trail = AuditTrail::new(store.clone(), config.data_protection.audit_trail);
    if letters.is_empty() {
        println!("No pending dead letters ({}).", describe(filter));
        audit(&trail, filter, AuditOutcome::Ok, "nothing to retry").await;
        return Ok(());
    }
    let mut progress = Progress::new(
        "Retrying dead letters",
        "dead letters",
        letters.len() as u64,
    );
    let mut tally = Tally::default();
    let (replies, runs): (Vec<_>, Vec<_>) =
        letters.into_iter().partition(|d| d.stage == Stage::Reply);
    let result = async {
        for d in &replies {
            retry_reply(store.as_ref(), d, &mut tally).await?;
            progress.inc(1);
        }
        for ((org, listener), ids) in group(&runs) {
            retry_runs(
                config,
                registry,
                store.as_ref(),
                (&org, &listener),
                &ids,
                &mut tally,
                &mut progress,
            )
            .await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    progress.finish();
    let total = format!(
        "Retried {} dead letter(s) ({}): {} resolved, {} failed.",
        tally.resolved + tally.failed,
        describe(filter),
        tally.resolved,
        tally.failed
    );
    if let Err(e) = result {
        audit(
            &trail,
            filter,
            AuditOutcome::Failed,
            &format!("{total} Then: {e}"),
        )
        .await;
        return Err(e.into());
    }
    println!("{total}");
    let outcome = if tally.failed > 0 {
        AuditOutcome::Failed
    } else {
        AuditOutcome::Ok
    };
    audit(&trail, filter, outcome, &total).await;
    if tally.failed > 0 {
        return Err(Failure::new(
            EXIT_FAILURE,
            anyhow::anyhow!(
                "{} dead letter(s) failed again; they are pending again",
                tally.failed
            ),
        ));
    }
    Ok(())
}

/// The run dead letters' ids by (organization, listener).
fn group(runs: &[DeadLetterSummary]) -> BTreeMap<(String, String), BTreeSet<i64>> {
    let mut out: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
    for d in runs {
        out.entry((d.organization.clone(), d.listener.clone()))
            .or_default()
            .insert(d.id);
    }
    out
}

/// Runs again the events of dead letters `ids` of `listener` in `org`.
async fn retry_runs(
    config: &Config,
    registry: &Registry,
    store: &dyn Store,
    (org, listener): (&str, &str),
    ids: &BTreeSet<i64>,
    tally: &mut Tally,
    progress: &mut Progress,
) -> Result<(), StoreError> {
    let built = config
        .organization(Some(org))
        .map_err(|e| e.to_string())
        .and_then(|view| {
            instance(&view, registry, listener)
                .map(|i| (view, i))
                .map_err(|e| e.to_string())
        });
    let (view, built) = match built {
        Ok(b) => b,
        Err(why) => {
            println!(
                "{} dead letter(s) of `{listener}` ({org}) not retried: {why}",
                ids.len()
            );
            tally.failed += ids.len();
            progress.inc(ids.len() as u64);
            return Ok(());
        }
    };
    let settings = ReplaySettings {
        instance: org.to_owned(),
        timeout: view.performance.handler_timeout,
    };
    let items = replay::select(store, org, listener, None, None).await?;
    for item in items
        .iter()
        .filter(|i| i.dead_letters.iter().any(|d| ids.contains(d)))
    {
        let outcome = replay::replay_one(store, &built.listener, item, &settings).await?;
        println!("{}", replay_line(&outcome));
        let settled = item.dead_letters.iter().filter(|d| ids.contains(d)).count();
        if outcome.success {
            tally.resolved += settled;
        } else {
            tally.failed += settled;
        }
        progress.inc(settled as u64);
    }
    Ok(())
}

/// Puts the refused reply of dead letter `d` back in the outbox and marks
/// `d` resolved; with no refused reply left to requeue (sent meanwhile,
/// cleaned up), `d` stays pending and counts as failed.
async fn retry_reply(
    store: &dyn Store,
    d: &DeadLetterSummary,
    tally: &mut Tally,
) -> Result<(), StoreError> {
    let requeued = store
        .requeue_failed_replies(&d.listener, d.inbox_id)
        .await?;
    if requeued == 0 {
        println!(
            "dead letter {} (reply of `{}` to inbox {}): no refused reply left to send again",
            d.id, d.listener, d.inbox_id
        );
        tally.failed += 1;
        return Ok(());
    }
    store.mark_replayed(&[d.id], true).await?;
    println!(
        "dead letter {} (reply of `{}` to inbox {}): {requeued} reply row(s) back in the outbox",
        d.id, d.listener, d.inbox_id
    );
    tally.resolved += 1;
    Ok(())
}

/// The audit row of this retry.
async fn audit(trail: &AuditTrail, filter: &DeadLetterFilter, outcome: AuditOutcome, detail: &str) {
    trail
        .record(AuditEntry {
            actor: &actor(),
            action: AuditAction::RetryDeadLetters,
            target: filter.listener.as_deref(),
            detail,
            outcome,
        })
        .await;
}
