//! [`Clock`]: the two clocks the poll loop compares to notice a suspend or
//! a clock jump — the wall clock and the monotonic one — behind a small
//! trait, so that a test can make the wall clock jump. [`SystemClock`] is
//! the real one.

use std::fmt::Debug;
use std::time::{Instant, SystemTime};

/// The wall clock and the monotonic clock.
pub trait Clock: Send + Sync + Debug {
    /// The wall clock (`SystemTime::now`).
    fn wall(&self) -> SystemTime;
    /// The monotonic clock, as tokio's timers see it (it stands still while
    /// the machine sleeps, on Linux).
    fn monotonic(&self) -> Instant;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}
