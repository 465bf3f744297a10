//! systemd integration: `READY=1` once the daemon polls and serves HTTP,
//! `STOPPING=1` at shutdown, `RELOADING=1` … `READY=1` around a
//! configuration reload, and watchdog pings while the poll loop is
//! healthy. Every call is a no-op when not started by systemd
//! (`NOTIFY_SOCKET` / `WATCHDOG_USEC` unset).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::State;

/// Tells systemd the daemon is ready.
pub(crate) fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "Cannot notify systemd");
    }
}

/// Tells systemd a reload has begun (`RELOADING=1` with the monotonic
/// time, as `Type=notify-reload` wants it); [`notify_ready`] ends it.
pub(crate) fn notify_reloading() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, which
    // lives on this stack for the whole call.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    let monotonic = format!("MONOTONIC_USEC={usec}");
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::Custom(&monotonic),
        ],
    );
}

/// Tells systemd the daemon is stopping.
pub(crate) fn notify_stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// Pings the systemd watchdog at half its interval, but only while the
/// daemon is alive: a poll returned within twice the long-poll timeout (or
/// intake is not polling Zulip, as with a file source). A wedged poll loop
/// stops the pings and systemd restarts the service. `None` when systemd
/// asked for no watchdog; else the task to spawn, which ends with `token`.
pub(crate) fn watchdog(
    state: Arc<State>,
    token: CancellationToken,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2);
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => return,
            }
            let longpoll = state
                .intake
                .longpoll_secs
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(90) as f64;
            let polling = state
                .intake
                .polling
                .load(std::sync::atomic::Ordering::Relaxed);
            let alive = !polling
                || state
                    .last_poll_age()
                    .is_none_or(|a| a < 2.0 * longpoll + 10.0);
            if alive {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!(
                    "The poll loop looks wedged; withholding the systemd watchdog ping"
                );
            }
        }
    })
}
