//! [`JumpingClock`]: the system's clocks, with a wall clock a test can
//! move, to show the daemon a suspend and resume or a clock set by hand.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use zulip_event_listeners::app::Clock;

/// The system's clocks; [`JumpingClock::jump`] moves the wall clock only.
#[derive(Debug, Default)]
pub struct JumpingClock {
    ahead: Mutex<Duration>,
}

impl JumpingClock {
    /// Moves the wall clock `by` ahead, as a resume after a suspend of
    /// that long shows it (the monotonic clock stood still meanwhile).
    pub fn jump(&self, by: Duration) {
        *self.ahead.lock().unwrap() += by;
    }
}

impl Clock for JumpingClock {
    fn wall(&self) -> SystemTime {
        SystemTime::now() + *self.ahead.lock().unwrap()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}
