//! Noticing a wake-up: after a suspend and resume, or when the wall clock
//! is set, the poll in flight most likely hangs on a dead connection, and
//! the backoff grown before says nothing of now. [`WakeUps`] compares the
//! clocks every [`TICK`], from start to stop, in a task of its own, and
//! sees a jump when:
//!
//! - the wall clock moved more than [`THRESHOLD`] away from the monotonic
//!   clock (Linux's monotonic clock stands still while the machine sleeps,
//!   and an operator or NTP step moves only the wall clock);
//! - or a tick came more than [`THRESHOLD`] late (a virtual machine paused,
//!   whose monotonic clock jumped forward: tokio's timers fire late, all
//!   at once).
//!
//! The poll loop waits on [`WakeUps::next`] beside every poll and wait; a
//! jump seen while it was doing something else (committing) ends its next
//! poll or wait at once. A false alarm (a process stalled that long) costs
//! one extra poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::clock::Clock;

/// How often the clocks are compared.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// How far apart the clocks (or a tick from its schedule) may drift.
pub(crate) const THRESHOLD: Duration = Duration::from_secs(5);

/// What was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Jump {
    /// The wall clock moved this many seconds more (or, negative, less)
    /// than the monotonic clock.
    Wall(f64),
    /// A tick came this long after the previous one.
    LateTick(Duration),
}

/// The jumps the clock task saw, for one consumer (the poll loop).
#[derive(Debug)]
pub(crate) struct WakeUps {
    seen: Arc<Seen>,
    /// Jumps already handed to the consumer.
    taken: AtomicU64,
    task: AbortHandle,
}

/// What the clock task shares with the consumer.
#[derive(Debug, Default)]
struct Seen {
    jumps: AtomicU64,
    last: Mutex<Option<Jump>>,
    notify: Notify,
}

impl WakeUps {
    /// Starts comparing `clock`'s clocks (in a task, until dropped).
    pub(crate) fn start(clock: Arc<dyn Clock>) -> WakeUps {
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(watch(clock, seen.clone())).abort_handle();
        WakeUps {
            seen,
            taken: AtomicU64::new(0),
            task,
        }
    }

    /// Resolves at the next jump not yet handed out (at once for one seen
    /// meanwhile).
    pub(crate) async fn next(&self) -> Jump {
        loop {
            let notified = self.seen.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a jump in between still wakes it.
            notified.as_mut().enable();
            let jumps = self.seen.jumps.load(Ordering::Acquire);
            if self.taken.swap(jumps, Ordering::AcqRel) != jumps {
                let last = *self.seen.last.lock().unwrap_or_else(|p| p.into_inner());
                return last.unwrap_or(Jump::Wall(0.0));
            }
            notified.await;
        }
    }
}

impl Drop for WakeUps {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The clock task: compares the clocks every [`TICK`].
async fn watch(clock: Arc<dyn Clock>, seen: Arc<Seen>) {
    let mut before = (clock.wall(), clock.monotonic());
    loop {
        tokio::time::sleep(TICK).await;
        let now = (clock.wall(), clock.monotonic());
        if let Some(jump) = compare(before, now) {
            *seen.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(jump);
            seen.jumps.fetch_add(1, Ordering::AcqRel);
            seen.notify.notify_waiters();
        }
        before = now;
    }
}

/// A jump between two readings of (wall, monotonic), one [`TICK`] apart.
fn compare(before: (SystemTime, Instant), after: (SystemTime, Instant)) -> Option<Jump> {
    let mono = after.1.saturating_duration_since(before.1);
    if mono > TICK + THRESHOLD {
        return Some(Jump::LateTick(mono));
    }
    let wall = match after.0.duration_since(before.0) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let drift = wall - mono.as_secs_f64();
    (drift.abs() > THRESHOLD.as_secs_f64()).then_some(Jump::Wall(drift))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system clocks, with a wall clock that can be moved.
    #[derive(Debug, Default)]
    struct MovableClock {
        offset: Mutex<f64>,
    }

    impl MovableClock {
        fn move_wall(&self, secs: f64) {
            *self.offset.lock().unwrap() += secs;
        }
    }

    impl Clock for MovableClock {
        fn wall(&self) -> SystemTime {
            let offset = *self.offset.lock().unwrap();
            let now = SystemTime::now();
            if offset >= 0.0 {
                now + Duration::from_secs_f64(offset)
            } else {
                now - Duration::from_secs_f64(-offset)
            }
        }

        fn monotonic(&self) -> Instant {
            tokio::time::Instant::now().into_std()
        }
    }

    #[test]
    fn clocks_in_step_are_no_jump() {
        let (w, m) = (SystemTime::now(), Instant::now());
        assert_eq!(compare((w, m), (w + TICK, m + TICK)), None);
        // A little drift (NTP slewing, a busy runtime) is no jump either.
        let late = TICK + Duration::from_secs(2);
        assert_eq!(compare((w, m), (w + late, m + late)), None);
    }

    #[test]
    fn a_wall_clock_jump_either_way_and_a_late_tick_are_seen() {
        let (w, m) = (SystemTime::now(), Instant::now());
        let hour = Duration::from_secs(3600);
        assert_eq!(
            compare((w, m), (w + TICK + hour, m + TICK)),
            Some(Jump::Wall(3600.0))
        );
        assert!(matches!(
            compare((w, m), (w - hour, m + TICK)),
            Some(Jump::Wall(d)) if d < -3600.0
        ));
        assert_eq!(
            compare((w, m), (w + hour, m + hour)),
            Some(Jump::LateTick(hour))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_jump_is_seen_within_a_tick_also_when_nobody_was_waiting() {
        let clock = Arc::new(MovableClock::default());
        let wake = WakeUps::start(clock.clone());
        // Time passes normally: nothing.
        tokio::select! {
            j = wake.next() => panic!("no jump yet, got {j:?}"),
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        clock.move_wall(600.0);
        let jump = tokio::time::timeout(TICK * 2, wake.next())
            .await
            .expect("seen within a tick");
        assert!(matches!(jump, Jump::Wall(d) if d > 590.0), "{jump:?}");

        // A jump while the loop does something else ends its next wait at once.
        clock.move_wall(-600.0);
        tokio::time::sleep(TICK * 3).await;
        let jump = tokio::time::timeout(Duration::from_millis(1), wake.next())
            .await
            .expect("handed out at once");
        assert!(matches!(jump, Jump::Wall(d) if d < -590.0), "{jump:?}");
        // Each jump once.
        assert!(
            tokio::time::timeout(TICK * 3, wake.next()).await.is_err(),
            "no second jump"
        );
    }
}
