//! `user_activity_tracker`: last-seen time and activity counts per user.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::listener::{
    ActivityKind, ActivityRecord, Context, DryRun, Listener, ListenerError, Record,
};
use crate::event::Event;

/// Tracks, per user, when they were last seen and how many messages,
/// reactions, presence updates, typing notifications and edits they
/// produced, in `event_listeners_useractivity`.
///
/// An edit (`update_message`: new content, a move, or both) is one activity
/// of the person who made it, at its `edit_timestamp`, however many
/// messages it changed; a re-rendering (`rendering_only`, no person) is
/// none. Deletions name nobody, so they are not counted. A presence event
/// in the modern form (`simplified_presence_events`) names several users:
/// each is one presence update.
pub struct UserActivityTracker;

#[async_trait]
impl Listener for UserActivityTracker {
    fn name(&self) -> &str {
        "user_activity_tracker"
    }

    fn description(&self) -> &str {
        "Tracks last-seen time and message/reaction/presence/typing/edit counts per user"
    }

    fn event_types(&self) -> &[&str] {
        &[
            "message",
            "reaction",
            "presence",
            "typing",
            "update_message",
        ]
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
            "update_message" => {
                let Some(u) = event.message_update() else {
                    return Ok(Vec::new());
                };
                let Some(user_id) = u.user_id.filter(|_| !u.rendering_only) else {
                    return Ok(Vec::new());
                };
                ActivityRecord {
                    user_id,
                    email: None,
                    seen_at: u.edited_at.unwrap_or_else(Utc::now),
                    kind: ActivityKind::Edit,
                }
            }
            "presence" if event.user_id().is_none() => return Ok(modern_presence(event)),
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

/// The users of a presence event in the modern form: `presences` maps user
/// ids to `active_timestamp` and `idle_timestamp`; each user is seen at the
/// later of the two.
fn modern_presence(event: &Event) -> Vec<Record> {
    #[derive(serde::Deserialize, Default)]
    struct Modern {
        #[serde(default)]
        presences: serde_json::Map<String, Value>,
    }
    let modern: Modern = serde_json::from_str(event.raw()).unwrap_or_default();
    modern
        .presences
        .iter()
        .filter_map(|(id, p)| {
            let user_id = id.parse().ok()?;
            let secs = ["active_timestamp", "idle_timestamp"]
                .iter()
                .filter_map(|k| p.get(*k)?.as_f64())
                .fold(f64::NAN, f64::max);
            let seen_at = (secs.is_finite() && secs > 0.0)
                .then(|| DateTime::from_timestamp_millis((secs * 1000.0) as i64))
                .flatten()
                .unwrap_or_else(Utc::now);
            Some(Record::Activity(ActivityRecord {
                user_id,
                email: None,
                seen_at,
                kind: ActivityKind::Presence,
            }))
        })
        .collect()
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
            fallback_of: None,
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
    async fn an_edit_is_one_activity_of_the_editor_and_a_rendering_is_none() {
        let a = activity(r#"{"type":"update_message","user_id":7,"edit_timestamp":1796111633,"message_id":516,"message_ids":[516,517],"stream_id":4,"orig_subject":"a","subject":"b","propagate_mode":"change_all","flags":[],"id":7}"#).await;
        assert_eq!((a.user_id, a.kind), (7, ActivityKind::Edit));
        assert_eq!(a.seen_at.timestamp(), 1_796_111_633);
        let e = Event::parse(r#"{"type":"update_message","rendering_only":true,"message_id":5,"message_ids":[5],"content":"x","edit_timestamp":1,"flags":[],"id":1}"#).unwrap();
        assert!(UserActivityTracker
            .handle(&e, &ctx())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_modern_presence_event_counts_each_user_it_names() {
        let e = Event::parse(r#"{"type":"presence","presences":{"10":{"active_timestamp":1790000000,"idle_timestamp":1790000050},"11":{"idle_timestamp":1790000009}},"id":4}"#).unwrap();
        let records = UserActivityTracker.handle(&e, &ctx()).await.unwrap();
        let seen: Vec<(i64, i64)> = records
            .iter()
            .map(|r| match r {
                Record::Activity(a) => (a.user_id, a.seen_at.timestamp()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seen, vec![(10, 1_790_000_050), (11, 1_790_000_009)]);
    }

    #[tokio::test]
    async fn a_reaction_without_a_user_is_a_permanent_failure() {
        let e = Event::parse(r#"{"type":"reaction","op":"add","id":1}"#).unwrap();
        assert!(UserActivityTracker.handle(&e, &ctx()).await.is_err());
    }
}
