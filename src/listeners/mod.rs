//! Listeners: the [`Listener`] trait, the [`Registry`] of listeners
//! compiled in, the [`Instance`]s a configuration builds from them and from
//! the configurable kinds (`webhook`, `exec`, `responder`, one folder
//! each), and the built-in listeners, one file each.

mod change_records;
mod envelope;
mod exec;
mod instance;
mod listener;
mod message_logger;
mod payload_limit;
mod registry;
mod responder;
mod user_activity_tracker;
mod webhook;

pub use change_records::{MessageDeleteRecord, MessageEditRecord, MessageMoveRecord};
pub use instance::{Instance, InstanceError};
#[cfg(test)]
pub(crate) use listener::test_identity;
pub use listener::{
    ActivityKind, ActivityRecord, BotIdentity, Context, DryRun, FallbackOf, Listener,
    ListenerError, MessageLogRecord, Record, Reply, ReplyTo, ALL_EVENT_TYPES,
};
pub use message_logger::MessageLogger;
pub use registry::{interested, wanted_event_types, Registry, RegistryError};
pub use user_activity_tracker::UserActivityTracker;
