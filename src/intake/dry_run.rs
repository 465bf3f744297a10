//! What a dry run prints for each batch: one line per event with the
//! listeners that would run it.

use std::io::Write;
use std::sync::Arc;

use crate::event::Event;
use crate::listeners::{interested, Listener};

/// Dry-run output: one line per event with the listeners that would run,
/// written through one buffer per batch (a line-buffered stdout would make
/// a system call per event).
pub(super) fn describe(listeners: &[Arc<dyn Listener>], events: &[Event]) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut kind = String::new();
    let mut runs = String::new();
    for e in events {
        kind.clear();
        kind.push_str(e.event_type());
        if let Some(op) = e.op() {
            kind.push('/');
            kind.push_str(op);
        }
        runs.clear();
        for i in interested(listeners, e.event_type()) {
            if !runs.is_empty() {
                runs.push_str(", ");
            }
            runs.push_str(listeners[i].name());
        }
        if runs.is_empty() {
            runs.push_str("no listener");
        }
        // A closed stdout (a pipe to `head`) is not worth failing over.
        let _ = writeln!(out, "event {:>6}  {kind:<28} would run: {runs}", e.id());
    }
    let _ = out.flush();
}
