//! Events: one Zulip event with its raw JSON kept whole ([`Event`]), and the
//! typed views read from it once and cached — the [`Message`] of a message
//! event, and for every event who acted ([`Actor`]), where
//! ([`Conversation`]), when ([`EventTime`]) and which message it is about
//! ([`MessageRef`]), and for the events that change messages already sent,
//! what they change ([`MessageUpdate`], [`MessageDeletion`]). Routing,
//! filters and listeners all read these views, so they agree on what an
//! event says. An element of a `GET /events` page that cannot be an event
//! as it came is kept aside as [`Quarantined`].

mod change;
mod head;
mod lenient;
mod message;
mod quarantine;
mod views;

pub use change::{MessageDeletion, MessageMove, MessageUpdate};
pub use head::{Event, EventError, WireError};
pub use message::{DirectRecipient, Message, Recipient};
pub(crate) use quarantine::logged;
pub use quarantine::{QuarantineReason, Quarantined};
pub use views::{Actor, Conversation, EventTime, MessageRef};
