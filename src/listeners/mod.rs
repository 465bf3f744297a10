//! Listeners: the [`Listener`] trait, the [`Registry`] of available
//! listeners, and the built-in listeners, one file each.

mod change_records;
mod listener;
mod message_logger;
mod registry;
mod user_activity_tracker;

pub use change_records::{MessageDeleteRecord, MessageEditRecord, MessageMoveRecord};
#[cfg(test)]
pub(crate) use listener::test_identity;
pub use listener::{
    ActivityKind, ActivityRecord, Context, Listener, ListenerError, MessageLogRecord, Record,
    ALL_EVENT_TYPES,
};
pub use message_logger::MessageLogger;
pub use registry::{interested, wanted_event_types, Registry, RegistryError};
pub use user_activity_tracker::UserActivityTracker;
