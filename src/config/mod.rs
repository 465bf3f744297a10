//! The configuration file: TOML text → a validated [`Config`].
//!
//! Parsing happens in two steps, as in ripgrep and vector: the TOML is read
//! into a generic table, then every section is walked by hand so that *all*
//! problems (unknown keys, wrong types, bad values, unknown listeners) are
//! collected and reported in one [`ConfigError`], instead of stopping at the
//! first one the way `serde(deny_unknown_fields)` would. Settings from the
//! original Python plugin that mean nothing in this daemon are rejected with
//! a sentence that says why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

mod selection;
pub use selection::{
    FiltersConfig, ListenerFilterConfig, PartitionStrategy, SecurityConfig, UserRef,
};

/// The database used when no configuration file names one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://zulip-event-listeners.db";

/// The listeners enabled when the configuration does not say.
pub const DEFAULT_LISTENERS: &[&str] = &["message_logger", "user_activity_tracker"];

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[zulip]`: where the credentials are and how to register the queue.
    pub zulip: ZulipConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[listeners]`: which listeners run.
    pub listeners: ListenersConfig,
    /// `[performance]`.
    pub performance: PerformanceConfig,
    /// `[logging]`.
    pub logging: LoggingConfig,
    /// `[network]`: HTTP timeouts and retry behaviour towards Zulip.
    pub network: NetworkConfig,
    /// `[http]`: the health and metrics server.
    pub http: HttpConfig,
    /// `[scaling]`: which instance this process is.
    pub scaling: ScalingConfig,
    /// `[statistics]`: per-listener statistics buckets and their retention.
    pub statistics: StatisticsConfig,
    /// `[filters]`: events no listener runs for.
    pub filters: FiltersConfig,
    /// `[security]`: blocked users and the per-user rate limit.
    pub security: SecurityConfig,
    /// `[queue]`: retries of failed listener runs.
    pub queue: QueueConfig,
    /// `[error_handling]`: circuit breaker, auto-disable, notifications.
    pub error_handling: ErrorHandlingConfig,
}

/// `[zulip]`.
#[derive(Debug, Clone)]
pub struct ZulipConfig {
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
}

/// The queue lifetime asked for by default: one day.
pub const DEFAULT_QUEUE_LIFESPAN_SECS: u64 = 86_400;

impl Default for ZulipConfig {
    fn default() -> Self {
        ZulipConfig {
            zuliprc: None,
            site: None,
            email: None,
            all_public_streams: false,
            narrow: Vec::new(),
            apply_markdown: false,
            queue_lifespan_secs: DEFAULT_QUEUE_LIFESPAN_SECS,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
}

/// `[listeners]`.
#[derive(Debug, Clone)]
pub struct ListenersConfig {
    /// Names of the enabled listeners, in configuration order.
    pub enabled: Vec<String>,
    /// `[listeners.NAME]` tables: per-listener filters, by listener name.
    pub filters: BTreeMap<String, ListenerFilterConfig>,
}

/// `[performance]`.
#[derive(Debug, Clone)]
pub struct PerformanceConfig {
    /// Listener runs in flight at once, over all listeners.
    pub max_concurrent_handlers: usize,
    /// Upper bound of one listener run.
    pub handler_timeout: Duration,
    /// Resident memory, in bytes, above which polling pauses.
    pub memory_threshold: Option<u64>,
}

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// A `tracing` filter directive such as `info` or `warn,zulip_event_listeners=debug`.
    pub level: String,
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Append to this file (reopened on SIGHUP) instead of writing to stderr.
    pub file: Option<PathBuf>,
}

/// `[network]`.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// TCP + TLS connect timeout.
    pub connection_timeout: Duration,
    /// Timeout of requests that are not long polls.
    pub read_timeout: Duration,
    /// Consecutive failed polls after which the daemon reports itself degraded.
    pub max_retries: u32,
    /// Upper bound of the exponential backoff between failed polls.
    pub backoff_cap: Duration,
}

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address of the `/health` and `/metrics` server; `None` disables it.
    pub bind: Option<SocketAddr>,
}

/// `[scaling]`.
#[derive(Debug, Clone)]
pub struct ScalingConfig {
    /// Name of this instance; each instance keeps its own queue cursor and inbox.
    pub instance_id: String,
    /// Instances splitting the events between them (1: no split).
    pub total_instances: u32,
    /// This instance's place among them, from 0: `instance_id` − 1 when
    /// `total_instances` > 1, else 0.
    pub instance_index: u32,
    /// How the instances split the events.
    pub partition_strategy: PartitionStrategy,
}

/// `[statistics]`.
#[derive(Debug, Clone)]
pub struct StatisticsConfig {
    /// Whether runs are counted in `event_listeners_listenerstats` and old
    /// rows are deleted while the daemon runs.
    pub enabled: bool,
    /// Days of statistics, event log and dispatched inbox rows kept.
    pub retention_days: u32,
    /// Width of a statistics bucket.
    pub aggregation_interval: Duration,
}

impl Default for StatisticsConfig {
    fn default() -> Self {
        StatisticsConfig {
            enabled: true,
            retention_days: 30,
            aggregation_interval: Duration::from_secs(300),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            zulip: ZulipConfig::default(),
            database: DatabaseConfig {
                url: DEFAULT_DATABASE_URL.to_owned(),
                max_connections: 8,
            },
            listeners: ListenersConfig {
                enabled: DEFAULT_LISTENERS.iter().map(|s| (*s).to_owned()).collect(),
                filters: BTreeMap::new(),
            },
            performance: PerformanceConfig {
                max_concurrent_handlers: 5,
                handler_timeout: Duration::from_secs(30),
                memory_threshold: None,
            },
            logging: LoggingConfig {
                level: "info".to_owned(),
                format: LogFormat::Text,
                file: None,
            },
            network: NetworkConfig {
                connection_timeout: Duration::from_secs(10),
                read_timeout: Duration::from_secs(30),
                max_retries: 5,
                backoff_cap: Duration::from_secs(10),
            },
            http: HttpConfig {
                bind: Some(SocketAddr::from(([127, 0, 0, 1], 9187))),
            },
            scaling: ScalingConfig {
                instance_id: "default".to_owned(),
                total_instances: 1,
                instance_index: 0,
                partition_strategy: PartitionStrategy::Hash,
            },
            filters: FiltersConfig::default(),
            security: SecurityConfig::default(),
            statistics: StatisticsConfig::default(),
            queue: QueueConfig::default(),
            error_handling: ErrorHandlingConfig::default(),
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the problems come from one.
    pub path: Option<PathBuf>,
    /// One sentence per problem, each naming the key it is about.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        match &self.path {
            Some(p) => write!(f, "{} has {n} problem(s):", p.display())?,
            None => write!(f, "the configuration has {n} problem(s):")?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// `known_listeners` are the names a `[listeners] enabled` entry may use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] listing every problem, or the I/O error when the
    /// file cannot be read.
    pub fn load(path: &Path, known_listeners: &[&str]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_owned()),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        Config::parse(&text, known_listeners).map_err(|mut e| {
            e.path = Some(path.to_owned());
            e
        })
    }

    /// Validates configuration text.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] listing every problem found.
    pub fn parse(text: &str, known_listeners: &[&str]) -> Result<Config, ConfigError> {
        let table: Table = toml::from_str(text).map_err(|e| ConfigError {
            path: None,
            problems: vec![format!("not valid TOML: {}", e.message().trim())],
        })?;
        let mut r = Reader::default();
        let mut cfg = Config::default();
        for (section, value) in &table {
            let Some(t) = value.as_table() else {
                r.problem(format!("`{section}` must be a [section]"));
                continue;
            };
            match section.as_str() {
                "zulip" => read_zulip(&mut r, t, &mut cfg.zulip),
                "database" => read_database(&mut r, t, &mut cfg.database),
                "listeners" => read_listeners(&mut r, t, &mut cfg.listeners, known_listeners),
                "performance" => read_performance(&mut r, t, &mut cfg.performance),
                "logging" => read_logging(&mut r, t, &mut cfg.logging),
                "network" => read_network(&mut r, t, &mut cfg.network),
                "http" => read_http(&mut r, t, &mut cfg.http),
                "scaling" => read_scaling(&mut r, t, &mut cfg.scaling),
                "statistics" => read_statistics(&mut r, t, &mut cfg.statistics),
                "queue" => read_queue(&mut r, t, &mut cfg.queue),
                "error_handling" => read_error_handling(&mut r, t, &mut cfg.error_handling),
                "filters" => selection::read_filters(&mut r, t, &mut cfg.filters),
                "security" => selection::read_security(&mut r, t, &mut cfg.security),
                other => r.problem(format!(
                    "unknown section [{other}] (known: zulip, database, listeners, performance, logging, network, http, scaling, statistics, queue, error_handling, filters, security)"
                )),
            }
        }
        if r.problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                path: None,
                problems: r.problems,
            })
        }
    }
}

/// Collects problems while sections are read.
#[derive(Default)]
struct Reader {
    problems: Vec<String>,
}

impl Reader {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn unknown(&mut self, section: &str, key: &str, known: &[&str]) {
        self.problem(format!(
            "unknown key `{section}.{key}` (known: {})",
            known.join(", ")
        ));
    }

    fn bool(&mut self, key: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Boolean(b) => Some(*b),
            _ => self.wrong(key, v, "true or false"),
        }
    }

    fn string(&mut self, key: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => self.wrong(key, v, "a string"),
        }
    }

    fn positive_int(&mut self, key: &str, v: &Value) -> Option<u64> {
        match v {
            Value::Integer(i) if *i > 0 => Some(*i as u64),
            Value::Integer(i) => {
                self.problem(format!("`{key}` must be a positive integer, got {i}"));
                None
            }
            _ => self.wrong(key, v, "a positive integer"),
        }
    }

    /// Seconds, as an integer or a float, strictly positive.
    fn seconds(&mut self, key: &str, v: &Value) -> Option<Duration> {
        let secs = match v {
            Value::Integer(i) => *i as f64,
            Value::Float(f) => *f,
            _ => return self.wrong(key, v, "a number of seconds"),
        };
        if secs.is_finite() && secs > 0.0 && secs <= 31_536_000.0 {
            Some(Duration::from_secs_f64(secs))
        } else {
            self.problem(format!(
                "`{key}` must be a number of seconds above 0 and at most a year, got {secs}"
            ));
            None
        }
    }

    fn wrong<T>(&mut self, key: &str, v: &Value, expected: &str) -> Option<T> {
        self.problem(format!(
            "`{key}` must be {expected}, got {} `{v}`",
            v.type_str()
        ));
        None
    }
}

fn read_zulip(r: &mut Reader, t: &Table, out: &mut ZulipConfig) {
    const KNOWN: &[&str] = &[
        "zuliprc",
        "site",
        "email",
        "all_public_streams",
        "narrow",
        "apply_markdown",
        "queue_lifespan_secs",
    ];
    for (k, v) in t {
        let key = format!("zulip.{k}");
        match k.as_str() {
            "zuliprc" => out.zuliprc = r.string(&key, v).map(PathBuf::from),
            "site" => out.site = r.string(&key, v),
            "email" => out.email = r.string(&key, v),
            "api_key" | "key" => r.problem(format!(
                "`{key}` is not read from this file, so that the key never sits in a world-readable config: put it in the zuliprc (`[zulip] zuliprc`) or in ZULIP_API_KEY"
            )),
            "all_public_streams" => out.all_public_streams = r.bool(&key, v).unwrap_or_default(),
            "apply_markdown" => out.apply_markdown = r.bool(&key, v).unwrap_or_default(),
            "queue_lifespan_secs" => {
                if let Some(s) = r.positive_int(&key, v) {
                    if s > 604_800 {
                        r.problem(format!("`{key}` is at most 604800 (7 days, Zulip's cap), got {s}"));
                    } else {
                        out.queue_lifespan_secs = s;
                    }
                }
            }
            "narrow" => out.narrow = read_narrow(r, &key, v),
            _ => r.unknown("zulip", k, KNOWN),
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

fn read_database(r: &mut Reader, t: &Table, out: &mut DatabaseConfig) {
    for (k, v) in t {
        let key = format!("database.{k}");
        match k.as_str() {
            "url" => {
                if let Some(url) = r.string(&key, v) {
                    match crate::store::DatabaseUrl::parse(&url) {
                        Ok(_) => out.url = url,
                        Err(e) => r.problem(format!("`{key}` {e}")),
                    }
                }
            }
            "max_connections" => {
                if let Some(n) = r.positive_int(&key, v) {
                    out.max_connections = n.min(1000) as u32;
                }
            }
            _ => r.unknown("database", k, &["url", "max_connections"]),
        }
    }
}

fn read_listeners(r: &mut Reader, t: &Table, out: &mut ListenersConfig, known: &[&str]) {
    for (k, v) in t {
        let key = format!("listeners.{k}");
        match k.as_str() {
            "enabled" => {
                let Some(items) = v.as_array() else {
                    r.wrong::<()>(&key, v, "a list of listener names");
                    continue;
                };
                let mut names = Vec::new();
                let mut seen = BTreeSet::new();
                for item in items {
                    let Some(name) = item.as_str() else {
                        r.wrong::<()>(&key, item, "a list of listener names");
                        continue;
                    };
                    if !known.contains(&name) {
                        r.problem(format!(
                            "unknown listener `{name}` in `{key}` (available: {})",
                            known.join(", ")
                        ));
                    } else if seen.insert(name) {
                        names.push(name.to_owned());
                    }
                }
                out.enabled = names;
            }
            // `[listeners.NAME]` tables hold per-listener settings.
            name if v.is_table() => {
                if !known.contains(&name) {
                    r.problem(format!(
                        "[listeners.{name}] configures an unknown listener (available: {})",
                        known.join(", ")
                    ));
                } else if let Some(t) = v.as_table() {
                    let filter = selection::read_listener_filter(r, name, t);
                    out.filters.insert(name.to_owned(), filter);
                }
            }
            _ => r.unknown("listeners", k, &["enabled", "[listeners.NAME]"]),
        }
    }
}

fn read_performance(r: &mut Reader, t: &Table, out: &mut PerformanceConfig) {
    for (k, v) in t {
        let key = format!("performance.{k}");
        match k.as_str() {
            "max_concurrent_handlers" => {
                if let Some(n) = r.positive_int(&key, v) {
                    if n > 10_000 {
                        r.problem(format!("`{key}` is at most 10000, got {n}"));
                    } else {
                        out.max_concurrent_handlers = n as usize;
                    }
                }
            }
            "handler_timeout" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.handler_timeout = d;
                }
            }
            "memory_threshold" => out.memory_threshold = r.positive_int(&key, v),
            "gc_interval" => r.problem(format!(
                "`{key}` only made sense for Python's garbage collector; this daemon frees memory as it goes: remove the key"
            )),
            "instance_cache_size" => r.problem(format!(
                "`{key}` only made sense for the Python plugin's handler cache; each listener here is built once at start: remove the key"
            )),
            "worker_processes" | "async_processing" => r.problem(format!(
                "`{key}` only made sense for the Python plugin; this daemon is always asynchronous and sizes its work with `performance.max_concurrent_handlers`: remove the key"
            )),
            _ => r.unknown(
                "performance",
                k,
                &["max_concurrent_handlers", "handler_timeout", "memory_threshold"],
            ),
        }
    }
}

fn read_logging(r: &mut Reader, t: &Table, out: &mut LoggingConfig) {
    for (k, v) in t {
        let key = format!("logging.{k}");
        match k.as_str() {
            "level" => {
                if let Some(level) = r.string(&key, v) {
                    match parse_level(&level) {
                        Ok(l) => out.level = l,
                        Err(e) => r.problem(format!(
                            "`{key}` must be a level (error, warn, info, debug, trace; Python's WARNING and CRITICAL are accepted) or a filter directive such as \"info,sqlx=warn\", got `{level}`{e}"
                        )),
                    }
                }
            }
            "format" => match r.string(&key, v).as_deref() {
                Some("text") => out.format = LogFormat::Text,
                Some("json") => out.format = LogFormat::Json,
                Some(other) => r.problem(format!(
                    "`{key}` must be \"text\" or \"json\", got `{other}`"
                )),
                None => {}
            },
            "file" => out.file = r.string(&key, v).map(PathBuf::from),
            _ => r.unknown("logging", k, &["level", "format", "file"]),
        }
    }
}

/// A level name (Python's `WARNING`/`CRITICAL` included) or an `EnvFilter`
/// directive, as the directive to use.
fn parse_level(level: &str) -> Result<String, String> {
    let lower = level.trim().to_lowercase();
    let simple = match lower.as_str() {
        "warning" => Some("warn"),
        "critical" | "fatal" => Some("error"),
        "off" | "error" | "warn" | "info" | "debug" | "trace" => Some(lower.as_str()),
        _ => None,
    };
    if let Some(s) = simple {
        return Ok(s.to_owned());
    }
    // A bare word would be taken as a target name and silently log everything.
    if !lower.contains('=') && !lower.contains(',') {
        return Err(String::new());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(&lower)
        .map(|_| lower.clone())
        .map_err(|e| format!(": {e}"))
}

fn read_network(r: &mut Reader, t: &Table, out: &mut NetworkConfig) {
    for (k, v) in t {
        let key = format!("network.{k}");
        match k.as_str() {
            "connection_timeout" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.connection_timeout = d;
                }
            }
            "read_timeout" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.read_timeout = d;
                }
            }
            "backoff_cap" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.backoff_cap = d;
                }
            }
            "max_retries" => {
                if let Some(n) = r.positive_int(&key, v) {
                    out.max_retries = n.min(u64::from(u32::MAX)) as u32;
                }
            }
            "connection_pool_size" => r.problem(format!(
                "`{key}` only made sense for the Python plugin's HTTP pool; this daemon keeps one long-poll connection per queue: remove the key"
            )),
            _ => r.unknown(
                "network",
                k,
                &["connection_timeout", "read_timeout", "max_retries", "backoff_cap"],
            ),
        }
    }
}

fn read_http(r: &mut Reader, t: &Table, out: &mut HttpConfig) {
    for (k, v) in t {
        let key = format!("http.{k}");
        match k.as_str() {
            "bind" => match r.string(&key, v).as_deref() {
                Some("" | "off") => out.bind = None,
                Some(s) => match s.parse::<SocketAddr>() {
                    Ok(a) => out.bind = Some(a),
                    Err(_) => r.problem(format!(
                        "`{key}` must be an address such as \"127.0.0.1:9187\" (or \"off\"), got `{s}`"
                    )),
                },
                None => {}
            },
            _ => r.unknown("http", k, &["bind"]),
        }
    }
}

fn read_scaling(r: &mut Reader, t: &Table, out: &mut ScalingConfig) {
    for (k, v) in t {
        let key = format!("scaling.{k}");
        match k.as_str() {
            "instance_id" => {
                let id = match v {
                    Value::Integer(i) => Some(i.to_string()),
                    _ => r.string(&key, v),
                };
                match id {
                    Some(id)
                        if !id.is_empty()
                            && id.len() <= 64
                            && id
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                    {
                        out.instance_id = id;
                    }
                    Some(id) => r.problem(format!(
                        "`{key}` must be 1 to 64 letters, digits, '-', '_' or '.', got `{id}`"
                    )),
                    None => {}
                }
            }
            "total_instances" | "partition_strategy" => {
                selection::read_partition_key(r, &key, v, out)
            }
            _ => r.unknown(
                "scaling",
                k,
                &["instance_id", "total_instances", "partition_strategy"],
            ),
        }
    }
    selection::check_instance(r, out);
}

/// Longest kept history, in days (a century: a typo guard, not a policy).
const MAX_RETENTION_DAYS: u64 = 36_500;
/// Widest statistics bucket, in seconds (one day).
const MAX_AGGREGATION_INTERVAL: u64 = 86_400;

fn read_statistics(r: &mut Reader, t: &Table, out: &mut StatisticsConfig) {
    for (k, v) in t {
        let key = format!("statistics.{k}");
        match k.as_str() {
            "enabled" => {
                if let Some(b) = r.bool(&key, v) {
                    out.enabled = b;
                }
            }
            "retention_days" => match r.positive_int(&key, v) {
                Some(d) if d <= MAX_RETENTION_DAYS => out.retention_days = d as u32,
                Some(d) => r.problem(format!(
                    "`{key}` is at most {MAX_RETENTION_DAYS} days, got {d}"
                )),
                None => {}
            },
            "aggregation_interval" => match r.positive_int(&key, v) {
                Some(s) if s <= MAX_AGGREGATION_INTERVAL => {
                    out.aggregation_interval = Duration::from_secs(s);
                }
                Some(s) => r.problem(format!(
                    "`{key}` is a number of seconds up to {MAX_AGGREGATION_INTERVAL} (one day), got {s}"
                )),
                None => {}
            },
            _ => r.unknown(
                "statistics",
                k,
                &["enabled", "retention_days", "aggregation_interval"],
            ),
        }
    }
}

/// `[queue]`: retries of failed listener runs.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Retries after a failed or timed-out run (permanent errors are not retried).
    pub max_retries: u32,
    /// Delay between tries (jittered ±50%).
    pub retry_delay: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_retries: 3,
            retry_delay: Duration::from_secs(5),
        }
    }
}

/// `[error_handling]`.
#[derive(Debug, Clone)]
pub struct ErrorHandlingConfig {
    /// Failures of one listener within an hour that disable it (0: never).
    pub max_failures_per_hour: u32,
    /// Consecutive failures that disable a listener (0: never).
    pub auto_disable_threshold: u32,
    /// Consecutive failures that open a listener's circuit (0: no breaker).
    pub circuit_breaker_threshold: u32,
    /// How long an open circuit skips runs before a trial run.
    pub circuit_breaker_cooldown: Duration,
    /// Where JSON notifications are POSTed (circuit opened, listener disabled, dead letter).
    pub notification_webhook: Option<String>,
}

impl Default for ErrorHandlingConfig {
    fn default() -> Self {
        ErrorHandlingConfig {
            max_failures_per_hour: 0,
            auto_disable_threshold: 0,
            circuit_breaker_threshold: 5,
            circuit_breaker_cooldown: Duration::from_secs(300),
            notification_webhook: None,
        }
    }
}

fn read_queue(r: &mut Reader, t: &Table, out: &mut QueueConfig) {
    for (k, v) in t {
        let key = format!("queue.{k}");
        match k.as_str() {
            "max_retries" => match v {
                Value::Integer(i) if (0..=100).contains(i) => out.max_retries = *i as u32,
                _ => r.problem(format!("`{key}` must be an integer from 0 to 100, got `{v}`")),
            },
            "retry_delay" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.retry_delay = d;
                }
            }
            "batch_size" => r.problem(format!(
                "`{key}` only made sense for the Python plugin's processing loop; this daemon sizes its group commits by time and count itself: remove the key"
            )),
            "timeout" => r.problem(format!(
                "`{key}` duplicates `performance.handler_timeout`, which bounds every listener run here: remove the key"
            )),
            _ => r.unknown("queue", k, &["max_retries", "retry_delay"]),
        }
    }
}

fn read_error_handling(r: &mut Reader, t: &Table, out: &mut ErrorHandlingConfig) {
    let count = |r: &mut Reader, key: &str, v: &Value| match v {
        Value::Integer(i) if (0..=1_000_000).contains(i) => Some(*i as u32),
        _ => {
            r.problem(format!(
                "`{key}` must be an integer from 0 (off) to 1000000, got `{v}`"
            ));
            None
        }
    };
    for (k, v) in t {
        let key = format!("error_handling.{k}");
        match k.as_str() {
            "max_failures_per_hour" => {
                if let Some(n) = count(r, &key, v) {
                    out.max_failures_per_hour = n;
                }
            }
            "auto_disable_threshold" => {
                if let Some(n) = count(r, &key, v) {
                    out.auto_disable_threshold = n;
                }
            }
            "circuit_breaker_threshold" => {
                if let Some(n) = count(r, &key, v) {
                    out.circuit_breaker_threshold = n;
                }
            }
            "circuit_breaker_cooldown" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.circuit_breaker_cooldown = d;
                }
            }
            "notification_webhook" => match r.string(&key, v) {
                Some(u) if u.is_empty() => out.notification_webhook = None,
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                    out.notification_webhook = Some(u)
                }
                Some(u) => r.problem(format!(
                    "`{key}` must be an http:// or https:// URL, got `{u}`"
                )),
                None => {}
            },
            _ => r.unknown(
                "error_handling",
                k,
                &[
                    "max_failures_per_hour",
                    "auto_disable_threshold",
                    "circuit_breaker_threshold",
                    "circuit_breaker_cooldown",
                    "notification_webhook",
                ],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["message_logger", "user_activity_tracker"];

    #[test]
    fn the_issue_example_parses_into_the_expected_values() {
        let cfg = Config::parse(
            r#"
            [zulip]
            zuliprc = "/etc/zulip-event-listeners/zuliprc"
            [database]
            url = "postgres://user@host/db"
            [listeners]
            enabled = ["message_logger"]
            [performance]
            max_concurrent_handlers = 7
            handler_timeout = 2.5
            "#,
            KNOWN,
        )
        .unwrap();
        assert_eq!(
            cfg.zulip.zuliprc.as_deref(),
            Some(Path::new("/etc/zulip-event-listeners/zuliprc"))
        );
        assert_eq!(cfg.database.url, "postgres://user@host/db");
        assert_eq!(cfg.listeners.enabled, vec!["message_logger".to_owned()]);
        assert_eq!(cfg.performance.max_concurrent_handlers, 7);
        assert_eq!(cfg.performance.handler_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let cfg = Config::parse("", KNOWN).unwrap();
        assert_eq!(cfg.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(cfg.listeners.enabled.len(), 2);
        assert_eq!(cfg.performance.max_concurrent_handlers, 5);
    }

    #[test]
    fn three_mistakes_are_all_reported_at_once() {
        let err = Config::parse(
            r#"
            [performance]
            handler_timeout = -3
            [logging]
            colour = "yes"
            [listeners]
            enabled = ["message_logger", "spam_filter"]
            "#,
            KNOWN,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(text.contains("performance.handler_timeout"), "{text}");
        assert!(text.contains("logging.colour"), "{text}");
        assert!(text.contains("spam_filter"), "{text}");
    }

    #[test]
    fn python_only_settings_are_rejected_with_a_reason() {
        let err = Config::parse("[performance]\ngc_interval = 100\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("Python"), "{err}");
    }

    #[test]
    fn an_api_key_in_the_file_is_refused_without_echoing_it() {
        let err = Config::parse("[zulip]\napi_key = \"s3cr3t-value\"\n", KNOWN).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-value"));
        assert!(err.to_string().contains("ZULIP_API_KEY"));
    }

    #[test]
    fn a_bad_narrow_and_a_bad_database_url_are_both_reported() {
        let err = Config::parse(
            "[zulip]\nnarrow = [[\"channel\"]]\n[database]\nurl = \"mysql://x\"\n",
            KNOWN,
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn statistics_default_to_enabled_thirty_days_and_five_minute_buckets() {
        let cfg = Config::parse("", KNOWN).unwrap();
        assert!(cfg.statistics.enabled);
        assert_eq!(cfg.statistics.retention_days, 30);
        assert_eq!(
            cfg.statistics.aggregation_interval,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn the_guides_statistics_section_parses() {
        let cfg = Config::parse(
            "[statistics]\nenabled = false\nretention_days = 7\naggregation_interval = 600\n",
            KNOWN,
        )
        .unwrap();
        assert!(!cfg.statistics.enabled);
        assert_eq!(cfg.statistics.retention_days, 7);
        assert_eq!(
            cfg.statistics.aggregation_interval,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn every_statistics_mistake_is_reported_at_once() {
        let err = Config::parse(
            "[statistics]\nenabled = \"yes\"\nretention_days = 0\naggregation_interval = 2.5\nkeep = 1\n",
            KNOWN,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 4, "{text}");
        for key in [
            "statistics.enabled",
            "statistics.retention_days",
            "statistics.aggregation_interval",
            "statistics.keep",
        ] {
            assert!(text.contains(key), "missing {key}: {text}");
        }
    }

    #[test]
    fn an_aggregation_interval_over_a_day_is_refused() {
        let err = Config::parse("[statistics]\naggregation_interval = 86401\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("one day"), "{err}");
    }

    #[test]
    fn the_unknown_section_message_names_statistics() {
        let err = Config::parse("[stats]\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("statistics"), "{err}");
    }

    #[test]
    fn invalid_toml_is_one_clear_problem() {
        let err = Config::parse("[zulip\n", KNOWN).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].starts_with("not valid TOML"));
    }
}
