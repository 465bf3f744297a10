//! `[distributed]`: the RabbitMQ distributed mode — where the broker is
//! (`amqp_url`, whose vhost isolates one deployment from another), how many
//! ordered partitions the events are split into, the prefix of every
//! exchange and queue name, and the poller's leadership lease. Read by
//! every role; `run --role ingest|worker` refuses to start without it.

use std::fmt;
use std::time::Duration;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "distributed";

/// The keys of `[distributed]`.
pub(super) const KNOWN: &[&str] = &[
    "amqp_url",
    "partitions",
    "prefix",
    "lease_seconds",
    "outbox_limit",
    "prefetch",
];

/// Most partitions (a typo guard: each is a quorum queue).
const MAX_PARTITIONS: u64 = 256;
/// Longest lease, in seconds.
const MAX_LEASE: u64 = 3600;

/// What one process of a deployment does (`run --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Everything in one process: poll, store, run listeners (no broker).
    #[default]
    All,
    /// Poll Zulip (when it leads), commit to the inbox, publish to RabbitMQ.
    Ingest,
    /// Consume from RabbitMQ, run the listeners, record their outcomes.
    Worker,
}

impl Role {
    /// Its name, as `--role` takes it and `/health` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Worker => "worker",
        }
    }

    /// Whether it needs RabbitMQ (and PostgreSQL).
    pub fn is_distributed(self) -> bool {
        self != Role::All
    }
}

/// `[distributed]`.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    /// `amqp://user:password@host:port/vhost`; `None` when the section is
    /// absent (only `--role all` may run then).
    pub amqp_url: Option<AmqpUrl>,
    /// Ordered partitions (quorum queues with a single active consumer).
    pub partitions: u32,
    /// The first part of every exchange and queue name.
    pub prefix: String,
    /// How long a leader's lease lasts without renewal: a standby takes
    /// over within it once the leader is gone.
    pub lease_seconds: Duration,
    /// Committed events the ingest may hold unpublished (the broker down)
    /// before it stops polling Zulip until the outbox drains.
    pub outbox_limit: u64,
    /// Deliveries a worker holds unacknowledged at once; `None`: its
    /// `[performance] max_concurrent_handlers`.
    pub prefetch: Option<u16>,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig {
            amqp_url: None,
            partitions: 8,
            prefix: "zel".to_owned(),
            lease_seconds: Duration::from_secs(10),
            outbox_limit: 1_000_000,
            prefetch: None,
        }
    }
}

/// An AMQP URL: shown without its password.
#[derive(Clone)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    /// The URL itself, to connect with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &self.0[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                write!(f, "{}{user}:***{}", &self.0[..scheme + 3], &self.0[at..])
            }
            _ => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
    }
}

/// Reads `[distributed]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut DistributedConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "amqp_url" => {
                if let Some(url) = r.string(&key, v) {
                    match url.parse::<lapin::uri::AMQPUri>() {
                        Ok(_) => out.amqp_url = Some(AmqpUrl(url)),
                        Err(e) => r.problem(format!(
                            "`{key}` must be an amqp:// or amqps:// URL such as amqp://guest:guest@127.0.0.1:5672/%2f: {e}"
                        )),
                    }
                }
            }
            "partitions" => match r.positive_int(&key, v) {
                Some(n) if n <= MAX_PARTITIONS => out.partitions = n as u32,
                Some(n) => r.problem(format!("`{key}` is at most {MAX_PARTITIONS}, got {n}")),
                None => {}
            },
            "prefix" => {
                if let Some(p) = r.name(&key, v) {
                    out.prefix = p;
                }
            }
            "lease_seconds" => match r.whole_seconds(&key, v) {
                Some(s) if (2..=MAX_LEASE).contains(&s) => {
                    out.lease_seconds = Duration::from_secs(s);
                }
                Some(s) => r.problem(format!(
                    "`{key}` must be 2 to {MAX_LEASE} seconds (the leader renews its lease a few times within it), got {s}"
                )),
                None => {}
            },
            "outbox_limit" => {
                if let Some(n) = r.positive_int(&key, v) {
                    out.outbox_limit = n;
                }
            }
            "prefetch" => match r.positive_int(&key, v) {
                Some(n) if n <= u64::from(u16::MAX) => out.prefetch = Some(n as u16),
                Some(n) => r.problem(format!("`{key}` is at most {}, got {n}", u16::MAX)),
                None => {}
            },
            _ => r.unknown_key(k),
        }
    }
    if out.amqp_url.is_none() && !r.has_problem_about("distributed.amqp_url") {
        r.problem(
            "`distributed.amqp_url` is required in [distributed] (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)"
                .to_owned(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_of_the_section_is_said_at_once() {
        let text = "[distributed]\namqp_url = \"http://mq\"\npartitions = 0\nlease_seconds = 1\nprefetch = 70000\ncolour = 1\n";
        let err = crate::config::Config::parse(text, &[]).unwrap_err();
        let all = err.problems.join("\n");
        for expected in [
            "`distributed.amqp_url` must be an amqp:// or amqps:// URL",
            "`distributed.partitions` must be a positive integer",
            "`distributed.lease_seconds` must be 2 to 3600 seconds",
            "`distributed.prefetch` is at most 65535",
            "unknown key `distributed.colour`",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
    }

    #[test]
    fn the_defaults_and_a_full_section() {
        let text = "[distributed]\namqp_url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\npartitions = 16\nprefix = \"eu\"\nlease_seconds = \"30s\"\n";
        let cfg = crate::config::Config::parse(text, &[]).expect("valid");
        let d = &cfg.distributed;
        assert_eq!((d.partitions, d.prefix.as_str()), (16, "eu"));
        assert_eq!(d.lease_seconds, Duration::from_secs(30));
        assert_eq!(d.outbox_limit, 1_000_000);
        let absent = crate::config::Config::parse("", &[]).expect("valid");
        assert!(absent.distributed.amqp_url.is_none());
        assert_eq!(absent.distributed.partitions, 8);
    }

    #[test]
    fn the_password_is_never_shown() {
        let url = AmqpUrl("amqp://zel:s3cret@mq.example:5672/prod".to_owned());
        assert_eq!(url.to_string(), "amqp://zel:***@mq.example:5672/prod");
        assert!(!format!("{url:?}").contains("s3cret"));
        let bare = AmqpUrl("amqp://127.0.0.1:5672/%2f".to_owned());
        assert_eq!(bare.to_string(), "amqp://127.0.0.1:5672/%2f");
    }
}
