//! `[performance]`: how many listener runs may be in flight, how long one
//! may take, and the memory above which polling pauses.

use std::time::Duration;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "performance";

/// The keys of `[performance]`.
pub(super) const KNOWN: &[&str] = &[
    "max_concurrent_handlers",
    "handler_timeout",
    "memory_threshold",
];

/// Most listener runs in flight at once (a typo guard).
const MAX_CONCURRENT_HANDLERS: u64 = 10_000;

/// `[performance]`.
#[derive(Debug, Clone)]
pub struct PerformanceConfig {
    /// Listener runs in flight at once, over all listeners.
    pub max_concurrent_handlers: usize,
    /// Upper bound of one listener run.
    pub handler_timeout: Duration,
    /// Resident memory, in bytes, above which polling pauses.
    pub memory_threshold: Option<u64>,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            max_concurrent_handlers: 5,
            handler_timeout: Duration::from_secs(30),
            memory_threshold: None,
        }
    }
}

/// Reads `[performance]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut PerformanceConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "max_concurrent_handlers" => {
                if let Some(n) = r.positive_int(&key, v) {
                    if n > MAX_CONCURRENT_HANDLERS {
                        r.problem(format!("`{key}` is at most 10000, got {n}"));
                    } else {
                        out.max_concurrent_handlers = n as usize;
                    }
                }
            }
            "handler_timeout" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.handler_timeout = d;
                }
            }
            "memory_threshold" => out.memory_threshold = r.positive_int(&key, v),
            "gc_interval" => r.problem(format!(
                "`{key}` only made sense for Python's garbage collector; this daemon frees memory as it goes: remove the key"
            )),
            "instance_cache_size" => r.problem(format!(
                "`{key}` only made sense for the Python plugin's handler cache; each listener here is built once at start: remove the key"
            )),
            "worker_processes" | "async_processing" => r.problem(format!(
                "`{key}` only made sense for the Python plugin; this daemon is always asynchronous and sizes its work with `performance.max_concurrent_handlers`: remove the key"
            )),
            _ => r.unknown_key(k),
        }
    }
}
