//! What the daemon sends to and reads from Zulip's endpoints: the
//! `POST /register` parameters and answer, `GET /users/me` and a page of
//! `GET /messages`, decoded into the fields the daemon uses.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

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
}

impl Registration {
    /// The HTTP timeout for `GET /events` on this queue.
    pub fn longpoll_timeout(&self) -> Duration {
        self.event_queue_longpoll_timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LONGPOLL_TIMEOUT)
    }
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
