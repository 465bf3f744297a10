//! `check-config`: say that the file is valid and what it sets up (loading
//! it already reported every problem, and the enabled instances are built,
//! which checks a responder's templates), with the database password
//! hidden, and what `[zulip] event_types` means for what is stored.

use std::path::Path;

use anyhow::{anyhow, Context as _};

use crate::cli::exit::{Failure, EXIT_CONFIG};
use crate::config::Config;
use crate::listeners::{Instance, Registry};

/// `check-config`.
///
/// # Errors
///
/// A [`Failure`] with exit code 2 when no file was given or it cannot be found,
/// or an enabled instance cannot be built (such as a responder template
/// naming a field its rule does not fill).
pub(crate) fn cmd_check_config(
    path: Option<&Path>,
    config: &Config,
    registry: &Registry,
) -> Result<(), Failure> {
    // Loading already validated the file; reaching here means it is valid.
    let path = path
        .ok_or_else(|| anyhow!("no configuration file given (use --config PATH)"))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let path = path
        .canonicalize()
        .with_context(|| path.display().to_string())
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    // Building the enabled instances checks what only a kind can (a
    // responder's templates): a bad one is exit 2, as it is for `run`.
    Instance::build_all(registry, config, &config.listeners.enabled)?;
    println!(
        "{} is valid: database {}, listeners {}.",
        path.display(),
        config.database.url.redacted(),
        config.listeners.enabled.join(", ")
    );
    for line in event_types_note(config, registry) {
        println!("{line}");
    }
    Ok(())
}

/// What the registration asks Zulip for, and its trade-off: every type
/// (all stored) by default; with `[zulip] event_types`, the types left out
/// are never received, so never stored nor replayable, and an enabled
/// listener wanting one of them never runs for it.
fn event_types_note(config: &Config, registry: &Registry) -> Vec<String> {
    let Some(types) = &config.zulip.event_types else {
        return vec!["Zulip is asked for every event type: every event is stored in the inbox, and each listener runs only for the types it wants ([zulip] event_types narrows this).".to_owned()];
    };
    let mut lines = vec![format!(
        "Zulip is asked only for: {}. Events of other types (edits, deletions, topic moves, subscriptions, …) are never received, so never stored nor replayable.",
        types.join(", ")
    )];
    let enabled = registry
        .select(&config.listeners.enabled)
        .unwrap_or_default();
    for listener in enabled {
        let wanted = listener.event_types();
        if wanted.contains(&"*") {
            continue;
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|t| !types.iter().any(|x| x == t))
            .collect();
        if !missing.is_empty() {
            lines.push(format!(
                "Warning: listener {} wants {}, which [zulip] event_types leaves out: it never runs for them.",
                listener.name(),
                missing.join(", ")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_says_every_type_is_asked_for_by_default() {
        let note = event_types_note(&Config::default(), &Registry::builtin());
        assert_eq!(note.len(), 1);
        assert!(
            note[0].starts_with("Zulip is asked for every event type"),
            "{note:?}"
        );
    }

    #[test]
    fn a_narrowed_list_names_the_trade_off_and_the_listeners_it_starves() {
        let config = Config::parse(
            "[zulip]\nevent_types = [\"message\"]\n",
            &["message_logger", "user_activity_tracker"],
        )
        .unwrap();
        let note = event_types_note(&config, &Registry::builtin());
        assert!(note[0].contains("only for: message."), "{note:?}");
        assert_eq!(
            note[1],
            "Warning: listener user_activity_tracker wants reaction, presence, typing, which [zulip] event_types leaves out: it never runs for them."
        );
        assert_eq!(
            note.len(),
            2,
            "message_logger wants only messages: {note:?}"
        );
    }
}
