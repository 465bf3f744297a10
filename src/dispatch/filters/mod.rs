//! [`Filters`]: the configured reasons an event runs no listener, or not a
//! given one — `[filters] max_event_age`, `[security] blocked_users` and
//! `rate_limit_per_user` (`rate_limit.rs`), and the per-listener filters of
//! `[listeners.NAME]` (`listener.rs`).
//!
//! # For the dispatcher
//!
//! Build one `Filters::new(&config)` at start and share it. Per event, before
//! starting (and before counting) its runs:
//!
//! ```text
//! let event_skip = filters.check_event(&event, now);           // once per event
//! for listener in targets {
//!     if let Some(reason) = event_skip.or_else(|| filters.check_listener(&event, listener)) {
//!         skip this run;
//!     }
//! }
//! ```
//!
//! [`Filters::check_event`] counts the event towards its user's rate limit
//! each time it is called, so it is called once per event, whatever the
//! number of listeners. A skipped run is not a failure: record or count it
//! as `skipped`, with [`SkipReason::as_str`] as the reason.
//! [`Filters::skipped`] tells how many were skipped per reason.
//!
//! Every rule reads the event's views (its actor, conversation and time,
//! parsed once per event). Only the rate limit has state (one small window
//! per active user, behind a `std::sync::Mutex` that is never held across
//! an `.await`); every other rule is a pure function of the event.

mod listener;
mod rate_limit;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use self::listener::{ListenerFilter, Users};
use self::rate_limit::RateLimiter;
use crate::config::{Config, FiltersConfig, ListenerFilterConfig, SecurityConfig};
use crate::event::Event;
use crate::metrics::DiscardReason;

/// Why a run is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SkipReason {
    /// The event is older than `filters.max_event_age`.
    TooOld,
    /// The event is from a user in `security.blocked_users`.
    BlockedUser,
    /// The event's user sent more than `security.rate_limit_per_user` this minute.
    RateLimited,
    /// The listener's `[listeners.NAME]` filters exclude the event.
    ListenerFilter,
}

impl SkipReason {
    /// Every reason, in a fixed order.
    #[cfg(test)]
    pub(crate) const ALL: [SkipReason; 4] = [
        SkipReason::TooOld,
        SkipReason::BlockedUser,
        SkipReason::RateLimited,
        SkipReason::ListenerFilter,
    ];

    /// A short name for logs and metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooOld => "too_old",
            SkipReason::BlockedUser => "blocked_user",
            SkipReason::RateLimited => "rate_limited",
            SkipReason::ListenerFilter => "listener_filter",
        }
    }

    /// The `events_discarded_total` reason.
    pub(crate) fn discard(self) -> DiscardReason {
        match self {
            SkipReason::TooOld => DiscardReason::TooOld,
            SkipReason::BlockedUser => DiscardReason::BlockedUser,
            SkipReason::RateLimited => DiscardReason::RateLimited,
            SkipReason::ListenerFilter => DiscardReason::Filtered,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The configured filters (see the module documentation).
#[derive(Debug)]
pub(crate) struct Filters {
    max_age: Option<TimeDelta>,
    blocked: Users,
    limiter: Option<Mutex<RateLimiter>>,
    listeners: HashMap<String, ListenerFilter>,
    skipped: [AtomicU64; 4],
}

impl Filters {
    /// The filters of a validated configuration.
    pub(crate) fn new(config: &Config) -> Filters {
        let listeners: BTreeMap<String, ListenerFilterConfig> = config
            .listeners
            .instances
            .iter()
            .map(|(name, i)| (name.clone(), i.filter.clone()))
            .collect();
        Filters::from_parts(&config.filters, &config.security, &listeners)
    }

    /// The filters of the three configuration parts they come from.
    pub(crate) fn from_parts(
        filters: &FiltersConfig,
        security: &SecurityConfig,
        listeners: &BTreeMap<String, ListenerFilterConfig>,
    ) -> Filters {
        Filters {
            max_age: filters
                .max_event_age
                .and_then(|d| TimeDelta::from_std(d).ok()),
            blocked: Users::new(&security.blocked_users),
            limiter: security
                .rate_limit_per_user
                .map(|limit| Mutex::new(RateLimiter::new(limit))),
            listeners: listeners
                .iter()
                .map(|(name, f)| (name.clone(), ListenerFilter::new(f)))
                .collect(),
            skipped: Default::default(),
        }
    }

    /// Whether no filter is configured (every check passes).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.max_age.is_none()
            && self.blocked.is_empty()
            && self.limiter.is_none()
            && self.listeners.is_empty()
    }

    /// Why `event` must run for no listener at all, if it must not: too old,
    /// from a blocked user, or over its user's rate limit. Call it **once
    /// per event**: each call counts the event towards the rate limit.
    pub(crate) fn check_event(&self, event: &Event, now: DateTime<Utc>) -> Option<SkipReason> {
        let reason = self.judge_event(event, now);
        if let Some(r) = reason {
            self.skipped[r.index()].fetch_add(1, Ordering::Relaxed);
        }
        reason
    }

    fn judge_event(&self, event: &Event, now: DateTime<Utc>) -> Option<SkipReason> {
        if self.max_age.is_none() && self.blocked.is_empty() && self.limiter.is_none() {
            return None;
        }
        if let Some(max) = self.max_age {
            if event.time().is_some_and(|t| now - t.0 > max) {
                return Some(SkipReason::TooOld);
            }
        }
        let actor = event.actor();
        if !self.blocked.is_empty() && self.blocked.contains(&actor) {
            return Some(SkipReason::BlockedUser);
        }
        if let (Some(limiter), Some(user)) = (&self.limiter, actor.id) {
            let admitted = limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(user, now);
            if !admitted {
                return Some(SkipReason::RateLimited);
            }
        }
        None
    }

    /// Why `listener` must not run for `event`, if its `[listeners.NAME]`
    /// filters exclude it. Pure: call it for each listener.
    pub(crate) fn check_listener(&self, event: &Event, listener: &str) -> Option<SkipReason> {
        let f = self.listeners.get(listener)?;
        if f.passes(event) {
            None
        } else {
            self.skipped[SkipReason::ListenerFilter.index()].fetch_add(1, Ordering::Relaxed);
            Some(SkipReason::ListenerFilter)
        }
    }

    /// How many events (for event-wide reasons) or runs (for
    /// [`SkipReason::ListenerFilter`]) were skipped for `reason` so far.
    #[cfg(test)]
    pub(crate) fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KNOWN: &[&str] = &["message_logger", "user_activity_tracker"];

    fn filters(toml: &str) -> Filters {
        Filters::new(&Config::parse(toml, KNOWN).unwrap())
    }

    /// The dispatcher's protocol for one listener at a time: the event
    /// verdict of the last event checked is remembered, so checking each
    /// listener of one event in a row counts it once.
    struct Checker<'a> {
        filters: &'a Filters,
        last: Option<(i64, Option<SkipReason>)>,
    }

    impl Checker<'_> {
        fn check(&mut self, e: &Event, listener: &str, now: DateTime<Utc>) -> Option<SkipReason> {
            let verdict = match self.last {
                Some((id, verdict)) if id == e.id() => verdict,
                _ => {
                    let verdict = self.filters.check_event(e, now);
                    self.last = Some((e.id(), verdict));
                    verdict
                }
            };
            verdict.or_else(|| self.filters.check_listener(e, listener))
        }
    }

    fn checker(filters: &Filters) -> Checker<'_> {
        Checker {
            filters,
            last: None,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn message(id: i64, sender: i64, channel: &str, topic: &str, ts: i64, content: &str) -> Event {
        Event::parse(&format!(
            r#"{{"type":"message","message":{{"id":{id},"sender_id":{sender},"sender_email":"u{sender}@Example.com","display_recipient":"{channel}","stream_id":1,"subject":"{topic}","timestamp":{ts},"content":"{content}"}},"id":{id}}}"#
        ))
        .unwrap()
    }

    fn dm(id: i64, sender: i64) -> Event {
        Event::parse(&format!(
            r#"{{"type":"message","message":{{"id":{id},"sender_id":{sender},"display_recipient":[{{"id":{sender}}},{{"id":99}}],"timestamp":1000,"content":"hi"}},"id":{id}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn nothing_configured_skips_nothing() {
        let f = filters("");
        assert!(f.is_empty());
        let e = message(1, 7, "general", "lunch", 1, "x");
        assert_eq!(checker(&f).check(&e, "message_logger", at(1_000_000)), None);
    }

    #[test]
    fn events_older_than_max_event_age_are_too_old() {
        let f = filters("[filters]\nmax_event_age = 3600\n");
        let old = message(1, 7, "general", "lunch", 1000, "x");
        assert_eq!(
            f.check_event(&old, at(1000 + 3601)),
            Some(SkipReason::TooOld)
        );
        assert_eq!(f.check_event(&old, at(1000 + 3599)), None);
        let presence = Event::parse(
            r#"{"type":"presence","user_id":4,"server_timestamp":1000.5,"presence":{},"id":3}"#,
        )
        .unwrap();
        assert_eq!(
            f.check_event(&presence, at(10_000)),
            Some(SkipReason::TooOld)
        );
        let top = Event::parse(r#"{"type":"custom","timestamp":1000,"id":4}"#).unwrap();
        assert_eq!(f.check_event(&top, at(10_000)), Some(SkipReason::TooOld));
        assert_eq!(f.skipped(SkipReason::TooOld), 3);
    }

    #[test]
    fn events_without_a_timestamp_are_never_too_old() {
        let f = filters("[filters]\nmax_event_age = 1\n");
        let e = Event::parse(r#"{"type":"realm_user","op":"add","id":1}"#).unwrap();
        assert_eq!(f.check_event(&e, at(2_000_000_000)), None);
    }

    #[test]
    fn blocked_users_are_matched_by_id_or_email_in_any_event() {
        let f = filters("[security]\nblocked_users = [7, \"MALLORY@example.com\"]\n");
        let now = at(2000);
        assert_eq!(
            f.check_event(&message(1, 7, "g", "t", 1000, "x"), now),
            Some(SkipReason::BlockedUser)
        );
        assert_eq!(
            f.check_event(&message(2, 8, "g", "t", 1000, "x"), now),
            None
        );
        let typing = Event::parse(
            r#"{"type":"typing","op":"start","sender":{"user_id":12,"email":"mallory@example.com"},"id":3}"#,
        )
        .unwrap();
        assert_eq!(f.check_event(&typing, now), Some(SkipReason::BlockedUser));
        let reaction =
            Event::parse(r#"{"type":"reaction","op":"add","user_id":7,"message_id":1,"id":4}"#)
                .unwrap();
        assert_eq!(f.check_event(&reaction, now), Some(SkipReason::BlockedUser));
        let presence =
            Event::parse(r#"{"type":"presence","user_id":5,"email":"Mallory@Example.com","id":5}"#)
                .unwrap();
        assert_eq!(f.check_event(&presence, now), Some(SkipReason::BlockedUser));
    }

    #[test]
    fn a_user_over_the_rate_limit_is_skipped_until_the_minute_is_over() {
        let f = filters("[security]\nrate_limit_per_user = 3\n");
        let t0 = at(1_000);
        let verdicts: Vec<_> = (0..5)
            .map(|i| {
                f.check_event(
                    &message(i, 7, "g", "t", 1000, "x"),
                    t0 + TimeDelta::seconds(i),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            vec![
                None,
                None,
                None,
                Some(SkipReason::RateLimited),
                Some(SkipReason::RateLimited)
            ]
        );
        // Another user has a window of their own.
        assert_eq!(f.check_event(&message(9, 8, "g", "t", 1000, "x"), t0), None);
        // A minute after the window began, the user is admitted again.
        let later = t0 + TimeDelta::seconds(60);
        assert_eq!(
            f.check_event(&message(10, 7, "g", "t", 1000, "x"), later),
            None
        );
        assert_eq!(f.skipped(SkipReason::RateLimited), 2);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let f = filters("[security]\nrate_limit_per_user = 1\n");
        for user in 0..100 {
            f.check_event(&message(user, user, "g", "t", 1000, "x"), at(1000));
        }
        f.check_event(&message(1000, 1000, "g", "t", 1000, "x"), at(1000 + 120));
        let windows = f.limiter.as_ref().unwrap().lock().unwrap().windows.len();
        assert_eq!(windows, 1);
    }

    #[test]
    fn check_counts_an_event_once_whatever_the_number_of_listeners() {
        let f = filters("[security]\nrate_limit_per_user = 1\n");
        let now = at(1000);
        let mut c = checker(&f);
        let first = message(1, 7, "g", "t", 1000, "x");
        assert_eq!(c.check(&first, "message_logger", now), None);
        assert_eq!(c.check(&first, "user_activity_tracker", now), None);
        let second = message(2, 7, "g", "t", 1000, "x");
        assert_eq!(
            c.check(&second, "message_logger", now),
            Some(SkipReason::RateLimited)
        );
        assert_eq!(
            c.check(&second, "user_activity_tracker", now),
            Some(SkipReason::RateLimited)
        );
        assert_eq!(f.skipped(SkipReason::RateLimited), 1);
    }

    #[test]
    fn listener_filters_select_by_type_channel_topic_sender_and_content() {
        let f = filters(
            r#"
            [listeners.message_logger]
            event_types = ["message"]
            channels = ["Support"]
            topics = ["Tickets"]
            senders = [7, "u8@example.com"]
            content_regex = "(?i)urgent"
            "#,
        );
        let l = "message_logger";
        let ok = message(1, 7, "support", "tickets", 1, "URGENT: help");
        assert_eq!(f.check_listener(&ok, l), None);
        assert_eq!(
            f.check_listener(&message(2, 8, "SUPPORT", "TICKETS", 1, "urgent"), l),
            None
        );
        for (why, e) in [
            ("channel", message(3, 7, "general", "tickets", 1, "urgent")),
            ("topic", message(4, 7, "support", "lunch", 1, "urgent")),
            ("sender", message(5, 9, "support", "tickets", 1, "urgent")),
            ("content", message(6, 7, "support", "tickets", 1, "calm")),
            ("direct message", dm(7, 7)),
        ] {
            assert_eq!(
                f.check_listener(&e, l),
                Some(SkipReason::ListenerFilter),
                "{why}"
            );
        }
        let reaction =
            Event::parse(r#"{"type":"reaction","op":"add","user_id":7,"message_id":1,"id":4}"#)
                .unwrap();
        assert_eq!(
            f.check_listener(&reaction, l),
            Some(SkipReason::ListenerFilter),
            "type"
        );
        // Other listeners are not filtered.
        assert_eq!(f.check_listener(&dm(8, 1), "user_activity_tracker"), None);
    }

    #[test]
    fn a_senders_filter_applies_to_any_event_with_a_user() {
        let f = filters("[listeners.user_activity_tracker]\nsenders = [7]\n");
        let l = "user_activity_tracker";
        let mine = Event::parse(r#"{"type":"presence","user_id":7,"id":1}"#).unwrap();
        let theirs = Event::parse(r#"{"type":"presence","user_id":8,"id":2}"#).unwrap();
        let nobody = Event::parse(r#"{"type":"realm","op":"update","id":3}"#).unwrap();
        assert_eq!(f.check_listener(&mine, l), None);
        assert_eq!(
            f.check_listener(&theirs, l),
            Some(SkipReason::ListenerFilter)
        );
        assert_eq!(f.check_listener(&nobody, l), None);
        // Channel, topic and content filters leave non-message events alone.
        let g = filters(
            "[listeners.user_activity_tracker]\nchannels = [\"x\"]\ncontent_regex = \"y\"\n",
        );
        assert_eq!(g.check_listener(&theirs, l), None);
    }

    #[test]
    fn reasons_have_short_names() {
        let names: Vec<_> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["too_old", "blocked_user", "rate_limited", "listener_filter"]
        );
    }

    #[test]
    fn max_event_age_accepts_fractions() {
        let f = Filters::from_parts(
            &FiltersConfig {
                max_event_age: Some(Duration::from_millis(1500)),
            },
            &SecurityConfig::default(),
            &BTreeMap::new(),
        );
        let e = Event::parse(r#"{"type":"presence","user_id":1,"server_timestamp":100.0,"id":1}"#)
            .unwrap();
        assert_eq!(f.check_event(&e, at(101)), None);
        assert_eq!(f.check_event(&e, at(102)), Some(SkipReason::TooOld));
    }
}
