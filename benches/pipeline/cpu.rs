//! Where the CPU goes, from `/proc`: the PostgreSQL server's (every
//! process named `postgres`: the postmaster, its backends and background
//! workers) and one process's (the daemon child, or this process when the
//! daemon runs in it).
//!
//! The server's figure counts each process's own time and the time of its
//! children that have exited (`cutime`, `cstime`): a backend that ends is
//! reaped by the postmaster, so its time moves into the postmaster's
//! children fields and the sum stays whole across connections closing.
//! The server is shared: anything else it serves in the window counts too,
//! so the figure is an upper bound on a busy machine.

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds of process `pid` (user + system), its exited children's
/// too when `children`.
pub(super) fn process_cpu(pid: u32, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the `)`: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    let take = if children { 11..15 } else { 11..13 };
    let mut ticks = 0.0;
    for i in take {
        ticks += fields.get(i)?.parse::<f64>().ok()?;
    }
    Some(ticks / TICKS)
}

/// CPU seconds of every `postgres` process on the machine, so far.
pub(super) fn server_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end() == "postgres");
        if is_postgres {
            total += process_cpu(pid, true).unwrap_or(0.0);
        }
    }
    total
}

/// This process's CPU seconds so far.
pub(super) fn own_cpu() -> f64 {
    process_cpu(std::process::id(), false).unwrap_or(0.0)
}

/// Server and process CPU from a start point: `Window::start`, then
/// `per_event(n)` gives microseconds per event of each.
pub(super) struct Window {
    server: f64,
    process: f64,
}

impl Window {
    pub(super) fn start(process: f64) -> Window {
        Window {
            server: server_cpu(),
            process,
        }
    }

    /// `(server µs/event, process µs/event)` since the start, the process
    /// now at `process` CPU seconds.
    pub(super) fn per_event(&self, process: f64, n: usize) -> (f64, f64) {
        let per = |s: f64| s / n.max(1) as f64 * 1e6;
        (per(server_cpu() - self.server), per(process - self.process))
    }
}
