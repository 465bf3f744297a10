//! `check-config`: check everything `run` would refuse before it contacts
//! anyone — the file (every key and value, the database URL's form, the
//! organizations and `[security] allowed_realms`), its
//! log file, the admin token file, each organization's Zulip credentials, read exactly as
//! `run` reads them (the zuliprc, the `ZULIP_*` variables, a site, the TLS
//! files), and every secret (the database password; the webhook secrets,
//! read when the instances are built), with the permissions rule — and
//! report every
//! problem at once, with
//! the exit code of a configuration problem; on success, say what the file
//! sets up, with the database password hidden, and what `[zulip]
//! event_types` means for what is stored. The enabled instances are built
//! as `run` builds them, which checks a responder's templates. Zulip itself is not contacted:
//! a key it refuses is found by `run` (exit 3).

use std::path::Path;

use anyhow::{anyhow, Context as _};

use crate::app::{validate, Validated};
use crate::cli::exit::{Failure, EXIT_CONFIG};
use crate::config::{Config, ConfigError, FilePermissions};
use crate::listeners::{Instance, Registry};

/// `check-config`. It reads the file itself, rather than being given the
/// loaded configuration, so that a problem in the file does not hide one
/// in the credentials.
///
/// # Errors
///
/// A [`Failure`] with exit code 2 when no file was given, it cannot be
/// read, or it or the credentials it names have problems (all listed).
pub(crate) fn cmd_check_config(
    path: Option<&Path>,
    permissions: FilePermissions,
    registry: &Registry,
) -> Result<(), Failure> {
    let path = path
        .ok_or_else(|| anyhow!("no configuration file given (use --config PATH)"))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let path = path
        .canonicalize()
        .with_context(|| path.display().to_string())
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let Validated {
        config,
        problems,
        credentials: loaded,
        instances,
    } = validate(&text, permissions, registry);
    let several = config.as_ref().is_some_and(|c| c.organizations().len() > 1);
    let (Some(config), true) = (config, problems.is_empty()) else {
        return Err(ConfigError {
            path: Some(path),
            problems,
        }
        .into());
    };
    println!(
        "{} is valid: database {}, listeners {}.",
        path.display(),
        config.database.url.redacted(),
        config.listeners.enabled.join(", ")
    );
    for (name, creds) in &loaded {
        let whose = match several {
            true => format!(" of organization {name}"),
            false => String::new(),
        };
        println!(
            "Zulip credentials{whose} load: {} at {} (not checked with Zulip; run does that first).",
            creds.email, creds.site
        );
        if creds.tls.insecure {
            println!("Warning{whose}: insecure = true (or ZULIP_ALLOW_INSECURE): the server's TLS certificate is not verified; run warns of it at every start.");
        }
    }
    if permissions == FilePermissions::AllowInsecure {
        println!(
            "Warning: --allow-insecure-permissions: secret files others may read are used anyway."
        );
    }
    for chain in fallback_chains(&config) {
        println!("Fallback chain: {chain} (each gets the events the one before it fails for the last time).");
    }
    for line in event_types_note(&config, &instances) {
        println!("{line}");
    }
    if config.network.max_retries.is_some() {
        println!("Note: [network] max_retries is no longer used: the daemon never gives up on Zulip, and /health reports it degraded once requests have failed for [error_handling] degraded_after ({}).", humantime::format_duration(config.error_handling.degraded_after));
    }
    Ok(())
}

/// The fallback chains of the enabled instances, as `a → b → c`.
fn fallback_chains(config: &Config) -> Vec<String> {
    let listeners = &config.listeners;
    listeners
        .enabled
        .iter()
        .filter(|n| {
            listeners
                .instances
                .get(*n)
                .is_some_and(|i| i.fallback.is_some())
        })
        .map(|n| {
            listeners
                .with_fallbacks(std::slice::from_ref(n))
                .join(" → ")
        })
        .collect()
}

/// What the registration asks Zulip for, and its trade-off: every type
/// (all stored) by default; with `[zulip] event_types`, the types left out
/// are never received, so never stored nor replayable, and an enabled
/// listener wanting one of them never runs for it.
fn event_types_note(config: &Config, instances: &[Instance]) -> Vec<String> {
    let Some(types) = &config.zulip.event_types else {
        return vec!["Zulip is asked for every event type: every event is stored in the inbox, and each listener runs only for the types it wants ([zulip] event_types narrows this).".to_owned()];
    };
    let mut lines = vec![format!(
        "Zulip is asked only for: {}. Events of other types (edits, deletions, topic moves, subscriptions, …) are never received, so never stored nor replayable.",
        types.join(", ")
    )];
    for listener in instances.iter().map(|i| &i.listener) {
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
    use crate::app::build_each;

    #[test]
    fn the_note_says_every_type_is_asked_for_by_default() {
        let config = Config::default();
        let note = event_types_note(&config, &build_each(&config, &Registry::builtin()).0);
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
        let note = event_types_note(&config, &build_each(&config, &Registry::builtin()).0);
        assert!(note[0].contains("only for: message."), "{note:?}");
        assert_eq!(
            note[1..],
            [
                "Warning: listener message_logger wants update_message, delete_message, which [zulip] event_types leaves out: it never runs for them.",
                "Warning: listener user_activity_tracker wants reaction, presence, typing, update_message, which [zulip] event_types leaves out: it never runs for them."
            ]
        );
    }
}
