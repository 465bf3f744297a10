//! `user_activity_tracker`: last-seen time and activity counts per user.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::listener::{
    ActivityKind, ActivityRecord, Context, DryRun, Listener, ListenerError, Record,
};
use crate::event::Event;

/// Tracks, per user, when they were last seen and how many messages,
/// reactions, presence updates and typing notifications they produced, in
/// `event_listeners_useractivity`.
pub struct UserActivityTracker;

#[async_trait]
impl Listener for UserActivityTracker {
    fn name(&self) -> &str {
        "user_activity_tracker"
    }

    fn description(&self) -> &str {
        "Tracks last-seen time and message/reaction/presence/typing counts per user"
    }

    fn event_types(&self) -> &[&str] {
        &["message", "reaction", "presence", "typing"]
    }

    fn dry_run(&self, _event: &Event, _ctx: &Context) -> DryRun {
        DryRun::Handle
    }

    async fn handle(&self, event: &Event, _ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let record = match event.event_type() {
            "message" => {
                let m = event.message().ok_or_else(|| {
                    ListenerError::permanent("message event without a valid message object")
                })?;
                ActivityRecord {
                    user_id: m.sender_id,
                    email: Some(m.sender_email.clone()).filter(|e| !e.is_empty()),
                    seen_at: DateTime::<Utc>::from_timestamp(m.timestamp, 0)
                        .unwrap_or_else(Utc::now),
                    kind: ActivityKind::Message,
                }
            }
            kind @ ("reaction" | "presence" | "typing") => {
                // Who acted, as routing and filters read it: the typing
                // sender, else the reacting or present user.
                let actor = event.actor();
                let user_id = actor.id.ok_or_else(|| {
                    ListenerError::permanent(format!("{kind} event without a user id"))
                })?;
                let email = actor.email().map(str::to_owned);
                let seen_at = event.time().map(|t| t.0).unwrap_or_else(Utc::now);
                ActivityRecord {
                    user_id,
                    email,
                    seen_at,
                    kind: match kind {
                        "reaction" => ActivityKind::Reaction,
                        "presence" => ActivityKind::Presence,
                        _ => ActivityKind::Typing,
                    },
                }
            }
            other => {
                return Err(ListenerError::permanent(format!(
                    "user_activity_tracker does not handle {other} events"
                )))
            }
        };
        Ok(vec![Record::Activity(record)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            org: "o".into(),
            inbox_id: 1,
            bot_user_id: None,
            attempt: 1,
            bot: None,
            received_at: None,
        }
    }

    async fn activity(json: &str) -> ActivityRecord {
        let e = Event::parse(json).unwrap();
        match UserActivityTracker.handle(&e, &ctx()).await.unwrap().pop() {
            Some(Record::Activity(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn typing_is_attributed_to_the_sender() {
        let a = activity(
            r#"{"type":"typing","op":"start","sender":{"user_id":13,"email":"t@x"},"id":2}"#,
        )
        .await;
        assert_eq!((a.user_id, a.kind), (13, ActivityKind::Typing));
        assert_eq!(a.email.as_deref(), Some("t@x"));
    }

    #[tokio::test]
    async fn presence_uses_the_server_timestamp() {
        let a = activity(r#"{"type":"presence","user_id":4,"email":"p@x","server_timestamp":1790000000.5,"presence":{},"id":3}"#).await;
        assert_eq!(a.seen_at.timestamp(), 1_790_000_000);
        assert_eq!(a.kind, ActivityKind::Presence);
    }

    #[tokio::test]
    async fn a_reaction_without_a_user_is_a_permanent_failure() {
        let e = Event::parse(r#"{"type":"reaction","op":"add","id":1}"#).unwrap();
        assert!(UserActivityTracker.handle(&e, &ctx()).await.is_err());
    }
}
