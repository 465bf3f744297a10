//! Operator controls over listeners: who is acting (for the audit trail),
//! and leaving out the listeners that `disable` switched off in the store.

use std::sync::Arc;

use crate::listeners::Listener;
use crate::store::{ListenerState, Store, StoreError};

/// Who runs this command, for `changed_by` and the audit trail:
/// `$SUDO_USER` (the person behind `sudo -u service-user`), else `$USER`,
/// else `unknown`; followed by `@hostname` when the host name is known.
pub fn actor() -> String {
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

/// `listeners` without those disabled in the store, logging each one left
/// out and why. A disabled listener gets no runs: its events are recorded
/// as dispatched without it, and `replay` is the way to run them later.
///
/// # Errors
///
/// [`StoreError`] when the listener states cannot be read.
pub async fn without_disabled(
    store: &dyn Store,
    listeners: Vec<Arc<dyn Listener>>,
) -> Result<Vec<Arc<dyn Listener>>, StoreError> {
    let states = store.listener_states().await?;
    Ok(listeners
        .into_iter()
        .filter(|l| match disabled(&states, l.name()) {
            Some(s) => {
                tracing::warn!(
                    listener = l.name(),
                    reason = s.reason.as_deref().unwrap_or(""),
                    changed_by = %s.changed_by,
                    changed_at = %s.changed_at.to_rfc3339(),
                    "Skipping a listener disabled with `disable`; `enable` it to run it again"
                );
                false
            }
            None => true,
        })
        .collect())
}

/// The state of `name` when it is disabled.
pub fn disabled<'a>(states: &'a [ListenerState], name: &str) -> Option<&'a ListenerState> {
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
