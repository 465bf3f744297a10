//! The settings of a fake server: the bot's identity, heartbeat period,
//! long-poll and queue timeouts, its rate limit, and what it reports about
//! itself.

use std::time::Duration;

use super::rate_limit::RateLimit;

/// The bot's full name (`GET /users/me`, and what an @-mention of it writes).
pub const BOT_FULL_NAME: &str = "Listener Bot";

/// Configuration of a [`FakeZulip`] server.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// The bot's email (Basic auth user name, compared case-insensitively).
    pub email: String,
    /// The bot's API key (Basic auth password).
    pub api_key: String,
    /// How long a `GET /events` parks before a heartbeat event is pushed.
    pub heartbeat: Duration,
    /// Value returned as `event_queue_longpoll_timeout_seconds` by `/register`.
    pub longpoll_timeout_seconds: u64,
    /// Default idle timeout of a queue (used unless `queue_lifespan_secs` > 0).
    pub queue_timeout: Duration,
    /// `is_bot` reported by `GET /users/me`.
    pub is_bot: bool,
    /// The bot's own user id.
    pub user_id: i64,
    /// `zulip_feature_level` reported by `/register` and `/server_settings`.
    /// From 481 it takes `idle_queue_timeout` (and ignores
    /// `queue_lifespan_secs`) and reports `idle_queue_timeout_secs`.
    pub feature_level: i64,
    /// The longest `idle_queue_timeout` granted from feature level 481.
    pub max_idle_queue_timeout: Duration,
    /// The bot's rate limit (Zulip's default, 200 requests a minute);
    /// `None` for none, and no `X-RateLimit-*` headers.
    pub rate_limit: Option<RateLimit>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            email: "listener-bot@example.com".to_owned(),
            api_key: "fake-api-key-0123456789abcdef".to_owned(),
            heartbeat: Duration::from_secs(2),
            longpoll_timeout_seconds: 10,
            queue_timeout: Duration::from_secs(600),
            is_bot: true,
            user_id: 100,
            feature_level: 372,
            max_idle_queue_timeout: Duration::from_secs(604_800),
            rate_limit: Some(RateLimit::default()),
        }
    }
}
