//! [`InstanceLock`]: one daemon per (database, instance) at a time. `run`
//! takes it before anything else touches the inbox and holds it to the
//! end; a second daemon on the same SQLite file, or with the same
//! `instance_id` on the same PostgreSQL database, is refused with the name
//! of the process that holds it. On PostgreSQL the lock is a session
//! advisory lock on a dedicated connection: while that connection is down
//! the store refuses to append (so nothing is acknowledged), and when
//! another process took the lock meanwhile the daemon stops.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, DropGuard};

/// No lock was asked for (a command other than `run`).
const UNLOCKED: u8 = 0;
/// The lock is held.
const HELD: u8 = 1;
/// The lock's connection is down: it is being taken again.
const RETAKING: u8 = 2;
/// Another process holds it now.
const LOST: u8 = 3;

/// Whether the store may acknowledge (append) for its instance, shared by
/// the store and its lock.
#[derive(Debug, Default)]
pub(crate) struct LockState(AtomicU8);

impl LockState {
    pub(crate) fn set_held(&self) {
        self.0.store(HELD, Ordering::SeqCst);
    }

    pub(crate) fn set_retaking(&self) {
        self.0.store(RETAKING, Ordering::SeqCst);
    }

    pub(crate) fn set_lost(&self) {
        self.0.store(LOST, Ordering::SeqCst);
    }

    /// Whether appends may go on: no lock was asked for, or it is held.
    pub(crate) fn may_append(&self) -> bool {
        matches!(self.0.load(Ordering::SeqCst), UNLOCKED | HELD)
    }
}

/// The instance lock, released when dropped (or when the process dies).
pub struct InstanceLock {
    lost: CancellationToken,
    _release: Option<DropGuard>,
    _file: Option<std::fs::File>,
    _state: Arc<LockState>,
}

impl InstanceLock {
    /// A PostgreSQL lock watched by a task that `release` stops.
    pub(crate) fn watched(
        lost: CancellationToken,
        release: CancellationToken,
        state: Arc<LockState>,
    ) -> InstanceLock {
        InstanceLock {
            lost,
            _release: Some(release.drop_guard()),
            _file: None,
            _state: state,
        }
    }

    /// A lock held by an open, locked file (released by the kernel when
    /// the file is closed or the process dies).
    pub(crate) fn file(file: std::fs::File, state: Arc<LockState>) -> InstanceLock {
        InstanceLock {
            lost: CancellationToken::new(),
            _release: None,
            _file: Some(file),
            _state: state,
        }
    }

    /// Cancelled when another process took the lock: the daemon must stop.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }
}

/// This process, as a lock holder names it: `host=H pid=P`.
pub(crate) fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("host={host} pid={}", std::process::id())
}
