//! Traffic sent through the fake Zulip by several tests.

use serde_json::json;

use super::fake_zulip::FakeZulip;

/// Sends channel messages number `range` (content `m<i>`) from three
/// senders over five topics of `general`.
pub fn send(fake: &FakeZulip, range: std::ops::Range<usize>) {
    for i in range {
        let sender = 10 + (i % 3) as i64;
        fake.send_channel_message(
            sender,
            &format!("user{sender}@example.com"),
            "general",
            &format!("topic {}", i % 5),
            &format!("m{i}"),
        );
    }
}

/// A reaction event by `user_id` (not recoverable by a backfill).
pub fn react(fake: &FakeZulip, user_id: i64) {
    fake.push_event(json!({
        "type": "reaction", "op": "add", "user_id": user_id, "message_id": 1,
        "emoji_name": "tada", "emoji_code": "1f389", "reaction_type": "unicode_emoji",
    }));
}
