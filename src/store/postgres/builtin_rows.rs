//! The parts of the recorder's statement (`record.rs`) for the built-in
//! listeners' tables: the message log and user activity, each row the
//! batch's organization's (`instance` leads both keys, so two
//! organizations reusing a message id or user id keep a row each).

use super::connect::Insert;
use super::record::RecordStatement;
use crate::store::aggregate::{activity_totals, message_logs};
use crate::store::model::RunRecord;

impl RecordStatement {
    pub(super) fn messagelog(
        &mut self,
        instance: &str,
        runs: &[RunRecord],
        mode: Insert,
    ) -> Result<(), sqlx::error::BoxDynError> {
        let logs = message_logs(runs);
        if logs.is_empty() {
            return Ok(());
        }
        let instance = self.bind(instance)?;
        let ids = self.bind(logs.iter().map(|(_, m)| m.message_id).collect::<Vec<_>>())?;
        let inbox = self.bind(logs.iter().map(|(i, _)| *i).collect::<Vec<_>>())?;
        let senders = self.bind(logs.iter().map(|(_, m)| m.sender_id).collect::<Vec<_>>())?;
        let emails = self.bind(
            logs.iter()
                .map(|(_, m)| m.sender_email.as_str())
                .collect::<Vec<_>>(),
        )?;
        let kinds = self.bind(
            logs.iter()
                .map(|(_, m)| m.recipient_type)
                .collect::<Vec<_>>(),
        )?;
        let channels = self.bind(
            logs.iter()
                .map(|(_, m)| m.channel.as_deref())
                .collect::<Vec<_>>(),
        )?;
        let channel_ids = self.bind(logs.iter().map(|(_, m)| m.channel_id).collect::<Vec<_>>())?;
        let topics = self.bind(
            logs.iter()
                .map(|(_, m)| m.topic.as_deref())
                .collect::<Vec<_>>(),
        )?;
        let dms = self.bind(
            logs.iter()
                .map(|(_, m)| m.dm_recipients.as_deref())
                .collect::<Vec<_>>(),
        )?;
        let lengths = self.bind(
            logs.iter()
                .map(|(_, m)| i32::try_from(m.content_length).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )?;
        let sent = self.bind(logs.iter().map(|(_, m)| m.sent_at).collect::<Vec<_>>())?;
        let conflict = match mode {
            Insert::Plain => "",
            Insert::SkipExisting => "ON CONFLICT (instance, message_id) DO NOTHING",
        };
        self.parts.push(format!(
            "INSERT INTO event_listeners_messagelog
               (instance, message_id, inbox_id, sender_id, sender_email, recipient_type, channel,
                topic, dm_recipients, content_length, sent_at, channel_id)
             SELECT {instance}::text, * FROM UNNEST({ids}::int8[], {inbox}::int8[], {senders}::int8[],
               {emails}::text[], {kinds}::text[], {channels}::text[], {topics}::text[],
               {dms}::text[], {lengths}::int4[], {sent}::timestamptz[], {channel_ids}::int8[])
             {conflict}"
        ));
        Ok(())
    }

    pub(super) fn activity(
        &mut self,
        instance: &str,
        runs: &[RunRecord],
    ) -> Result<(), sqlx::error::BoxDynError> {
        let totals = activity_totals(runs);
        if totals.is_empty() {
            return Ok(());
        }
        let instance = self.bind(instance)?;
        let users = self.bind(totals.iter().map(|t| t.user_id).collect::<Vec<_>>())?;
        let emails = self.bind(
            totals
                .iter()
                .map(|t| t.email.as_deref())
                .collect::<Vec<_>>(),
        )?;
        let seen = self.bind(totals.iter().map(|t| t.last_seen).collect::<Vec<_>>())?;
        let messages = self.bind(totals.iter().map(|t| t.messages).collect::<Vec<_>>())?;
        let reactions = self.bind(totals.iter().map(|t| t.reactions).collect::<Vec<_>>())?;
        let presence = self.bind(totals.iter().map(|t| t.presence).collect::<Vec<_>>())?;
        let typing = self.bind(totals.iter().map(|t| t.typing).collect::<Vec<_>>())?;
        let edits = self.bind(totals.iter().map(|t| t.edits).collect::<Vec<_>>())?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_useractivity AS a
               (instance, user_id, email, last_seen, message_count, reaction_count,
                presence_count, typing_count, edit_count)
             SELECT {instance}::text, * FROM UNNEST({users}::int8[], {emails}::text[], {seen}::timestamptz[],
               {messages}::int8[], {reactions}::int8[], {presence}::int8[], {typing}::int8[],
               {edits}::int8[])
             ON CONFLICT (instance, user_id) DO UPDATE SET
               email = COALESCE(excluded.email, a.email),
               last_seen = GREATEST(a.last_seen, excluded.last_seen),
               message_count = a.message_count + excluded.message_count,
               reaction_count = a.reaction_count + excluded.reaction_count,
               presence_count = a.presence_count + excluded.presence_count,
               typing_count = a.typing_count + excluded.typing_count,
               edit_count = a.edit_count + excluded.edit_count"
        ));
        Ok(())
    }
}
