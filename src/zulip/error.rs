//! [`ZulipError`]: every way a Zulip request fails, and what to do about it.

use std::time::Duration;

/// A failed Zulip API request.
#[derive(Debug, thiserror::Error)]
pub enum ZulipError {
    /// `BAD_EVENT_QUEUE_ID`: the queue expired or was deleted.
    #[error("Zulip no longer has event queue {queue_id}")]
    QueueGone {
        /// The queue asked for.
        queue_id: String,
    },
    /// 429 `RATE_LIMIT_HIT`.
    #[error("Zulip rate limit hit; retry after {:.3} s", retry_after.as_secs_f64())]
    RateLimited {
        /// How long Zulip asked us to wait.
        retry_after: Duration,
    },
    /// 401: wrong key or email, deactivated account or organization.
    #[error("Zulip refused the credentials (HTTP 401 {code}): {msg}")]
    Unauthorized {
        /// The `code` field.
        code: String,
        /// Zulip's message.
        msg: String,
    },
    /// 403: the account may not do this.
    #[error("Zulip refused access (HTTP 403 {code}): {msg}")]
    Forbidden {
        /// The `code` field.
        code: String,
        /// Zulip's message.
        msg: String,
    },
    /// Any other 4xx with a JSON error body.
    #[error("Zulip rejected the request (HTTP {status} {code}): {msg}")]
    Client {
        /// HTTP status.
        status: u16,
        /// The `code` field (`BAD_REQUEST` when absent).
        code: String,
        /// Zulip's message.
        msg: String,
    },
    /// 5xx with a JSON body.
    #[error("Zulip server error (HTTP {status}): {msg}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Zulip's message.
        msg: String,
    },
    /// A response that is not the JSON Zulip sends (a proxy's HTML page).
    #[error("Zulip answered HTTP {status} with a body that is not Zulip JSON")]
    NonJson {
        /// HTTP status.
        status: u16,
    },
    /// A success status whose `GET /events` body says `"result"` is not
    /// `"success"`: nothing of it is stored or acknowledged.
    #[error("Zulip answered HTTP {status} with a body whose result is not success")]
    ErrorResult {
        /// HTTP status.
        status: u16,
    },
    /// The request timed out.
    #[error("the request to Zulip timed out")]
    Timeout,
    /// Connection refused, reset, DNS, TLS, or a truncated response.
    #[error("cannot reach Zulip: {0}")]
    Transport(String),
}

/// What the poll loop does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Back off and repeat the same request.
    Retry,
    /// Wait exactly this long, then repeat the same request.
    Wait(Duration),
    /// The queue is lost: register a new one (and backfill).
    Reregister,
    /// Stop the daemon.
    Stop,
}

impl ZulipError {
    /// What to do about this error on a `GET /events` poll.
    pub fn action(&self) -> ErrorAction {
        match self {
            ZulipError::QueueGone { .. } => ErrorAction::Reregister,
            // On GET /events our parameters are always well formed, so a
            // 400 BAD_REQUEST means Zulip no longer accepts our acknowledgement
            // ("already been pruned" / "not in this queue"): recover as for a
            // lost queue.
            ZulipError::Client {
                status: 400, code, ..
            } if code == "BAD_REQUEST" => ErrorAction::Reregister,
            ZulipError::RateLimited { retry_after } => ErrorAction::Wait(*retry_after),
            ZulipError::Unauthorized { .. } | ZulipError::Forbidden { .. } => ErrorAction::Stop,
            ZulipError::Client { .. } => ErrorAction::Stop,
            ZulipError::Server { .. }
            | ZulipError::NonJson { .. }
            | ZulipError::ErrorResult { .. }
            | ZulipError::Timeout
            | ZulipError::Transport(_) => ErrorAction::Retry,
        }
    }

    /// Whether the credentials were refused.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ZulipError::Unauthorized { .. } | ZulipError::Forbidden { .. }
        )
    }

    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ZulipError::QueueGone { .. } => "queue_gone",
            ZulipError::RateLimited { .. } => "rate_limited",
            ZulipError::Unauthorized { .. } => "unauthorized",
            ZulipError::Forbidden { .. } => "forbidden",
            ZulipError::Client { .. } => "client_error",
            ZulipError::Server { .. } => "server_error",
            ZulipError::NonJson { .. } => "non_json",
            ZulipError::ErrorResult { .. } => "error_result",
            ZulipError::Timeout => "timeout",
            ZulipError::Transport(_) => "transport",
        }
    }
}
