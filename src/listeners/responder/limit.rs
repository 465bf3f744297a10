//! `rate_limit_per_conversation`: at most N replies in any 60 seconds per
//! conversation (a channel's topic, or a direct-message group), a sliding
//! window of the times of the replies given. Conversations quiet for a
//! window are forgotten, so memory follows the active ones.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The window the limit counts over.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Conversations remembered before quiet ones are swept.
const SWEEP_ABOVE: usize = 1024;

/// Replies given per conversation in the last [`WINDOW`].
#[derive(Debug)]
pub(super) struct ConversationLimit {
    limit: usize,
    given: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// What the limit says of one more reply.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Reply.
    Reply,
    /// Over the limit: no reply.
    OverLimit,
}

impl ConversationLimit {
    /// At most `limit` replies a minute per conversation.
    pub(super) fn new(limit: u32) -> ConversationLimit {
        ConversationLimit {
            limit: limit.max(1) as usize,
            given: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a reply to `conversation` now, if the limit allows it.
    pub(super) fn admit(&self, conversation: &str) -> Admission {
        let now = Instant::now();
        // Never held across an await: this function is synchronous.
        let mut given = self.given.lock().unwrap_or_else(|p| p.into_inner());
        if given.len() > SWEEP_ABOVE {
            given.retain(|_, times| times.back().is_some_and(|t| now - *t < WINDOW));
        }
        let times = given.entry(conversation.to_owned()).or_default();
        while times.front().is_some_and(|t| now - *t >= WINDOW) {
            times.pop_front();
        }
        if times.len() < self.limit {
            times.push_back(now);
            Admission::Reply
        } else {
            Admission::OverLimit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_conversation_gets_n_replies_a_minute_and_others_are_not_affected() {
        let limit = ConversationLimit::new(2);
        assert_eq!(limit.admit("a"), Admission::Reply);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(limit.admit("a"), Admission::Reply);
        assert!(limit.admit("a") == Admission::OverLimit);
        assert_eq!(limit.admit("b"), Admission::Reply, "another conversation");
        // 60 s after the first reply, one slot is free again (sliding window).
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(limit.admit("a"), Admission::Reply);
        assert!(limit.admit("a") == Admission::OverLimit);
    }
}
