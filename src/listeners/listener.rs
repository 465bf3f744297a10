//! The [`Listener`] trait every handler implements, what a run returns
//! ([`Record`]s to commit with its log row), and how it fails.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::change_records::{MessageDeleteRecord, MessageEditRecord, MessageMoveRecord};
use crate::event::{Event, Recipient};

/// `event_types()` value of a listener that wants every event type.
pub const ALL_EVENT_TYPES: &[&str] = &["*"];

/// A handler of Zulip events.
///
/// The trait is object safe: the daemon keeps listeners as
/// `Arc<dyn Listener>`. A run returns the [`Record`]s it wants stored; the
/// daemon commits them in the same transaction as the run's row in
/// `event_listeners_eventlog`, so a built-in listener's table never holds
/// the effect of a run that is not logged (and a run that is re-dispatched
/// after a crash never writes twice). Listeners with side effects outside
/// the database get [`Context::idempotency_key`] to de-duplicate them:
/// delivery is at least once.
///
/// # Example: your own listener
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use zulip_event_listeners::event::Event;
/// use zulip_event_listeners::listeners::{Context, Listener, ListenerError, Record, Registry};
///
/// struct Greeter;
///
/// #[async_trait]
/// impl Listener for Greeter {
///     fn name(&self) -> &str { "greeter" }
///     fn description(&self) -> &str { "Notices messages that say hello" }
///     fn event_types(&self) -> &[&str] { &["message"] }
///     async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
///         let Some(message) = event.message() else {
///             return Err(ListenerError::permanent("message event without a message"));
///         };
///         if Some(message.sender_id) != ctx.bot_user_id && message.content.contains("hello") {
///             tracing::info!(key = %ctx.idempotency_key(event), "Someone said hello");
///         }
///         Ok(Vec::new())
///     }
/// }
///
/// let mut registry = Registry::builtin();
/// registry.register(Arc::new(Greeter)).unwrap();
/// assert!(registry.get("greeter").is_some());
/// ```
#[async_trait]
pub trait Listener: Send + Sync + 'static {
    /// Unique name, used in the config, the event log and metrics labels.
    fn name(&self) -> &str;
    /// One line for `list`.
    fn description(&self) -> &str;
    /// The event types this listener wants ([`ALL_EVENT_TYPES`] for all).
    fn event_types(&self) -> &[&str];
    /// Handles one event.
    ///
    /// # Errors
    ///
    /// A [`ListenerError`]; it is logged and counted, never fatal.
    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError>;

    /// What `test --run --dry` does with this listener: by default nothing
    /// ([`DryRun::Unsupported`]: it may act outside the database). A
    /// listener whose only effects are its [`Record`]s answers
    /// [`DryRun::Handle`]; one that sends something describes it.
    fn dry_run(&self, _event: &Event, _ctx: &Context) -> DryRun {
        DryRun::Unsupported
    }
}

/// What `test --run --dry` does with a listener (see [`Listener::dry_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    /// Run [`Listener::handle`]: its only effects are the records it returns.
    Handle,
    /// Print this instead of running (what would be sent, and where).
    Describe(String),
    /// Neither: the listener's effects cannot be shown without causing them.
    Unsupported,
}

/// Whether `listener` wants events of `event_type`.
pub(crate) fn wants(listener: &dyn Listener, event_type: &str) -> bool {
    listener
        .event_types()
        .iter()
        .any(|t| *t == "*" || *t == event_type)
}

/// What a listener run knows besides the event.
#[derive(Debug, Clone)]
pub struct Context {
    /// The organization (instance) the event came from.
    pub org: Arc<str>,
    /// The event's row id in `event_listeners_inbox`.
    pub inbox_id: i64,
    /// The bot's own user id, so listeners can ignore their own messages.
    pub bot_user_id: Option<i64>,
    /// 1 for the first try.
    pub attempt: u32,
    /// The bot's identity, when Zulip told it at start.
    pub bot: Option<Arc<BotIdentity>>,
    /// When the event was stored in the inbox, when known.
    pub received_at: Option<DateTime<Utc>>,
    /// Set when this run is a fallback (`[listeners.NAME] fallback`): the
    /// primary's last failure, which handed the event over.
    pub fallback_of: Option<Arc<FallbackOf>>,
}

/// The failure that handed a fallback listener its event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FallbackOf {
    /// The primary listener's instance name.
    pub listener: String,
    /// How it failed: `transient`, `permanent`, `timeout`, `panic`,
    /// `circuit_open` or `disabled`.
    pub class: String,
    /// Its last error message.
    pub error: String,
}

/// Who the daemon is on Zulip (`GET /users/me`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    /// User id.
    pub user_id: i64,
    /// Email (the bot's delivery email).
    pub email: String,
    /// Full name.
    pub full_name: String,
}

impl Context {
    /// A key that is the same every time this event is delivered: org +
    /// message id for messages, org + inbox id otherwise.
    pub fn idempotency_key(&self, event: &Event) -> String {
        match event.message_id() {
            Some(id) => format!("{}:message:{id}", self.org),
            None => format!("{}:event:{}", self.org, self.inbox_id),
        }
    }
}

/// Why a listener run failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ListenerError {
    /// Worth retrying (a remote service was down, a timeout).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (the event is not what the listener expects).
    #[error("{0}")]
    Permanent(String),
    /// Worth retrying, not before the delay (a `429` with `Retry-After`).
    #[error("{0}")]
    RetryAfter(String, std::time::Duration),
}

impl ListenerError {
    /// A failure that may pass on retry.
    pub fn transient(msg: impl Into<String>) -> Self {
        ListenerError::Transient(msg.into())
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(msg: impl Into<String>) -> Self {
        ListenerError::Permanent(msg.into())
    }

    /// A failure that may pass when retried after `delay` at the earliest.
    pub fn retry_after(msg: impl Into<String>, delay: std::time::Duration) -> Self {
        ListenerError::RetryAfter(msg.into(), delay)
    }

    /// `"transient"` or `"permanent"`, for metrics and dead letters.
    pub fn class(&self) -> &'static str {
        match self {
            ListenerError::Permanent(_) => "permanent",
            ListenerError::Transient(_) | ListenerError::RetryAfter(..) => "transient",
        }
    }
}

/// A row a built-in listener asks the store to write with its run.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A row of `event_listeners_messagelog`.
    MessageLog(MessageLogRecord),
    /// An activity of one user for `event_listeners_useractivity`.
    Activity(ActivityRecord),
    /// A logged message's content was edited.
    MessageEdit(MessageEditRecord),
    /// Logged messages moved to another topic, channel, or both.
    MessageMove(MessageMoveRecord),
    /// Logged messages were deleted.
    MessageDelete(MessageDeleteRecord),
    /// A JSON value upserted into `event_listeners_listenerdata` under
    /// (listener, `key`): a listener's own state, written exactly once with
    /// its run.
    Data {
        /// The key, unique per listener.
        key: String,
        /// The value stored, replacing the one an earlier event set: runs
        /// finish in any order, and a run of an older event (a retry, a
        /// rewind) never overwrites the value of a newer one.
        value: serde_json::Value,
    },
    /// A message to post to Zulip, sent exactly once through the reply
    /// outbox (`event_listeners_replyoutbox`).
    Reply(Reply),
}

/// A message a listener sends, through the reply outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Where it goes.
    pub to: ReplyTo,
    /// Its Markdown content.
    pub content: String,
}

/// The conversation a [`Reply`] goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// A channel's topic.
    Channel {
        /// The channel's name.
        channel: String,
        /// The topic.
        topic: String,
    },
    /// A direct-message conversation, by its participants' user ids.
    Direct {
        /// Every participant (the bot is dropped by Zulip itself).
        user_ids: Vec<i64>,
    },
}

impl Reply {
    /// A reply with `content` to the conversation of `event`'s message;
    /// `None` when `event` is not a message.
    pub fn to_event(event: &Event, content: impl Into<String>) -> Option<Reply> {
        let m = event.message()?;
        let to = match &m.recipient {
            Recipient::Channel { channel, topic, .. } => ReplyTo::Channel {
                channel: channel.clone(),
                topic: topic.clone(),
            },
            Recipient::Direct { recipients } => ReplyTo::Direct {
                user_ids: recipients.iter().map(|r| r.id).collect(),
            },
        };
        Some(Reply {
            to,
            content: content.into(),
        })
    }
}

/// One logged message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageLogRecord {
    /// Message id.
    pub message_id: i64,
    /// Sender's user id.
    pub sender_id: i64,
    /// Sender's email.
    pub sender_email: String,
    /// `"channel"` or `"direct"`.
    pub recipient_type: &'static str,
    /// Channel name, for channel messages.
    pub channel: Option<String>,
    /// Channel id, for channel messages when Zulip sent it.
    pub channel_id: Option<i64>,
    /// Topic, for channel messages.
    pub topic: Option<String>,
    /// Comma-separated participant ids, for direct messages.
    pub dm_recipients: Option<String>,
    /// Content length in characters.
    pub content_length: i64,
    /// When the message was sent.
    pub sent_at: DateTime<Utc>,
}

/// What a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    /// Sent a message.
    Message,
    /// Added or removed a reaction.
    Reaction,
    /// Reported presence.
    Presence,
    /// Started or stopped typing.
    Typing,
    /// Edited or moved messages.
    Edit,
}

/// One activity of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRecord {
    /// User id.
    pub user_id: i64,
    /// Email, when the event carries it.
    pub email: Option<String>,
    /// When it happened.
    pub seen_at: DateTime<Utc>,
    /// What it was.
    pub kind: ActivityKind,
}
/// In unit tests: the three identity methods of a `Listener` impl, so a
/// test listener states only its name, description, event types and
/// `handle`.
#[cfg(test)]
macro_rules! test_identity {
    ($name:literal, $description:literal, [$($event_type:literal),*]) => {
        fn name(&self) -> &str {
            $name
        }
        fn description(&self) -> &str {
            $description
        }
        fn event_types(&self) -> &[&str] {
            &[$($event_type),*]
        }
    };
}
#[cfg(test)]
pub(crate) use test_identity;
