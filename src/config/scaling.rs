//! `[scaling]`: which instance this process is, and how several instances
//! split the events between them.

use toml::{Table, Value};

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "scaling";

/// The keys of `[scaling]`.
pub(super) const KNOWN: &[&str] = &["instance_id", "total_instances", "partition_strategy"];

/// Most instances one deployment may split events between (a typo guard).
const MAX_INSTANCES: u64 = 1024;

/// `[scaling]`.
#[derive(Debug, Clone)]
pub struct ScalingConfig {
    /// Name of this instance; each instance keeps its own queue cursor and inbox.
    pub instance_id: String,
    /// Instances splitting the events between them (1: no split).
    pub total_instances: u32,
    /// This instance's place among them, from 0: `instance_id` − 1 when
    /// `total_instances` > 1, else 0.
    pub instance_index: u32,
    /// How the instances split the events.
    pub partition_strategy: PartitionStrategy,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            instance_id: "default".to_owned(),
            total_instances: 1,
            instance_index: 0,
            partition_strategy: PartitionStrategy::Hash,
        }
    }
}

/// How instances split the events (`[scaling] partition_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionStrategy {
    /// By a stable hash of the ordering key: a conversation stays on one
    /// instance, in order.
    #[default]
    Hash,
    /// By a per-event number modulo the instance count: an even spread, but
    /// a conversation's events may run on different instances.
    RoundRobin,
}

/// Reads `[scaling]` into `out`, then checks `instance_id` against
/// `total_instances`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut ScalingConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "instance_id" => read_instance_id(r, &key, v, out),
            "total_instances" => match r.positive_int(&key, v) {
                Some(n) if n <= MAX_INSTANCES => out.total_instances = n as u32,
                Some(n) => r.problem(format!("`{key}` is at most {MAX_INSTANCES}, got {n}")),
                None => {}
            },
            "partition_strategy" => match r.string(&key, v).as_deref() {
                Some("hash") => out.partition_strategy = PartitionStrategy::Hash,
                Some("round_robin") => out.partition_strategy = PartitionStrategy::RoundRobin,
                Some(other) => r.problem(format!(
                    "`{key}` must be \"hash\" or \"round_robin\", got `{other}`"
                )),
                None => {}
            },
            _ => r.unknown_key(k),
        }
    }
    check_instance(r, out);
}

fn read_instance_id(r: &mut Reader, key: &str, v: &Value, out: &mut ScalingConfig) {
    if let Some(id) = r.name(key, v) {
        out.instance_id = id;
    }
}

/// With several instances, `instance_id` must say which one this is.
fn check_instance(r: &mut Reader, out: &mut ScalingConfig) {
    out.instance_index = 0;
    let total = out.total_instances;
    if total <= 1 {
        return;
    }
    match out.instance_id.parse::<u32>() {
        Ok(n) if (1..=total).contains(&n) => out.instance_index = n - 1,
        _ if r.has_problem_about("scaling.instance_id") => {}
        _ => r.problem(format!(
            "`scaling.instance_id` must be this instance's number, 1 to {total}, when `scaling.total_instances` is {total} (each instance runs its share of the events), got `{}`",
            out.instance_id
        )),
    }
}
