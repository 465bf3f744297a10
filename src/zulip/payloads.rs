//! What the daemon sends to and reads from Zulip's endpoints: the
//! `POST /register` parameters and answer, `GET /server_settings`,
//! `GET /users/me`, `GET /users/{id}`, a page of `GET /messages` and a
//! `POST /messages`, decoded into the fields the daemon uses.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::capabilities::{DEFAULT_QUEUE_LIFETIME_SECS, MAX_QUEUE_LIFETIME_SECS};

/// The long-poll timeout when Zulip does not say (its documented default).
pub(crate) const DEFAULT_LONGPOLL_TIMEOUT: Duration = Duration::from_secs(90);

/// Parameters of `POST /register`.
#[derive(Debug, Clone, Default)]
pub struct RegisterParams {
    /// Event types to queue; `None` for every type.
    pub event_types: Option<Vec<String>>,
    /// `[[operator, operand]]` pairs.
    pub narrow: Vec<(String, String)>,
    /// Messages of every public channel.
    pub all_public_streams: bool,
    /// Rendered HTML instead of Markdown.
    pub apply_markdown: bool,
    /// Requested idle lifetime of the queue; 0 for Zulip's default (10 minutes).
    pub queue_lifespan_secs: u64,
}

/// What `POST /register` returned that the daemon uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    /// The new queue.
    pub queue_id: String,
    /// The id to acknowledge first (`-1`, or the last event folded into the state).
    pub last_event_id: i64,
    /// The server's API feature level.
    #[serde(default)]
    pub zulip_feature_level: i64,
    /// The server version.
    #[serde(default)]
    pub zulip_version: String,
    /// The newest message id at registration.
    #[serde(default)]
    pub max_message_id: Option<i64>,
    /// How long a long poll may take, in seconds.
    #[serde(default)]
    pub event_queue_longpoll_timeout_seconds: Option<u64>,
    /// The idle lifetime granted, from feature level 481.
    #[serde(default)]
    pub idle_queue_timeout_secs: Option<u64>,
    /// The idle lifetime asked for (0: the server's default); set by the
    /// client, not read from the answer.
    #[serde(skip)]
    pub asked_lifetime_secs: u64,
}

impl Registration {
    /// The HTTP timeout for `GET /events` on this queue.
    pub fn longpoll_timeout(&self) -> Duration {
        self.event_queue_longpoll_timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LONGPOLL_TIMEOUT)
    }

    /// How long Zulip keeps the queue while nobody polls, in seconds: what
    /// the server says (`idle_queue_timeout_secs`), else what a server that
    /// does not say grants for what was asked (the request, capped at 7
    /// days; 10 minutes when nothing was asked).
    pub fn granted_lifetime_secs(&self) -> u64 {
        self.idle_queue_timeout_secs
            .unwrap_or(match self.asked_lifetime_secs {
                0 => DEFAULT_QUEUE_LIFETIME_SECS,
                asked => asked.min(MAX_QUEUE_LIFETIME_SECS),
            })
    }

    /// `(asked, granted)` when the server said it grants a shorter lifetime
    /// than asked.
    pub fn shortened_lifetime(&self) -> Option<(u64, u64)> {
        let granted = self.idle_queue_timeout_secs?;
        let asked = self.asked_lifetime_secs;
        (asked > 0 && granted < asked).then_some((asked, granted))
    }
}

/// `GET /server_settings` (no authentication needed).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// The server's API feature level.
    #[serde(default)]
    pub zulip_feature_level: i64,
    /// The server version.
    #[serde(default)]
    pub zulip_version: String,
}

/// `GET /users/me`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserMe {
    /// The account's user id.
    pub user_id: i64,
    /// The account's email.
    #[serde(default)]
    pub email: String,
    /// Whether it is a bot.
    #[serde(default)]
    pub is_bot: bool,
    /// Display name.
    #[serde(default)]
    pub full_name: String,
}

/// One page of `GET /messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesPage {
    /// The messages, oldest first, exactly as sent.
    pub messages: Vec<Box<RawValue>>,
    /// Whether the page reaches the newest message.
    #[serde(default)]
    pub found_newest: bool,
}

/// `GET /users/{id}`: the fields the daemon reads of another user.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    /// The user's id.
    pub user_id: i64,
    /// Whether the user is a bot.
    #[serde(default)]
    pub is_bot: bool,
}

/// The body of `GET /users/{id}`.
#[derive(Deserialize)]
pub(super) struct UserBody {
    pub(super) user: UserInfo,
}

/// Where a message posted with `POST /messages` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A channel's topic.
    Channel {
        /// The channel's name.
        channel: &'a str,
        /// The topic.
        topic: &'a str,
    },
    /// A direct-message conversation with these users.
    Direct {
        /// The participants' user ids.
        user_ids: &'a [i64],
    },
}

/// A message to post with `POST /messages`.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    /// Where it goes.
    pub to: Destination<'a>,
    /// Its Markdown content.
    pub content: &'a str,
    /// The sender's queue, which gets the message event with
    /// `local_message_id` = `local_id`: the echo that confirms a POST whose
    /// answer was lost.
    pub queue_id: Option<&'a str>,
    /// The client-side id echoed as `local_message_id`.
    pub local_id: Option<&'a str>,
}

/// The answer to `POST /messages`.
#[derive(Debug, Deserialize)]
pub(super) struct SentBody {
    pub(super) id: i64,
}

/// Why a `POST /messages` failed, and whether Zulip may have sent the
/// message all the same.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// The failure.
    pub error: super::error::ZulipError,
    /// The request may have been processed (a timeout, a connection lost
    /// after the request was written, a server error, an unreadable
    /// answer); false when Zulip certainly did not send it (a refusal, a
    /// rate limit, a connection that never opened).
    pub maybe_sent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(json: &str, asked: u64) -> Registration {
        let mut r: Registration = serde_json::from_str(json).unwrap();
        r.asked_lifetime_secs = asked;
        r
    }

    #[test]
    fn the_lifetime_granted_is_the_servers_word_else_what_it_grants_for_the_request() {
        let old = r#"{"queue_id":"q","last_event_id":-1,"zulip_feature_level":372}"#;
        assert_eq!(registration(old, 86_400).granted_lifetime_secs(), 86_400);
        assert_eq!(registration(old, 900_000).granted_lifetime_secs(), 604_800);
        assert_eq!(registration(old, 0).granted_lifetime_secs(), 600);
        assert_eq!(registration(old, 86_400).shortened_lifetime(), None);
        let new = r#"{"queue_id":"q","last_event_id":-1,"zulip_feature_level":481,"idle_queue_timeout_secs":3600}"#;
        assert_eq!(registration(new, 86_400).granted_lifetime_secs(), 3600);
        assert_eq!(
            registration(new, 86_400).shortened_lifetime(),
            Some((86_400, 3600))
        );
        assert_eq!(registration(new, 600).shortened_lifetime(), None);
    }
}
