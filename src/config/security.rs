//! `[security]`: users whose events run no listener, the per-user rate
//! limit, and the organizations allowed to run (`allowed_realms`, checked
//! against the `[[zulip]]` names in `organizations.rs`).

use toml::Table;

use super::reader::Reader;
use super::users::{read_users, UserRef};

/// The section's name.
pub(super) const SECTION: &str = "security";

/// The keys of `[security]`.
pub(super) const KNOWN: &[&str] = &["blocked_users", "rate_limit_per_user", "allowed_realms"];

/// Highest `rate_limit_per_user` (a typo guard).
const MAX_RATE_LIMIT: u64 = 1_000_000;

/// `[security]`.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// Events from these users run no listener.
    pub blocked_users: Vec<UserRef>,
    /// Events per minute from one user beyond which that user's events are
    /// skipped until the minute is over.
    pub rate_limit_per_user: Option<u32>,
    /// The organization names allowed to run; `None` for any. A configured
    /// organization not in it is a configuration problem.
    pub allowed_realms: Option<Vec<String>>,
}

/// Reads `[security]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut SecurityConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "blocked_users" => {
                if let Some(users) = read_users(r, &key, v, true) {
                    out.blocked_users = users;
                }
            }
            "rate_limit_per_user" => match r.positive_int(&key, v) {
                Some(n) if n <= MAX_RATE_LIMIT => out.rate_limit_per_user = Some(n as u32),
                Some(n) => r.problem(format!(
                    "`{key}` is a number of events per minute up to {MAX_RATE_LIMIT}, got {n}"
                )),
                None => {}
            },
            "allowed_realms" => {
                out.allowed_realms = r.strings(&key, v, "organization names ([[zulip]] name)")
            }
            "require_authentication" => r.problem(format!(
                "`{key}` only made sense for the Python plugin; every request this daemon makes is authenticated with the bot's API key, and there is nothing to turn off: remove the key"
            )),
            _ => r.unknown_key(k),
        }
    }
}
