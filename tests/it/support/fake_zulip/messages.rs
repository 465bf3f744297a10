//! `POST /messages` (sent by the bot: stored, delivered to every queue
//! whose narrow matches, with `local_message_id` on the queue the request
//! named, and recorded for assertions), its faults (429s, a connection
//! dropped after the message was sent), and `GET /users/{id}`.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::api::{bad_request, missing, ApiError, Params};
use super::queues::Shared;

/// One message the bot sent with `POST /messages`.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    /// Its message id.
    pub id: i64,
    /// The `local_id` parameter.
    pub local_id: Option<String>,
    /// The `queue_id` parameter.
    pub queue_id: Option<String>,
    /// Channel name, for a channel message.
    pub channel: Option<String>,
    /// Topic, for a channel message.
    pub topic: Option<String>,
    /// Recipient user ids as sent (`to`), for a direct message.
    pub user_ids: Option<Vec<i64>>,
    /// Its content.
    pub content: String,
}

/// What the next `POST /messages` gets instead of its normal answer.
#[derive(Clone, Debug, PartialEq)]
pub enum SendFault {
    /// 429 `RATE_LIMIT_HIT` with this `Retry-After`; nothing is sent.
    RateLimit {
        /// Seconds, as a float.
        retry_after: f64,
    },
    /// The message is sent (stored, delivered, echoed, recorded), then the
    /// connection is closed before the answer: the client cannot know.
    ProcessThenDrop,
    /// The message is sent, and the answer never comes (the client is to
    /// be killed while it waits: a crash between the POST and its commit).
    ProcessThenHang,
}

/// How a send ends.
pub(super) enum Sent {
    /// A JSON answer.
    Answer(Value),
    /// 429 with this `Retry-After`.
    RateLimited(f64),
    /// Sent; the connection is to be dropped without an answer.
    Dropped,
    /// Sent; the answer is to be withheld for ever.
    Hung,
}

impl Shared {
    /// Zulip's `send_message_backend` for the bot, with the fault plan.
    pub(super) fn send_message(&self, p: &Params) -> Result<Sent, ApiError> {
        let mut st = self.lock();
        let fault = st.send_faults.pop_front();
        if let Some(SendFault::RateLimit { retry_after }) = fault {
            return Ok(Sent::RateLimited(retry_after));
        }
        let kind = p.get("type").ok_or_else(|| missing("type"))?.to_owned();
        let to = p.get("to").ok_or_else(|| missing("to"))?.to_owned();
        let content = p
            .get("content")
            .ok_or_else(|| missing("content"))?
            .to_owned();
        let (bot, email) = (self.opts.user_id, self.opts.email.clone());
        let mut msg = st.message(bot, &email, &content);
        msg["sender_full_name"] = json!("Listener Bot");
        let mut record = SentMessage {
            id: 0,
            local_id: p.get("local_id").map(str::to_owned),
            queue_id: p.get("queue_id").map(str::to_owned),
            channel: None,
            topic: None,
            user_ids: None,
            content,
        };
        match kind.as_str() {
            "stream" | "channel" => {
                let topic = p.get("topic").or_else(|| p.get("subject"));
                let topic = topic.ok_or_else(|| missing("topic"))?.to_owned();
                let key = to.to_lowercase();
                if st.missing_channels.contains(&key) {
                    let msg = format!("Channel '{to}' does not exist");
                    let mut e =
                        ApiError::new(StatusCode::BAD_REQUEST, "STREAM_DOES_NOT_EXIST", &msg);
                    e.1["stream"] = json!(to);
                    return Err(e);
                }
                msg["type"] = json!("stream");
                msg["display_recipient"] = json!(to);
                msg["stream_id"] = json!(st.id_for(format!("stream:{key}")));
                msg["subject"] = json!(topic);
                msg["recipient_id"] = json!(st.id_for(format!("rcpt:stream:{key}")));
                record.channel = Some(to);
                record.topic = Some(topic);
            }
            "private" | "direct" => {
                let ids: Vec<i64> =
                    serde_json::from_str(&to).map_err(|_| bad_request("Invalid user ID list"))?;
                let mut all: Vec<i64> = ids.iter().copied().chain([bot]).collect();
                all.sort_unstable();
                all.dedup();
                let key: Vec<String> = all.iter().map(i64::to_string).collect();
                msg["type"] = json!("private");
                msg["display_recipient"] = all.iter().map(|&i| st.user(i)).collect();
                msg["subject"] = json!("");
                msg["recipient_id"] = json!(st.id_for(format!("rcpt:dm:{}", key.join(","))));
                record.user_ids = Some(ids);
            }
            other => return Err(bad_request(format!("Invalid message type {other:?}"))),
        }
        let echo = match (record.queue_id.as_deref(), record.local_id.as_deref()) {
            (Some(q), Some(l)) => Some((q.to_owned(), l.to_owned())),
            _ => None,
        };
        let id = if st.lose_echoes {
            let id = st.messages.len() as i64 + 1;
            msg["id"] = json!(id);
            st.messages.push(msg);
            id
        } else {
            st.deliver_echoing(
                msg,
                bot,
                echo.as_ref().map(|(q, l)| (q.as_str(), l.as_str())),
            )
        };
        record.id = id;
        st.sent.push(record);
        match fault {
            Some(SendFault::ProcessThenDrop) => return Ok(Sent::Dropped),
            Some(SendFault::ProcessThenHang) => return Ok(Sent::Hung),
            _ => {}
        }
        Ok(Sent::Answer(json!({
            "result": "success", "msg": "", "id": id,
            "automatic_new_visibility_policy": null,
        })))
    }

    /// `GET /users/{id}`: the bot, or a user seen as a sender; `is_bot`
    /// for the bot and the ids marked as bots.
    pub(super) fn get_user(&self, id: &str) -> Result<Value, ApiError> {
        let id: i64 = id.parse().map_err(|_| bad_request("Invalid user ID"))?;
        let st = self.lock();
        let email = if id == self.opts.user_id {
            self.opts.email.clone()
        } else {
            st.users
                .get(&id)
                .cloned()
                .ok_or_else(|| bad_request("No such user"))?
        };
        let is_bot = id == self.opts.user_id || st.bots.contains(&id);
        Ok(json!({
            "result": "success", "msg": "",
            "user": {
                "user_id": id, "email": email, "full_name": st.user(id)["full_name"],
                "is_bot": is_bot, "is_active": true, "role": 400,
            },
        }))
    }
}
