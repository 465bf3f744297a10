//! Memory backpressure: while the process's resident memory is above
//! `[performance] memory_threshold`, the poll loop does not ask Zulip for
//! more events. Nothing is lost meanwhile: unacknowledged events wait in
//! Zulip's queue, and runs already in flight finish and free their memory.
//!
//! The poll loop calls [`wait_below`] right before each `GET /events`; it
//! returns at once while memory is below the threshold. While it waits,
//! [`State::backpressure`] and the `memory_backpressure` gauge are set, so
//! `/health` reports the daemon degraded and says why.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::State;

/// How often memory is measured again while polling is paused.
pub(crate) const RECHECK_EVERY: Duration = Duration::from_millis(200);

/// The process's resident memory in bytes (Linux); `None` where it cannot
/// be read, in which case backpressure never pauses polling.
///
/// It is `VmRSS` from `/proc/self/status`: the same number as `statm`'s
/// resident pages times the page size (and as `ps` and the
/// `process_resident_memory_bytes` metric show), given by the kernel in
/// kB, so no page size is needed.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// `VmRSS:   123456 kB` → bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = rest.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// Waits while resident memory is above `threshold` bytes, measuring it
/// every [`RECHECK_EVERY`], until it is below or `token` is cancelled.
/// Returns at once when memory is below the threshold or cannot be read.
///
/// While waiting it sets [`State::backpressure`] and the
/// `memory_backpressure` gauge, and logs once when the pause starts and
/// once when polling resumes; both are cleared before it returns.
pub(crate) async fn wait_below(threshold: u64, state: &State, token: &CancellationToken) {
    let Some(rss) = resident_bytes().filter(|rss| *rss > threshold) else {
        return;
    };
    state.backpressure.store(true, Ordering::Relaxed);
    state.metrics.memory_backpressure.set(1);
    tracing::warn!(
        resident_bytes = rss,
        threshold_bytes = threshold,
        "Memory above threshold; pausing polling (events stay in Zulip's queue)"
    );
    let started = tokio::time::Instant::now();
    let resumed = loop {
        tokio::select! {
            _ = tokio::time::sleep(RECHECK_EVERY) => {}
            _ = token.cancelled() => break None,
        }
        match resident_bytes() {
            Some(rss) if rss > threshold => continue,
            rss => break Some(rss),
        }
    };
    state.backpressure.store(false, Ordering::Relaxed);
    state.metrics.memory_backpressure.set(0);
    if let Some(rss) = resumed {
        tracing::info!(
            resident_bytes = rss,
            threshold_bytes = threshold,
            paused_ms = started.elapsed().as_millis() as u64,
            "Memory below threshold again; polling resumes"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn resident_memory_is_read_and_plausible_on_linux() {
        let rss = resident_bytes().expect("/proc/self/status has VmRSS");
        // A test binary holds at least a megabyte and far less than 64 GiB.
        assert!(rss > 1 << 20, "{rss}");
        assert!(rss < 64 << 30, "{rss}");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn above_the_threshold_it_pauses_until_cancelled() {
        let state = Arc::new(State::default());
        let token = CancellationToken::new();
        let waiter = {
            let (state, token) = (state.clone(), token.clone());
            tokio::spawn(async move { wait_below(1, &state, &token).await })
        };
        tokio::time::sleep(RECHECK_EVERY * 3).await;
        assert!(!waiter.is_finished(), "one byte is always exceeded");
        assert!(state.backpressure.load(Ordering::Relaxed));
        assert_eq!(state.metrics.memory_backpressure.get(), 1);

        token.cancel();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("cancellation ends the wait")
            .unwrap();
        assert!(!state.backpressure.load(Ordering::Relaxed));
        assert_eq!(state.metrics.memory_backpressure.get(), 0);
    }

    #[tokio::test]
    async fn below_the_threshold_it_returns_at_once() {
        let state = State::default();
        let token = CancellationToken::new();
        tokio::time::timeout(
            Duration::from_millis(100),
            wait_below(u64::MAX, &state, &token),
        )
        .await
        .expect("no pause below the threshold");
        assert!(!state.backpressure.load(Ordering::Relaxed));
    }
}
