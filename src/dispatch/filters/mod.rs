//! [`Filters`]: the configured reasons an event runs no listener, or not a
//! given one — `[filters] max_event_age`, `[security] blocked_users` and
//! `rate_limit_per_user`, and the per-listener filters of `[listeners.NAME]`.
//!
//! # For the dispatcher
//!
//! Build one `Filters::new(&config)` at start and share it. Per event, before
//! starting (and before counting) its runs:
//!
//! ```text
//! if let Some(reason) = filters.check_event(&event, now) { skip every run; }  // once per event
//! for listener in targets {
//!     if let Some(reason) = filters.check_listener(&event, listener) { skip this run; }
//! }
//! ```
//!
//! [`Filters::check`] does both for one listener; calling it for each
//! listener of an event in a row counts the event once towards the rate
//! limit (the last event's verdict is remembered). A skipped run is not a
//! failure: record or count it as `skipped`, with [`SkipReason::as_str`] as
//! the reason. [`Filters::skipped`] tells how many were skipped per reason.
//!
//! Only the rate limit has state (one small window per active user, behind
//! a `std::sync::Mutex` that is never held across an `.await`); every other
//! rule is a pure function of the event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Config, FiltersConfig, ListenerFilterConfig, SecurityConfig, UserRef};
use crate::event::{Event, Recipient};

/// Why a run is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
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
    pub const ALL: [SkipReason; 4] = [
        SkipReason::TooOld,
        SkipReason::BlockedUser,
        SkipReason::RateLimited,
        SkipReason::ListenerFilter,
    ];

    /// A short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooOld => "too_old",
            SkipReason::BlockedUser => "blocked_user",
            SkipReason::RateLimited => "rate_limited",
            SkipReason::ListenerFilter => "listener_filter",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The per-listener filters, ready to match (names lower-cased).
#[derive(Debug)]
struct ListenerFilter {
    event_types: Option<HashSet<String>>,
    channels: Option<HashSet<String>>,
    topics: Option<HashSet<String>>,
    senders: Option<Users>,
    content: Option<regex::Regex>,
}

/// A set of users by id and by email.
#[derive(Debug, Default)]
struct Users {
    ids: HashSet<i64>,
    emails: HashSet<String>,
}

impl Users {
    fn new(list: &[UserRef]) -> Users {
        let mut users = Users::default();
        for u in list {
            match u {
                UserRef::Id(id) => {
                    users.ids.insert(*id);
                }
                UserRef::Email(e) => {
                    users.emails.insert(e.to_lowercase());
                }
            }
        }
        users
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.emails.is_empty()
    }

    fn contains(&self, actor: &Actor) -> bool {
        actor.id.is_some_and(|id| self.ids.contains(&id))
            || actor
                .emails
                .iter()
                .any(|e| self.emails.contains(&e.to_lowercase()))
    }
}

/// Who an event is from, as far as it says.
#[derive(Debug, Default)]
struct Actor {
    id: Option<i64>,
    emails: Vec<String>,
}

impl Actor {
    fn is_known(&self) -> bool {
        self.id.is_some() || !self.emails.is_empty()
    }
}

/// The fields outside `message` that filters read, each loose so that an
/// unexpected type in one never hides the others.
#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    sender_id: Option<Value>,
    #[serde(default)]
    sender: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
    #[serde(default)]
    email: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    server_timestamp: Option<Value>,
    #[serde(default)]
    edit_timestamp: Option<Value>,
}

impl Fields {
    fn of(event: &Event) -> Fields {
        serde_json::from_str(event.raw()).unwrap_or_default()
    }
}

fn actor_of(event: &Event, fields: Option<&Fields>) -> Actor {
    if let Some(m) = event.message() {
        let emails = (!m.sender_email.is_empty())
            .then(|| m.sender_email.clone())
            .into_iter()
            .collect();
        return Actor {
            id: Some(m.sender_id),
            emails,
        };
    }
    let owned;
    let f = match fields {
        Some(f) => f,
        None => {
            owned = Fields::of(event);
            &owned
        }
    };
    let nested =
        |v: &Option<Value>, field: &str| -> Option<Value> { v.as_ref()?.get(field).cloned() };
    let id = [
        f.user_id.clone(),
        nested(&f.sender, "user_id"),
        f.sender_id.clone(),
        nested(&f.user, "user_id"),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| v.as_i64());
    let emails = [
        f.email.clone(),
        nested(&f.sender, "email"),
        nested(&f.user, "email"),
    ]
    .into_iter()
    .flatten()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect();
    Actor { id, emails }
}

/// The event's own time: a message's `timestamp`, else a top-level
/// `server_timestamp` (presence), `timestamp` or `edit_timestamp`
/// (seconds, integer or fractional).
fn timestamp_of(event: &Event, fields: &Fields) -> Option<DateTime<Utc>> {
    if let Some(m) = event.message() {
        return (m.timestamp > 0)
            .then(|| DateTime::from_timestamp(m.timestamp, 0))
            .flatten();
    }
    let secs = [
        &fields.server_timestamp,
        &fields.timestamp,
        &fields.edit_timestamp,
    ]
    .into_iter()
    .find_map(|v| v.as_ref()?.as_f64())?;
    (secs.is_finite() && secs > 0.0)
        .then(|| DateTime::from_timestamp_millis((secs * 1000.0) as i64))
        .flatten()
}

/// A fixed one-minute window of one user's events.
#[derive(Debug)]
struct Window {
    started: DateTime<Utc>,
    counted: u32,
    dropped: u64,
}

/// Per-user fixed windows; users idle for a window are forgotten.
#[derive(Debug)]
struct RateLimiter {
    limit: u32,
    windows: HashMap<i64, Window>,
    last_sweep: Option<DateTime<Utc>>,
}

/// The rate limit's window.
const RATE_WINDOW: TimeDelta = TimeDelta::seconds(60);

impl RateLimiter {
    /// Counts one event of `user` at `now`; false when it is over the limit.
    fn admit(&mut self, user: i64, now: DateTime<Utc>) -> bool {
        self.sweep(now);
        let w = self.windows.entry(user).or_insert(Window {
            started: now,
            counted: 0,
            dropped: 0,
        });
        if now - w.started >= RATE_WINDOW || now < w.started {
            report_dropped(user, w);
            *w = Window {
                started: now,
                counted: 0,
                dropped: 0,
            };
        }
        if w.counted < self.limit {
            w.counted += 1;
            return true;
        }
        if w.dropped == 0 {
            tracing::warn!(
                user_id = user,
                limit_per_minute = self.limit,
                "A user exceeded security.rate_limit_per_user; skipping their events until the minute is over"
            );
        }
        w.dropped += 1;
        false
    }

    /// Forgets, at most once a minute, the windows that are over.
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self
            .last_sweep
            .is_some_and(|t| now - t < RATE_WINDOW && now >= t)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.windows.retain(|user, w| {
            let live = now - w.started < RATE_WINDOW && now >= w.started;
            if !live {
                report_dropped(*user, w);
            }
            live
        });
    }
}

fn report_dropped(user: i64, w: &Window) {
    if w.dropped > 0 {
        tracing::info!(
            user_id = user,
            skipped = w.dropped,
            "Rate limit window over; events from this user skipped in it"
        );
    }
}

/// The identity of the last event [`Filters::check`] judged: its id and
/// address, which stay the same while one event goes to its listeners.
type Verdict = ((i64, usize), Option<SkipReason>);

/// The configured filters (see the module documentation).
#[derive(Debug)]
pub struct Filters {
    max_age: Option<TimeDelta>,
    blocked: Users,
    limiter: Option<Mutex<RateLimiter>>,
    listeners: HashMap<String, ListenerFilter>,
    last: Mutex<Option<Verdict>>,
    skipped: [AtomicU64; 4],
}

impl Filters {
    /// The filters of a validated configuration.
    pub fn new(config: &Config) -> Filters {
        Filters::from_parts(&config.filters, &config.security, &config.listeners.filters)
    }

    /// The filters of the three configuration parts they come from.
    pub fn from_parts(
        filters: &FiltersConfig,
        security: &SecurityConfig,
        listeners: &BTreeMap<String, ListenerFilterConfig>,
    ) -> Filters {
        let lower = |list: &Option<Vec<String>>| {
            list.as_ref()
                .map(|l| l.iter().map(|s| s.to_lowercase()).collect::<HashSet<_>>())
        };
        Filters {
            max_age: filters
                .max_event_age
                .and_then(|d| TimeDelta::from_std(d).ok()),
            blocked: Users::new(&security.blocked_users),
            limiter: security.rate_limit_per_user.map(|limit| {
                Mutex::new(RateLimiter {
                    limit,
                    windows: HashMap::new(),
                    last_sweep: None,
                })
            }),
            listeners: listeners
                .iter()
                .map(|(name, f)| {
                    let filter = ListenerFilter {
                        event_types: f.event_types.as_ref().map(|l| l.iter().cloned().collect()),
                        channels: lower(&f.channels),
                        topics: lower(&f.topics),
                        senders: f.senders.as_deref().map(Users::new),
                        content: f.content_regex.clone(),
                    };
                    (name.clone(), filter)
                })
                .collect(),
            last: Mutex::new(None),
            skipped: Default::default(),
        }
    }

    /// Whether no filter is configured (every check passes).
    pub fn is_empty(&self) -> bool {
        self.max_age.is_none()
            && self.blocked.is_empty()
            && self.limiter.is_none()
            && self.listeners.is_empty()
    }

    /// Why `event` must run for no listener at all, if it must not: too old,
    /// from a blocked user, or over its user's rate limit. Call it **once
    /// per event**: each call counts the event towards the rate limit.
    pub fn check_event(&self, event: &Event, now: DateTime<Utc>) -> Option<SkipReason> {
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
        let fields = Fields::of(event);
        if let Some(max) = self.max_age {
            if timestamp_of(event, &fields).is_some_and(|t| now - t > max) {
                return Some(SkipReason::TooOld);
            }
        }
        let actor = actor_of(event, Some(&fields));
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
    pub fn check_listener(&self, event: &Event, listener: &str) -> Option<SkipReason> {
        let f = self.listeners.get(listener)?;
        let pass = Filters::passes(f, event);
        if pass {
            None
        } else {
            self.skipped[SkipReason::ListenerFilter.index()].fetch_add(1, Ordering::Relaxed);
            Some(SkipReason::ListenerFilter)
        }
    }

    fn passes(f: &ListenerFilter, event: &Event) -> bool {
        if f.event_types
            .as_ref()
            .is_some_and(|t| !t.contains(event.event_type()))
        {
            return false;
        }
        if let Some(m) = event.message() {
            let (channel, topic) = match &m.recipient {
                Recipient::Channel { channel, topic, .. } => (Some(channel), Some(topic)),
                Recipient::Direct { .. } => (None, None),
            };
            let listed = |set: &Option<HashSet<String>>, value: Option<&String>| match set {
                None => true,
                Some(set) => value.is_some_and(|v| set.contains(&v.to_lowercase())),
            };
            if !listed(&f.channels, channel) || !listed(&f.topics, topic) {
                return false;
            }
            if f.content
                .as_ref()
                .is_some_and(|re| !re.is_match(&m.content))
            {
                return false;
            }
        }
        if let Some(senders) = &f.senders {
            let actor = actor_of(event, None);
            if actor.is_known() && !senders.contains(&actor) {
                return false;
            }
        }
        true
    }

    /// [`Filters::check_event`] then [`Filters::check_listener`]. The event
    /// verdict of the last event checked is remembered, so calling this for
    /// each listener of one event in a row counts it once towards the rate
    /// limit (and in [`Filters::skipped`]).
    pub fn check(&self, event: &Event, listener: &str, now: DateTime<Utc>) -> Option<SkipReason> {
        let identity = (event.id(), std::ptr::from_ref(event) as usize);
        let verdict = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match *last {
                Some((id, verdict)) if id == identity => verdict,
                _ => {
                    let verdict = self.check_event(event, now);
                    *last = Some((identity, verdict));
                    verdict
                }
            }
        };
        verdict.or_else(|| self.check_listener(event, listener))
    }

    /// How many events (for event-wide reasons) or runs (for
    /// [`SkipReason::ListenerFilter`]) were skipped for `reason` so far.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
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
        assert_eq!(f.check(&e, "message_logger", at(1_000_000)), None);
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
        let first = message(1, 7, "g", "t", 1000, "x");
        assert_eq!(f.check(&first, "message_logger", now), None);
        assert_eq!(f.check(&first, "user_activity_tracker", now), None);
        let second = message(2, 7, "g", "t", 1000, "x");
        assert_eq!(
            f.check(&second, "message_logger", now),
            Some(SkipReason::RateLimited)
        );
        assert_eq!(
            f.check(&second, "user_activity_tracker", now),
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
