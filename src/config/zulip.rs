//! `[zulip]` (or each `[[zulip]]` entry, one per organization): where the
//! bot's credentials are, how the event queue is registered, and, for an
//! organization, its name and which listeners run for it. The API key
//! itself is refused here: it lives in the zuliprc or in `ZULIP_API_KEY`,
//! never in this file.

use std::path::PathBuf;

use toml::{Table, Value};

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "zulip";

/// The keys of `[zulip]`.
pub(super) const KNOWN: &[&str] = &[
    "name",
    "listeners",
    "zuliprc",
    "site",
    "email",
    "all_public_streams",
    "narrow",
    "apply_markdown",
    "queue_lifespan_secs",
    "event_types",
    "backfill_window",
    "allow_insecure_http",
];

/// How far below the newest message id seen a backfill starts, by default.
pub const DEFAULT_BACKFILL_WINDOW: u64 = 50;

/// Largest backfill window (a typo guard; Zulip pages 1,000 at a time).
const MAX_BACKFILL_WINDOW: u64 = 100_000;

/// The queue lifetime asked for by default: one day.
pub const DEFAULT_QUEUE_LIFESPAN_SECS: u64 = 86_400;

/// Longest queue lifetime Zulip grants: 7 days.
const MAX_QUEUE_LIFESPAN_SECS: u64 = 604_800;

/// `[zulip]`, or one `[[zulip]]` entry.
#[derive(Debug, Clone)]
pub struct ZulipConfig {
    /// The organization's name: its rows' `instance`, its metrics' `org`
    /// label. Required with several organizations; for one, `[scaling]
    /// instance_id` when absent.
    pub name: Option<String>,
    /// The listeners that run for this organization, among `[listeners]
    /// enabled`; `None` for all of them.
    pub listeners: Option<Vec<String>>,
    /// Whether the `ZULIP_*` variables, `ZULIP_CONFIG` and `~/.zuliprc` may
    /// supply what this section leaves out: true for one organization,
    /// false for each of several (they would give every organization the
    /// same account). Not a key of the file.
    pub use_environment: bool,
    /// Path of the bot's `zuliprc`; `ZULIP_CONFIG` and `~/.zuliprc` apply when absent.
    pub zuliprc: Option<PathBuf>,
    /// The site, overriding the one in the zuliprc.
    pub site: Option<String>,
    /// The bot's email, overriding the one in the zuliprc.
    pub email: Option<String>,
    /// Receive messages of every public channel, not only subscribed ones.
    pub all_public_streams: bool,
    /// A Zulip narrow (`[["channel", "general"]]`) applied at registration.
    pub narrow: Vec<(String, String)>,
    /// Ask for rendered HTML (`true`) or raw Markdown (`false`, the default).
    pub apply_markdown: bool,
    /// Requested queue lifetime in seconds (Zulip caps it at 7 days).
    pub queue_lifespan_secs: u64,
    /// The event types Zulip is asked for; `None` (the default) for every
    /// type, so that every event is stored, whichever listeners want it.
    pub event_types: Option<Vec<String>>,
    /// After a lost queue, the backfill starts this many message ids below
    /// the newest one seen: Zulip delivers message events slightly out of
    /// id order, so a lower id may still have been on its way.
    pub backfill_window: u64,
    /// Accept a plain `http://` site on a host other than this one (the
    /// key and every event then cross the network unencrypted).
    pub allow_insecure_http: bool,
}

impl Default for ZulipConfig {
    fn default() -> Self {
        ZulipConfig {
            name: None,
            listeners: None,
            use_environment: true,
            zuliprc: None,
            site: None,
            email: None,
            all_public_streams: false,
            narrow: Vec::new(),
            apply_markdown: false,
            queue_lifespan_secs: DEFAULT_QUEUE_LIFESPAN_SECS,
            event_types: None,
            backfill_window: DEFAULT_BACKFILL_WINDOW,
            allow_insecure_http: false,
        }
    }
}

/// Reads `[zulip]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut ZulipConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "name" => out.name = r.name(&key, v),
            "listeners" => out.listeners = r.strings(&key, v, "listener names"),
            "zuliprc" => out.zuliprc = r.string(&key, v).map(PathBuf::from),
            "site" => out.site = r.string(&key, v),
            "email" => out.email = r.string(&key, v),
            "api_key" | "key" => r.problem(format!(
                "`{key}` is not read from this file, so that the key never sits in a world-readable config: put it in the zuliprc (`[zulip] zuliprc`) or in ZULIP_API_KEY"
            )),
            "all_public_streams" => out.all_public_streams = r.bool(&key, v).unwrap_or_default(),
            "apply_markdown" => out.apply_markdown = r.bool(&key, v).unwrap_or_default(),
            "allow_insecure_http" => {
                out.allow_insecure_http = r.bool(&key, v).unwrap_or_default()
            }
            "queue_lifespan_secs" => {
                if let Some(s) = r.whole_seconds(&key, v) {
                    if s > MAX_QUEUE_LIFESPAN_SECS {
                        r.problem(format!("`{key}` is at most 604800 (7 days, Zulip's cap), got {s}"));
                    } else {
                        out.queue_lifespan_secs = s;
                    }
                }
            }
            "narrow" => out.narrow = read_narrow(r, &key, v),
            "event_types" => out.event_types = r.strings(&key, v, "event types"),
            "backfill_window" => match v {
                Value::Integer(i) if (0..=MAX_BACKFILL_WINDOW as i64).contains(i) => {
                    out.backfill_window = *i as u64
                }
                _ => r.problem(format!(
                    "`{key}` must be a number of message ids from 0 to {MAX_BACKFILL_WINDOW}, got `{v}`"
                )),
            },
            _ => r.unknown_key(k),
        }
    }
}

fn read_narrow(r: &mut Reader, key: &str, v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(items) = v.as_array() else {
        r.wrong::<()>(key, v, "a list of [operator, operand] pairs");
        return out;
    };
    for item in items {
        match item.as_array().map(|a| a.as_slice()) {
            Some([Value::String(op), Value::String(arg)]) => out.push((op.clone(), arg.clone())),
            _ => r.problem(format!(
                "`{key}` entries must be [\"operator\", \"operand\"] pairs such as [\"channel\", \"general\"], got `{item}`"
            )),
        }
    }
    out
}
