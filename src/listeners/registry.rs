//! [`Registry`]: the listeners this binary knows, built-in and registered.

use std::sync::Arc;

use super::listener::{wants, Listener};
use super::{MessageLogger, UserActivityTracker};

/// The listeners available to the daemon, by name.
#[derive(Clone, Default)]
pub struct Registry {
    listeners: Vec<Arc<dyn Listener>>,
}

/// Why a listener cannot be registered or selected.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Two listeners with one name.
    #[error("a listener named `{0}` is already registered")]
    Duplicate(String),
    /// A name that is not registered.
    #[error("unknown listener `{name}` (available: {available})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every registered name.
        available: String,
    },
}

impl Registry {
    /// The built-in listeners: `message_logger` and `user_activity_tracker`.
    pub fn builtin() -> Registry {
        Registry {
            listeners: vec![Arc::new(MessageLogger), Arc::new(UserActivityTracker)],
        }
    }

    /// Adds a listener.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Duplicate`] when the name is taken.
    pub fn register(&mut self, listener: Arc<dyn Listener>) -> Result<(), RegistryError> {
        if self.get(listener.name()).is_some() {
            return Err(RegistryError::Duplicate(listener.name().to_owned()));
        }
        self.listeners.push(listener);
        Ok(())
    }

    /// The listener called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Listener>> {
        self.listeners.iter().find(|l| l.name() == name)
    }

    /// Every registered listener, in registration order.
    pub fn all(&self) -> &[Arc<dyn Listener>] {
        &self.listeners
    }

    /// Every registered name.
    pub fn names(&self) -> Vec<&str> {
        self.listeners.iter().map(|l| l.name()).collect()
    }

    /// The listeners called `names`, in that order.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Unknown`] for the first name not registered.
    pub fn select(&self, names: &[String]) -> Result<Vec<Arc<dyn Listener>>, RegistryError> {
        names
            .iter()
            .map(|n| {
                self.get(n).cloned().ok_or_else(|| RegistryError::Unknown {
                    name: n.clone(),
                    available: self.names().join(", "),
                })
            })
            .collect()
    }
}

/// The union of event types `listeners` want, for `POST /register`;
/// `None` means every type.
pub fn wanted_event_types(listeners: &[Arc<dyn Listener>]) -> Option<Vec<String>> {
    let mut types: Vec<String> = Vec::new();
    for l in listeners {
        for t in l.event_types() {
            if *t == "*" {
                return None;
            }
            if !types.iter().any(|x| x == t) {
                types.push((*t).to_owned());
            }
        }
    }
    Some(types)
}

/// Indices into `listeners` of those that want `event_type`.
pub fn interested(listeners: &[Arc<dyn Listener>], event_type: &str) -> Vec<usize> {
    listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| wants(l.as_ref(), event_type))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtins_are_registered_under_their_names() {
        let r = Registry::builtin();
        assert_eq!(r.names(), vec!["message_logger", "user_activity_tracker"]);
    }

    #[test]
    fn a_duplicate_name_is_refused() {
        let mut r = Registry::builtin();
        assert!(r.register(Arc::new(MessageLogger)).is_err());
    }

    #[test]
    fn register_asks_for_the_union_of_wanted_types() {
        let r = Registry::builtin();
        let types = wanted_event_types(r.all()).unwrap();
        assert_eq!(
            types,
            vec![
                "message",
                "update_message",
                "delete_message",
                "reaction",
                "presence",
                "typing"
            ]
        );
        assert_eq!(interested(r.all(), "reaction"), vec![1]);
        assert_eq!(interested(r.all(), "message"), vec![0, 1]);
        assert_eq!(interested(r.all(), "update_message"), vec![0, 1]);
        assert_eq!(interested(r.all(), "delete_message"), vec![0]);
        assert!(interested(r.all(), "stream").is_empty());
    }

    #[test]
    fn selecting_an_unknown_name_says_what_exists() {
        let err = Registry::builtin()
            .select(&["nope".to_owned()])
            .err()
            .unwrap();
        assert!(err.to_string().contains("message_logger"));
    }
}
