//! What a `sending` reply becomes: a POST was (or may have been) made, and
//! its answer was lost — the daemon died before it committed `sent`, or
//! the connection broke after the request was written.
//!
//! Zulip puts the reply's `local_id` in the `message` event of the sent
//! message, as its top-level `local_message_id`, on the queue the POST
//! named (`queue_id`). So:
//!
//! 1. its echo is in the inbox (stored after the row was marked
//!    `sending`): it was sent — confirm it, never resend;
//! 2. else, if the POST named another queue than the one intake polls now,
//!    that queue is gone with whatever it held: resend (this is the one
//!    case that may duplicate a reply: its echo was lost with the queue);
//! 3. else, once intake has committed a poll that *began* after Zulip can
//!    still be sending the message (see [`settled_at`]), everything Zulip
//!    had queued by then is in the inbox: look once more, and resend only
//!    if the echo still is not there;
//! 4. else wait (the sender keeps the outbox's order and waits too).

use chrono::{DateTime, Utc};
use std::time::Duration;

/// How long after a POST failed Zulip may still be sending the message (a
/// request the server kept processing after the connection broke): a poll
/// that began sooner does not prove the echo is not coming.
pub(crate) const ECHO_GRACE: Duration = Duration::from_secs(5);

/// When a `sending` reply's echo, if Zulip sent it, is surely queued: the
/// grace after its POST failed (`failed`); for a POST the daemon died
/// during (not failed: `updated_at` is when it began), after the longest
/// the POST could have run (`post_timeout`) and the grace.
pub(super) fn settled_at(
    updated_at: DateTime<Utc>,
    failed: bool,
    post_timeout: Duration,
) -> DateTime<Utc> {
    let wait = if failed {
        ECHO_GRACE
    } else {
        post_timeout + ECHO_GRACE
    };
    updated_at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

/// What to do with a `sending` reply whose echo is not in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Post it again, for this reason.
    Resend(String),
    /// Not yet known: wait for a later committed poll.
    Wait,
}

/// The verdict for a `sending` reply last posted on `posted_on` whose
/// echo is surely queued from `settled` on (see [`settled_at`]), while
/// intake polls `current` and its last committed poll began at
/// `committed_poll_began_ms` (Unix ms, 0 for none yet). `Resend` from a
/// poll must be confirmed by one more look at the inbox, made after
/// reading `committed_poll_began_ms`.
pub(super) fn verdict(
    posted_on: Option<&str>,
    current: &str,
    settled: DateTime<Utc>,
    committed_poll_began_ms: i64,
) -> Verdict {
    match posted_on {
        Some(q) if q == current => {}
        Some(q) => {
            return Verdict::Resend(format!(
            "its POST named queue {q}, which is gone: its echo cannot come (it may be a duplicate)"
        ))
        }
        None => return Verdict::Resend("it was never posted".to_owned()),
    }
    if committed_poll_began_ms > settled.timestamp_millis() {
        Verdict::Resend("no echo came back on the queue: Zulip did not send it".to_owned())
    } else {
        Verdict::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn on_the_live_queue_a_reply_waits_for_a_poll_begun_after_it_settled() {
        let settled = at(1_000_000);
        assert_eq!(verdict(Some("q"), "q", settled, 0), Verdict::Wait);
        assert_eq!(
            verdict(Some("q"), "q", settled, 1_000_000),
            Verdict::Wait,
            "a poll that began before proves nothing"
        );
        assert!(matches!(
            verdict(Some("q"), "q", settled, 1_000_001),
            Verdict::Resend(_)
        ));
    }

    #[test]
    fn a_post_cut_by_a_crash_settles_after_the_longest_it_could_run() {
        let t = Duration::from_secs(30);
        let grace = chrono::Duration::from_std(ECHO_GRACE).unwrap();
        assert_eq!(settled_at(at(0), true, t), at(0) + grace);
        assert_eq!(
            settled_at(at(0), false, t),
            at(0) + chrono::Duration::seconds(30) + grace
        );
    }

    #[test]
    fn a_reply_posted_on_a_lost_queue_is_resent_at_once() {
        let v = verdict(Some("old"), "new", at(1_000_000), 0);
        assert!(
            matches!(v, Verdict::Resend(ref why) if why.contains("old")),
            "{v:?}"
        );
    }
}
