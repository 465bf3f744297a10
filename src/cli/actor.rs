//! Operator controls over listeners: who is acting (for the audit trail),
//! the registered listener a command names, and leaving out the listeners
//! that `disable` switched off in the store.

use crate::config::Config;
use crate::listeners::{Instance, InstanceError, Registry, RegistryError};
use crate::store::ListenerState;

/// Who runs this command, for `changed_by` and the audit trail:
/// `$SUDO_USER` (the person behind `sudo -u service-user`), else `$USER`,
/// else `unknown`; followed by `@hostname` when the host name is known.
pub(super) fn actor() -> String {
    let var = |k: &str| std::env::var(k).ok();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| var("HOSTNAME"));
    actor_from(var("SUDO_USER"), var("USER"), host)
}

/// [`actor`] from its parts.
fn actor_from(sudo_user: Option<String>, user: Option<String>, host: Option<String>) -> String {
    let non_empty = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let who = non_empty(sudo_user)
        .or_else(|| non_empty(user))
        .unwrap_or_else(|| "unknown".to_owned());
    match non_empty(host) {
        Some(host) => format!("{who}@{host}"),
        None => who,
    }
}

/// Fails unless `name` is a listener instance: configured in a
/// `[listeners.NAME]` table, or registered.
///
/// # Errors
///
/// [`RegistryError::Unknown`], naming the instances available.
pub(super) fn known(config: &Config, registry: &Registry, name: &str) -> Result<(), RegistryError> {
    if config.listeners.instances.contains_key(name) || registry.get(name).is_some() {
        return Ok(());
    }
    Err(RegistryError::Unknown {
        name: name.to_owned(),
        available: config.listeners.names(&registry.names()).join(", "),
    })
}

/// The listener instance `name`, built as `run` builds it.
///
/// # Errors
///
/// [`InstanceError`] when it is unknown or cannot be built.
pub(super) fn instance(
    config: &Config,
    registry: &Registry,
    name: &str,
) -> Result<Instance, InstanceError> {
    let mut built = Instance::build_all(registry, config, &[name.to_owned()])?;
    built.pop().ok_or_else(|| InstanceError::Build {
        name: name.to_owned(),
        reason: "nothing was built".to_owned(),
    })
}

/// The state of `name` when it is disabled.
pub(super) fn disabled<'a>(states: &'a [ListenerState], name: &str) -> Option<&'a ListenerState> {
    states.iter().find(|s| s.name == name && !s.enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn the_actor_is_the_sudo_user_then_the_user_then_unknown_at_the_host() {
        assert_eq!(
            actor_from(s("alice"), s("zulip-listeners"), s("box\n")),
            "alice@box"
        );
        assert_eq!(actor_from(None, s("bob"), None), "bob");
        assert_eq!(actor_from(s(""), None, s(" ")), "unknown");
    }
}
