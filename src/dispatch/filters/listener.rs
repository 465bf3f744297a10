//! [`ListenerFilter`]: the per-listener filters of `[listeners.NAME]`
//! (event types, channels, topics, senders, content), ready to match with
//! names lower-cased; and [`Users`], a set of users by id or email, shared
//! with `[security] blocked_users`.

use std::collections::HashSet;

use crate::config::{ListenerFilterConfig, UserRef};
use crate::event::{Actor, Conversation, Event};

/// A set of users by id and by email (emails lower-cased).
#[derive(Debug, Default)]
pub(super) struct Users {
    ids: HashSet<i64>,
    emails: HashSet<String>,
}

impl Users {
    pub(super) fn new(list: &[UserRef]) -> Users {
        let mut users = Users::default();
        for u in list {
            match u {
                UserRef::Id(id) => {
                    users.ids.insert(*id);
                }
                UserRef::Email(e) => {
                    users.emails.insert(e.to_lowercase());
                }
            }
        }
        users
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.emails.is_empty()
    }

    /// Whether the actor is in the set, by id or by any of its emails.
    pub(super) fn contains(&self, actor: &Actor) -> bool {
        actor.id.is_some_and(|id| self.ids.contains(&id))
            || actor
                .emails
                .iter()
                .any(|e| self.emails.contains(&e.to_lowercase()))
    }
}

/// One listener's filters.
#[derive(Debug)]
pub(super) struct ListenerFilter {
    event_types: Option<HashSet<String>>,
    channels: Option<HashSet<String>>,
    topics: Option<HashSet<String>>,
    senders: Option<Users>,
    content: Option<regex::Regex>,
}

impl ListenerFilter {
    pub(super) fn new(f: &ListenerFilterConfig) -> ListenerFilter {
        let lower = |list: &Option<Vec<String>>| {
            list.as_ref()
                .map(|l| l.iter().map(|s| s.to_lowercase()).collect::<HashSet<_>>())
        };
        ListenerFilter {
            event_types: f.event_types.as_ref().map(|l| l.iter().cloned().collect()),
            channels: lower(&f.channels),
            topics: lower(&f.topics),
            senders: f.senders.as_deref().map(Users::new),
            content: f.content_regex.clone(),
        }
    }

    /// Whether `event` passes: its type is listed; a message is in a listed
    /// channel and topic and its content matches (other events have none to
    /// check); its actor, when it names one, is a listed sender.
    pub(super) fn passes(&self, event: &Event) -> bool {
        if self
            .event_types
            .as_ref()
            .is_some_and(|t| !t.contains(event.event_type()))
        {
            return false;
        }
        if let Some(m) = event.message() {
            let (channel, topic) = match event.conversation() {
                Some(Conversation::Channel { channel, topic, .. }) => (channel, Some(topic)),
                _ => (None, None),
            };
            let listed = |set: &Option<HashSet<String>>, value: Option<&str>| match set {
                None => true,
                Some(set) => value.is_some_and(|v| set.contains(&v.to_lowercase())),
            };
            if !listed(&self.channels, channel) || !listed(&self.topics, topic) {
                return false;
            }
            if self
                .content
                .as_ref()
                .is_some_and(|re| !re.is_match(&m.content))
            {
                return false;
            }
        }
        if let Some(senders) = &self.senders {
            let actor = event.actor();
            if actor.is_known() && !senders.contains(&actor) {
                return false;
            }
        }
        true
    }
}
