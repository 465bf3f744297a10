//! Whether a message's sender is a bot. Zulip's message events do not say
//! (`is_bot` is on the user, not the message), so the responder asks
//! Zulip: `GET /users/{id}`, once per sender, cached for an hour. When
//! Zulip cannot be asked (no credentials, a server without the endpoint, an
//! outage), it falls back to the address: Zulip names every bot it creates
//! `<name>-bot@<realm>`, and its system bots have fixed names. A failed
//! lookup is not repeated for a minute, so an outage costs one request a
//! minute, not one per message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::Config;
use crate::zulip::Client;

/// How long a looked-up answer is kept.
const KNOWN_FOR: Duration = Duration::from_secs(3600);
/// How long lookups pause after one failed.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// The local parts of Zulip's system bots (`zproject/default_settings.py`).
const SYSTEM_BOTS: &[&str] = &[
    "notification-bot",
    "welcome-bot",
    "emailgateway",
    "reminder-bot",
    "nagios-send-bot",
    "nagios-receive-bot",
];

/// Tells bots from people.
pub(super) struct BotCheck {
    /// The account to ask with; `None`: the address only.
    config: Option<Config>,
    client: OnceCell<Option<Client>>,
    known: Mutex<HashMap<i64, (bool, Instant)>>,
    paused_until: Mutex<Option<Instant>>,
}

impl BotCheck {
    /// Asks Zulip with the account of `config` (built on first use).
    pub(super) fn asking(config: &Config) -> BotCheck {
        BotCheck {
            config: Some(config.clone()),
            ..BotCheck::by_address()
        }
    }

    /// Judges by the address alone.
    pub(super) fn by_address() -> BotCheck {
        BotCheck {
            config: None,
            client: OnceCell::new(),
            known: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
        }
    }

    /// Whether user `id` (who wrote from `email`) is a bot.
    pub(super) async fn is_bot(&self, id: i64, email: &str) -> bool {
        if let Some(known) = self.cached(id) {
            return known;
        }
        let Some(client) = self.client().await else {
            return looks_like_bot(email);
        };
        if self.paused() {
            return looks_like_bot(email);
        }
        match client.user(id).await {
            Ok(user) => {
                lock(&self.known).insert(id, (user.is_bot, Instant::now()));
                user.is_bot
            }
            Err(e) => {
                tracing::warn!(user_id = id, error = %e,
                    "Cannot ask Zulip whether a sender is a bot; judging by the address for a minute");
                *lock(&self.paused_until) = Some(Instant::now() + PAUSE_AFTER_FAILURE);
                looks_like_bot(email)
            }
        }
    }

    fn cached(&self, id: i64) -> Option<bool> {
        let known = lock(&self.known);
        known
            .get(&id)
            .filter(|(_, at)| at.elapsed() < KNOWN_FOR)
            .map(|(b, _)| *b)
    }

    fn paused(&self) -> bool {
        lock(&self.paused_until).is_some_and(|until| Instant::now() < until)
    }

    async fn client(&self) -> Option<&Client> {
        let config = self.config.as_ref()?;
        self.client
            .get_or_init(|| async {
                match Client::from_config(config) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "The responder cannot ask Zulip who is a bot; it judges by the sender's address");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }
}

/// A lock that survives a panic of another holder (the data is a cache).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `email` is a bot's address as Zulip makes them.
pub(super) fn looks_like_bot(email: &str) -> bool {
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    local.ends_with("-bot") || SYSTEM_BOTS.contains(&local.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_addresses_are_told_from_people() {
        assert!(looks_like_bot("deploy-bot@zulip.example.com"));
        assert!(looks_like_bot("Notification-Bot@zulip.com"));
        assert!(!looks_like_bot("alice@example.com"));
        assert!(!looks_like_bot("bottle@example.com"));
    }

    #[tokio::test]
    async fn without_an_account_the_address_decides() {
        let check = BotCheck::by_address();
        assert!(check.is_bot(5, "ci-bot@example.com").await);
        assert!(!check.is_bot(6, "bob@example.com").await);
    }
}
