//! Changing messages already sent, as Zulip 10.2 does: content edits,
//! moves to another topic or channel (`propagate_mode` `change_one`,
//! `change_later`, `change_all`), and deletions, each kept in the history
//! and pushed as the `update_message` / `delete_message` event a real
//! server sends (the shapes of `shared/fixtures`). A deletion's shape
//! follows each queue's `bulk_message_deletion` capability.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::queues::State;
use super::server::FakeZulip;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl State {
    /// Message `id` of the history, if it was sent.
    fn sent(&mut self, id: i64) -> &mut Value {
        let index = usize::try_from(id - 1).expect("message ids start at 1");
        self.messages
            .get_mut(index)
            .expect("fake_zulip: no such message")
    }
}

impl FakeZulip {
    /// The `update_message` event of `editor` replacing message `id`'s
    /// content, as Zulip sends it; the history is changed. Not pushed.
    pub fn edit_event(&self, id: i64, editor: i64, content: &str) -> Value {
        let mut st = self.shared.lock();
        let m = st.sent(id);
        let orig = m["content"].as_str().unwrap_or_default().to_owned();
        m["content"] = json!(content);
        let mut event = json!({
            "type": "update_message", "user_id": editor, "edit_timestamp": now(),
            "message_id": id, "rendering_only": false, "orig_content": orig,
            "orig_rendered_content": format!("<p>{orig}</p>"), "content": content,
            "rendered_content": format!("<p>{content}</p>"), "is_me_message": false,
            "message_ids": [id], "flags": [],
        });
        if m["type"] == "stream" {
            event["stream_name"] = m["display_recipient"].clone();
            event["stream_id"] = m["stream_id"].clone();
        }
        event
    }

    /// Edits message `id`'s content and pushes the event.
    pub fn edit_message(&self, id: i64, editor: i64, content: &str) {
        let event = self.edit_event(id, editor, content);
        self.push_event(event);
    }

    /// Moves channel message `id` by `mode` (`change_one`, `change_later`:
    /// it and the later messages of its topic, `change_all`: its whole
    /// topic) to `topic` and/or `channel` (a name; a new one gets an id),
    /// pushes the event and returns the ids moved.
    pub fn move_messages(
        &self,
        id: i64,
        editor: i64,
        mode: &str,
        topic: Option<&str>,
        channel: Option<&str>,
    ) -> Vec<i64> {
        let mut st = self.shared.lock();
        let m = st.sent(id).clone();
        let (old_channel, old_topic) = (m["display_recipient"].clone(), m["subject"].clone());
        let moved: Vec<i64> = st
            .messages
            .iter()
            .filter(|x| x["display_recipient"] == old_channel && x["subject"] == old_topic)
            .filter_map(|x| x["id"].as_i64())
            .filter(|&x| match mode {
                "change_one" => x == id,
                "change_later" => x >= id,
                _ => true,
            })
            .collect();
        let new_channel = channel.map(|name| {
            let key = name.to_lowercase();
            (name.to_owned(), st.id_for(format!("stream:{key}")))
        });
        for &x in &moved {
            let msg = st.sent(x);
            if let Some(t) = topic {
                msg["subject"] = json!(t);
            }
            if let Some((name, sid)) = &new_channel {
                msg["display_recipient"] = json!(name);
                msg["stream_id"] = json!(sid);
            }
        }
        let mut event = json!({
            "type": "update_message", "user_id": editor, "edit_timestamp": now(),
            "message_id": id, "rendering_only": false, "stream_name": old_channel,
            "stream_id": m["stream_id"], "propagate_mode": mode, "orig_subject": old_topic,
            "topic_links": [], "message_ids": moved, "flags": [],
        });
        if let Some(t) = topic {
            event["subject"] = json!(t);
        }
        if let Some((_, sid)) = &new_channel {
            event["new_stream_id"] = json!(sid);
        }
        st.push_all(&event);
        moved
    }

    /// Deletes messages `ids` (of one conversation): gone from the history,
    /// and one `delete_message` event with `message_ids` to each queue that
    /// declared `bulk_message_deletion`, one per message with `message_id`
    /// to the others.
    pub fn delete_messages(&self, ids: &[i64]) {
        let mut st = self.shared.lock();
        let first = st.sent(ids[0]).clone();
        for &id in ids {
            st.sent(id)["deleted"] = json!(true);
        }
        let mut base = json!({"type": "delete_message"});
        if first["type"] == "stream" {
            base["message_type"] = json!("stream");
            base["stream_id"] = first["stream_id"].clone();
            base["topic"] = first["subject"].clone();
        } else {
            base["message_type"] = json!("private");
        }
        for q in st.gc().values_mut().filter(|q| q.accepts(&base)) {
            if q.capability("bulk_message_deletion") {
                let mut event = base.clone();
                event["message_ids"] = json!(ids);
                q.push(event);
            } else {
                for &id in ids {
                    let mut event = base.clone();
                    event["message_id"] = json!(id);
                    q.push(event);
                }
            }
        }
    }
}
