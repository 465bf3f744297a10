//! Partitioning: which events this instance runs when several split the
//! work ([`Partitioner`]), and the number round robin splits them by
//! ([`event_seq`]).
//!
//! # For the dispatcher
//!
//! ```text
//! let key = ordering_key(&event);                                // once per event
//! if !partitioner.owns_with(&key, || event_seq(&event)) { skip }  // another instance runs it
//! lanes.enter((listener, key))                                   // same key: one after another
//! ```
//!
//! Every instance receives every event (each has its own queue), so
//! ownership must be computed from the event alone, the same way on every
//! instance: that is why it never depends on what an instance has seen
//! before (a cache of message → conversation would differ between instances
//! and make an event run twice, or never).

use std::fmt::{self, Write as _};

use serde_json::Value;

use super::ordering::OrderingKey;
pub(crate) use crate::config::PartitionStrategy;
use crate::config::ScalingConfig;
use crate::event::Event;

/// A number for the event that every instance computes alike, for the
/// round-robin strategy. Never pass the queue's event id instead: each
/// instance has its own queue, whose ids differ.
///
/// It is the message id for a message and for events about one message
/// (edits, deletions, reactions, submessages), so a message and what
/// happens to it go to the same instance; for other events, a
/// [`stable_hash`] of the event's JSON without its queue `id`.
pub(crate) fn event_seq(event: &Event) -> u64 {
    if let Some(id) = event.message_id() {
        return id as u64;
    }
    if let Some(m) = event.about_message() {
        return m.0 as u64;
    }
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(event.raw()) else {
        return fmix64(fnv1a(event.raw().as_bytes()));
    };
    fields.remove("id");
    // serde_json's map is sorted by key, so this text is the same on every
    // instance whatever the order Zulip wrote the fields in.
    fmix64(fnv1a(Value::Object(fields).to_string().as_bytes()))
}

/// A hash of the key that is the same in every process and every release:
/// 64-bit FNV-1a of its text form (`Display`), then MurmurHash3's 64-bit
/// finalizer (`fmix64`), because FNV-1a alone spreads short keys that
/// differ in their last bytes unevenly. Rust's `DefaultHasher` is seeded
/// at random per process, so it cannot be used to agree across instances.
pub(crate) fn stable_hash(key: &OrderingKey) -> u64 {
    let mut h = Fnv1a(FNV_OFFSET);
    // Writing into Fnv1a cannot fail.
    let _ = write!(h, "{key}");
    fmix64(h.0)
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a as a `fmt::Write`, so a key is hashed without a `String`.
struct Fnv1a(u64);

impl fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        Ok(())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a(FNV_OFFSET);
    for b in bytes {
        h.0 ^= u64::from(*b);
        h.0 = h.0.wrapping_mul(FNV_PRIME);
    }
    h.0
}

/// Which share of the events this instance runs, when `total` instances
/// split them (`[scaling]`).
///
/// - [`PartitionStrategy::Hash`]: by [`stable_hash`] of the ordering key,
///   so a conversation always runs on one instance, in order.
/// - [`PartitionStrategy::RoundRobin`]: by `seq % total` ([`event_seq`]):
///   an even spread, but a conversation's events are spread too, so their
///   order holds only among the events each instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partitioner {
    instance_index: u32,
    total: u32,
    strategy: PartitionStrategy,
}

impl Partitioner {
    /// Instance `instance_index` (from 0) of `total`; `None` unless
    /// `instance_index < total`.
    pub(crate) fn new(
        instance_index: u32,
        total: u32,
        strategy: PartitionStrategy,
    ) -> Option<Self> {
        (instance_index < total).then_some(Partitioner {
            instance_index,
            total,
            strategy,
        })
    }

    /// The only instance: owns every event.
    pub(crate) fn single() -> Self {
        Partitioner {
            instance_index: 0,
            total: 1,
            strategy: PartitionStrategy::Hash,
        }
    }

    /// This instance's share as `[scaling]` configures it (validated there).
    pub(crate) fn from_config(scaling: &ScalingConfig) -> Self {
        Partitioner::new(
            scaling.instance_index,
            scaling.total_instances,
            scaling.partition_strategy,
        )
        .unwrap_or_else(Partitioner::single)
    }

    /// Whether other instances share the work (`total > 1`).
    pub(crate) fn is_partitioned(&self) -> bool {
        self.total > 1
    }

    /// The index (from 0) of the instance that runs an event with `key`
    /// and `seq`.
    pub(crate) fn owner(&self, key: &OrderingKey, seq: u64) -> u32 {
        let total = u64::from(self.total.max(1));
        let slot = match self.strategy {
            // Multiply-high (Lemire's reduction) rather than `%`: no
            // division, and as even as `%` for a well-mixed hash.
            PartitionStrategy::Hash => {
                ((u128::from(stable_hash(key)) * u128::from(total)) >> 64) as u64
            }
            PartitionStrategy::RoundRobin => seq % total,
        };
        slot as u32
    }

    /// Whether this instance runs an event with `key` and `seq`
    /// ([`event_seq`]; only round robin reads it).
    #[cfg(test)]
    pub(crate) fn owns(&self, key: &OrderingKey, seq: u64) -> bool {
        self.owns_with(key, || seq)
    }

    /// [`Partitioner::owns`], computing the event's seq only when it is
    /// read: with one instance, or the hash strategy, it never is.
    pub(crate) fn owns_with(&self, key: &OrderingKey, seq: impl FnOnce() -> u64) -> bool {
        if self.total <= 1 {
            return true;
        }
        let seq = match self.strategy {
            PartitionStrategy::Hash => 0,
            PartitionStrategy::RoundRobin => seq(),
        };
        self.owner(key, seq) == self.instance_index
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::ordering::ordering_key;
    use super::super::ordering::tests::{channel, MSG};
    use super::*;

    #[test]
    fn the_stable_hash_matches_the_algorithm_worked_out_by_hand() {
        // FNV-1a 64 of the bytes "user:7" (offset 0xcbf29ce484222325; per
        // byte: xor, then multiply by 0x100000001b3 mod 2^64) is
        // 0xf7fda0aa7508271d; fmix64 of that (k ^= k >> 33;
        // k *= 0xff51afd7ed558ccd; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53;
        // k ^= k >> 33) is 0xe1adaa0a6ddf082e, computed outside this code.
        assert_eq!(fnv1a(b"user:7"), 0xf7fd_a0aa_7508_271d);
        assert_eq!(stable_hash(&OrderingKey::User(7)), 0xe1ad_aa0a_6ddf_082e);
        // The empty text is the offset basis.
        assert_eq!(fnv1a(b""), FNV_OFFSET);
        // And "a" is FNV-1a's published test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
    #[test]
    fn hash_assignment_is_fixed_for_a_known_key() {
        // (0xe1adaa0a6ddf082e * 3) >> 64 = 2.
        let p = Partitioner::new(2, 3, PartitionStrategy::Hash).unwrap();
        assert_eq!(p.owner(&OrderingKey::User(7), 0), 2);
        assert!(p.owns(&OrderingKey::User(7), 0));
    }
    fn many_keys() -> Vec<OrderingKey> {
        (0..10_000)
            .map(|i| match i % 3 {
                0 => channel(i % 40, &format!("topic {i}")),
                1 => OrderingKey::User(i),
                _ => OrderingKey::Direct(vec![i, i + 1]),
            })
            .collect()
    }
    #[test]
    fn every_key_is_owned_by_exactly_one_instance() {
        for strategy in [PartitionStrategy::Hash, PartitionStrategy::RoundRobin] {
            for total in 1..=5u32 {
                let instances: Vec<Partitioner> = (0..total)
                    .map(|i| Partitioner::new(i, total, strategy).unwrap())
                    .collect();
                for (seq, k) in many_keys().iter().enumerate() {
                    let owners = instances.iter().filter(|p| p.owns(k, seq as u64)).count();
                    assert_eq!(owners, 1, "{k} with {total} instances");
                }
            }
        }
    }
    #[test]
    fn hash_assignment_spreads_keys_roughly_evenly() {
        for total in [2u32, 3, 4, 7] {
            let p = Partitioner::new(0, total, PartitionStrategy::Hash).unwrap();
            let mut counts: HashMap<u32, usize> = HashMap::new();
            for k in many_keys() {
                *counts.entry(p.owner(&k, 0)).or_default() += 1;
            }
            let expected = 10_000 / total as usize;
            for i in 0..total {
                let n = counts.get(&i).copied().unwrap_or(0);
                assert!(
                    n.abs_diff(expected) * 10 < expected,
                    "instance {i} of {total} got {n}, expected about {expected}"
                );
            }
        }
    }
    #[test]
    fn round_robin_follows_the_sequence_number() {
        let p = Partitioner::new(2, 3, PartitionStrategy::RoundRobin).unwrap();
        let k = OrderingKey::User(1);
        assert!(p.owns(&k, 5));
        assert!(!p.owns(&k, 6));
    }
    #[test]
    fn an_index_outside_the_total_is_refused_and_one_instance_owns_all() {
        assert!(Partitioner::new(3, 3, PartitionStrategy::Hash).is_none());
        let single = Partitioner::single();
        assert!(!single.is_partitioned());
        assert!(single.owns(&OrderingKey::User(1), 12345));
    }
    #[test]
    fn event_seq_ignores_the_queue_id_and_follows_the_message() {
        let a =
            Event::parse(r#"{"type":"realm","op":"update","property":"name","value":"x","id":3}"#)
                .unwrap();
        let b =
            Event::parse(r#"{"id":77,"value":"x","op":"update","type":"realm","property":"name"}"#)
                .unwrap();
        assert_eq!(event_seq(&a), event_seq(&b));
        assert_eq!(event_seq(&Event::parse(MSG).unwrap()), 1004);
        let edit = Event::parse(r#"{"type":"update_message","message_id":1004,"id":9}"#).unwrap();
        assert_eq!(event_seq(&edit), 1004);
        let delete =
            Event::parse(r#"{"type":"delete_message","message_ids":[1013],"id":23}"#).unwrap();
        assert_eq!(event_seq(&delete), 1013);
    }

    #[test]
    fn every_fixture_event_gets_a_key_without_panicking() {
        for file in [
            include_str!("../../tests/fixtures/zulip-example-events.jsonl"),
            include_str!("../../examples/sample-events.jsonl"),
        ] {
            for line in file.lines().filter(|l| !l.trim().is_empty()) {
                let e = Event::parse_line(line, 1).unwrap();
                let _ = ordering_key(&e);
                let _ = event_seq(&e);
            }
        }
    }

    #[test]
    fn the_seq_is_computed_only_for_round_robin_over_several_instances() {
        let e = Event::parse(MSG).unwrap();
        let key = ordering_key(&e);
        let never = || -> u64 { panic!("event_seq was computed") };
        assert!(Partitioner::single().owns_with(&key, never));
        for i in 0..3 {
            let p = Partitioner::new(i, 3, PartitionStrategy::Hash).unwrap();
            assert_eq!(p.owns_with(&key, never), p.owns(&key, event_seq(&e)));
        }
        let rr = Partitioner::new(1, 3, PartitionStrategy::RoundRobin).unwrap();
        assert_eq!(rr.owns_with(&key, || 1004), rr.owns(&key, 1004));
    }
}
