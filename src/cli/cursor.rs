//! `cursor show | rewind | skip`: an organization's stored queue position
//! and dispatch watermark, read, or moved for chosen listeners
//! (`store/cursor_control.rs` says how, without deleting anything). A
//! rewind or a skip changes what the next start dispatches, so it takes the
//! organization's instance lock first: while a daemon runs it is refused.
//! Both are audited.

use crate::app;
use crate::cli::actor::{actor, known};
use crate::cli::args::CursorCommand;
use crate::cli::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;
use crate::listeners::Registry;
use crate::store::{
    AuditAction, AuditEntry, AuditOutcome, AuditTrail, CursorPosition, RewindFrom, Rewound,
};

/// `cursor show | rewind | skip`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 for an unknown organization or listener, 1 when a
/// daemon holds the lock or the event is not stored, 4 when the database
/// fails.
pub(crate) async fn cmd_cursor(
    config: &Config,
    registry: &Registry,
    action: CursorCommand,
) -> Result<(), Failure> {
    match action {
        CursorCommand::Show { org, json } => show(config, org.as_deref(), json).await,
        CursorCommand::Rewind {
            to_inbox_id,
            since,
            listener,
            org,
        } => {
            let from = match (to_inbox_id, since) {
                (Some(id), _) => RewindFrom::InboxId(id),
                (None, Some(at)) => RewindFrom::Since(at),
                (None, None) => {
                    return Err(Failure::new(
                        EXIT_CONFIG,
                        anyhow::anyhow!("give --to-inbox-id N or --since TIME"),
                    ))
                }
            };
            rewind(config, registry, org.as_deref(), from, listener).await
        }
        CursorCommand::Skip {
            inbox_id,
            listener,
            org,
        } => skip(config, registry, org.as_deref(), inbox_id, &listener).await,
    }
}

async fn show(config: &Config, org: Option<&str>, json: bool) -> Result<(), Failure> {
    let org = config.organization(org)?;
    let name = org.scaling.instance_id.as_str();
    let store = app::open_store(config, false).await?;
    let position = store.cursor_position(name).await?;
    if json {
        let value = serde_json::json!({
            "org": name,
            "cursor": position,
            "queue_lifetime_granted": null,
        });
        println!("{value}");
        return Ok(());
    }
    match position {
        None => println!("Organization {name}: no cursor stored yet (never polled)."),
        Some(p) => print!("{}", describe(name, &p)),
    }
    Ok(())
}

/// `cursor show`'s text.
fn describe(name: &str, p: &CursorPosition) -> String {
    let or_none = |v: Option<i64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
    format!(
        "organization        {name}\n\
         site                {}\n\
         queue id            {}\n\
         last event id       {}\n\
         last message id     {}\n\
         dispatched through  {}\n\
         queue lifetime      not stored\n",
        p.site.as_deref().unwrap_or("none"),
        p.queue_id.as_deref().unwrap_or("none"),
        or_none(p.last_event_id),
        or_none(p.last_message_id),
        p.dispatched_through,
    )
}

async fn rewind(
    config: &Config,
    registry: &Registry,
    org: Option<&str>,
    from: RewindFrom,
    listeners: Vec<String>,
) -> Result<(), Failure> {
    let org = config.organization(org)?;
    let name = org.scaling.instance_id.as_str();
    let listeners = if listeners.is_empty() {
        org.listeners.enabled.clone()
    } else {
        for l in &listeners {
            known(&org, registry, l)?;
        }
        listeners
    };
    let store = app::open_store(config, false).await?;
    let _lock = store.lock_instance(name).await?;
    let who = actor();
    let result = store.rewind(name, from, &listeners, &who).await;
    let detail = match &result {
        Ok(r) => rewound_text(r, &listeners),
        Err(e) => e.to_string(),
    };
    AuditTrail::new(store.clone(), config.data_protection.audit_trail)
        .record(AuditEntry {
            actor: &who,
            action: AuditAction::CursorRewind,
            target: Some(name),
            detail: &detail,
            outcome: if result.is_ok() {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Failed
            },
        })
        .await;
    result?;
    println!("Organization {name}: {detail}.");
    Ok(())
}

/// What a rewind did, in words.
fn rewound_text(r: &Rewound, listeners: &[String]) -> String {
    match r.from_inbox_id {
        None => "no stored event from there on; nothing changed".to_owned(),
        Some(id) => format!(
            "{} stored event(s) from inbox id {id} on are dispatched again at the next start to {}",
            r.events,
            listeners.join(", ")
        ),
    }
}

async fn skip(
    config: &Config,
    registry: &Registry,
    org: Option<&str>,
    inbox_id: i64,
    listener: &str,
) -> Result<(), Failure> {
    let org = config.organization(org)?;
    let name = org.scaling.instance_id.as_str();
    known(&org, registry, listener)?;
    let store = app::open_store(config, false).await?;
    let _lock = store.lock_instance(name).await?;
    let who = actor();
    let result = store.skip(name, inbox_id, listener, &who).await;
    let (outcome, detail) = match &result {
        Ok(Some(t)) => (
            AuditOutcome::Ok,
            format!("inbox id {inbox_id} ({t}) marked done without running it"),
        ),
        Ok(None) => (
            AuditOutcome::Failed,
            format!("organization {name} has no stored event with inbox id {inbox_id}"),
        ),
        Err(e) => (AuditOutcome::Failed, e.to_string()),
    };
    AuditTrail::new(store.clone(), config.data_protection.audit_trail)
        .record(AuditEntry {
            actor: &who,
            action: AuditAction::CursorSkip,
            target: Some(listener),
            detail: &detail,
            outcome,
        })
        .await;
    match result? {
        Some(_) => {
            println!("{listener}: {detail}.");
            Ok(())
        }
        None => Err(Failure::new(EXIT_FAILURE, anyhow::anyhow!(detail))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_every_field_and_none_for_what_is_missing() {
        let p = CursorPosition {
            site: None,
            queue_id: Some("q-1".to_owned()),
            last_event_id: Some(41),
            last_message_id: None,
            dispatched_through: 7,
        };
        let text = describe("default", &p);
        assert!(text.contains("queue id            q-1\n"), "{text}");
        assert!(text.contains("last event id       41\n"), "{text}");
        assert!(text.contains("last message id     none\n"), "{text}");
        assert!(text.contains("dispatched through  7\n"), "{text}");
    }

    #[test]
    fn a_rewind_with_nothing_after_it_says_nothing_changed() {
        let r = Rewound {
            from_inbox_id: None,
            events: 0,
        };
        assert!(rewound_text(&r, &[]).contains("nothing changed"));
    }
}
