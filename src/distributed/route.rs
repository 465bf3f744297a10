//! Which partition an event goes to: a stable hash of the same ordering
//! key the dispatcher orders by (channel + topic, direct-message group,
//! user, event type), modulo the partition count. Every ingest, in every
//! release, computes the same partition for the same conversation, so a
//! conversation's events stay in one queue, in order.

use crate::dispatch::ordering::ordering_key;
use crate::dispatch::partition::stable_hash;
use crate::event::Event;

/// The partition, `0..partitions`, of `event`.
pub(crate) fn partition_of(event: &Event, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    // The remainder is below `partitions`, which is a u32.
    (stable_hash(&ordering_key(event)) % n) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, topic: &str) -> Event {
        let raw = format!(
            r#"{{"type":"message","id":{id},"message":{{"id":{id},"type":"stream","stream_id":3,"display_recipient":"dev","subject":"{topic}","content":"x","sender_id":5,"sender_email":"a@x","timestamp":1}}}}"#
        );
        Event::parse(&raw).expect("an event")
    }

    #[test]
    fn a_conversation_keeps_its_partition_and_conversations_spread() {
        let first = partition_of(&message(1, "deploys"), 8);
        assert_eq!(partition_of(&message(2, "deploys"), 8), first);
        assert_eq!(
            partition_of(&message(3, "Deploys"), 8),
            first,
            "topics compare case-insensitively"
        );
        let used: std::collections::HashSet<u32> = (0..64)
            .map(|i| partition_of(&message(i, &format!("topic {i}")), 8))
            .collect();
        assert!(
            used.len() >= 6,
            "64 topics over 8 partitions used only {used:?}"
        );
        assert!(used.iter().all(|&p| p < 8));
    }
}
