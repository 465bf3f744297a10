//! Presence as a real server sends it to each queue: the legacy form
//! (`user_id`, `email`, `server_timestamp`, `presence` by client) unless the
//! queue declared `simplified_presence_events` (feature level 419), which
//! gets `presences` keyed by user id.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::server::FakeZulip;

impl FakeZulip {
    /// User `user_id` is active now: one presence event to every queue
    /// that accepts presence, in the form it registered for.
    pub fn presence(&self, user_id: i64, email: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let legacy = json!({
            "type": "presence", "user_id": user_id, "email": email, "server_timestamp": now,
            "presence": {"website": {"client": "website", "status": "active",
                "timestamp": now as i64, "pushable": false}},
        });
        let modern = json!({
            "type": "presence",
            "presences": {user_id.to_string(): {"active_timestamp": now as i64, "idle_timestamp": now as i64}},
        });
        let mut st = self.shared.lock();
        for q in st.gc().values_mut().filter(|q| q.accepts(&legacy)) {
            match q.capability("simplified_presence_events") {
                true => q.push(modern.clone()),
                false => q.push(legacy.clone()),
            }
        }
    }
}
