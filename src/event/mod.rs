//! Events: one Zulip event with its raw JSON kept whole ([`Event`]), and the
//! typed views read from it once and cached — the [`Message`] of a message
//! event, and for every event who acted ([`Actor`]), where
//! ([`Conversation`]), when ([`EventTime`]) and which message it is about
//! ([`MessageRef`]), and for the events that change messages already sent,
//! what they change ([`MessageUpdate`], [`MessageDeletion`]). Routing,
//! filters and listeners all read these views, so they agree on what an
//! event says.

mod change;
mod head;
mod message;
mod views;

pub use change::{MessageDeletion, MessageMove, MessageUpdate};
pub use head::{Event, EventError};
pub use message::{DirectRecipient, Message, Recipient};
pub use views::{Actor, Conversation, EventTime, MessageRef};
