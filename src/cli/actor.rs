//! Operator controls over listeners: who is acting (for the audit trail),
//! the registered listener a command names, and leaving out the listeners
//! that `disable` switched off in the store.

use std::sync::Arc;

use crate::listeners::{Listener, Registry, RegistryError};
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

/// The registered listener `name`.
///
/// # Errors
///
/// [`RegistryError::Unknown`], naming the listeners available.
pub(super) fn registered<'a>(
    registry: &'a Registry,
    name: &str,
) -> Result<&'a Arc<dyn Listener>, RegistryError> {
    registry.get(name).ok_or_else(|| RegistryError::Unknown {
        name: name.to_owned(),
        available: registry.names().join(", "),
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
