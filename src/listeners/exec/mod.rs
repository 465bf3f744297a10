//! `kind = "exec"`: a command run per event (the event's envelope on
//! stdin, the outcome in its exit status, a reply on stdout), or one
//! persistent child speaking JSON lines with many requests in flight.
//!
//! - `command.rs`: the argv as a `tokio::process::Command` (no shell, its
//!   own process group, the daemon's `ZULIP_*` credentials removed) and the
//!   process-group guard that kills the whole group when dropped.
//! - `output.rs`: bounded reading of a child's pipes (stdout capped, the
//!   tail of stderr, lines of bounded length) and a log budget.
//! - `protocol.rs`: the request line, the response, and a reply in either.
//! - `per_event.rs` and `persistent.rs` (with `shared.rs`, the pending
//!   requests and the live child's queue, and `supervisor.rs`, the child's
//!   life: spawn, serve, restart with backoff): the two modes.

mod command;
mod output;
mod per_event;
mod persistent;
mod protocol;
mod shared;
mod supervisor;

use std::sync::Arc;

use crate::config::{ExecConfig, ExecMode};
use crate::listeners::Listener;

/// The exec instance `name`; `max_concurrent` bounds a persistent child's
/// requests in flight.
pub(super) fn build(
    name: &str,
    config: &ExecConfig,
    max_concurrent: Option<usize>,
) -> Result<Arc<dyn Listener>, String> {
    let spec = command::Spec::from_config(config)?;
    Ok(match config.mode {
        ExecMode::PerEvent => Arc::new(per_event::PerEvent::new(name, spec)),
        ExecMode::Persistent => Arc::new(persistent::Persistent::new(name, spec, max_concurrent)),
    })
}
