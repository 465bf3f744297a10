//! The whole [`Config`], and how a file becomes one: the TOML is read into
//! a generic table, then each `[section]` is handed to its own reader (one
//! file per section, listed once in [`SECTIONS`]) so that *all* problems
//! (unknown keys, wrong types, bad values, unknown listeners) are collected
//! and reported in one [`ConfigError`], instead of stopping at the first one
//! the way `serde(deny_unknown_fields)` would. Settings from the original
//! Python plugin that mean nothing in this daemon are rejected with a
//! sentence that says why.

use std::path::Path;

use toml::Table;

use super::data_protection::{self, DataProtectionConfig};
use super::database::{self, DatabaseConfig};
use super::distributed::{self, DistributedConfig};
use super::error::ConfigError;
use super::error_handling::{self, ErrorHandlingConfig};
use super::filters::{self, FiltersConfig};
use super::http::{self, HttpConfig};
use super::listeners::{self, ListenersConfig};
use super::logging::{self, LoggingConfig};
use super::network::{self, NetworkConfig};
use super::organizations;
use super::performance::{self, PerformanceConfig};
use super::permissions::FilePermissions;
use super::queue::{self, QueueConfig};
use super::reader::Reader;
use super::scaling::{self, ScalingConfig};
use super::security::{self, SecurityConfig};
use super::statistics::{self, StatisticsConfig};
use super::telemetry::{self, TelemetryConfig};
use super::zulip::{self, ZulipConfig};

/// The whole validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[zulip]`: where the credentials are and how to register the queue
    /// (with several organizations, the first one's; see
    /// [`Config::organizations`]).
    pub zulip: ZulipConfig,
    /// The `[[zulip]]` entries when there are several organizations; empty
    /// for one (then `zulip` is it).
    pub organizations: Vec<ZulipConfig>,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[listeners]`: which listeners run.
    pub listeners: ListenersConfig,
    /// `[performance]`.
    pub performance: PerformanceConfig,
    /// `[logging]`.
    pub logging: LoggingConfig,
    /// `[telemetry]`: traces over OTLP.
    pub telemetry: TelemetryConfig,
    /// `[network]`: HTTP timeouts and retry behaviour towards Zulip.
    pub network: NetworkConfig,
    /// `[http]`: the health and metrics server.
    pub http: HttpConfig,
    /// `[scaling]`: which instance this process is.
    pub scaling: ScalingConfig,
    /// `[distributed]`: the RabbitMQ mode's broker, partitions and lease.
    pub distributed: DistributedConfig,
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
    /// `[data_protection]`: the audit trail.
    pub data_protection: DataProtectionConfig,
    /// Whether a secret file others may read is refused (the default) or
    /// used with a warning. Not a key of the file: the command line's
    /// `--allow-insecure-permissions` sets it.
    pub file_permissions: FilePermissions,
}

/// One `[section]`: its name, its keys, and the reader that fills its part
/// of the [`Config`].
struct Section {
    name: &'static str,
    keys: &'static [&'static str],
    read: fn(&mut Reader, &Table, &mut Config),
}

/// Every section, in the order the unknown-section message lists them: the
/// one list of sections and of their keys.
const SECTIONS: &[Section] = &[
    Section {
        name: zulip::SECTION,
        keys: zulip::KNOWN,
        read: |r, t, c| zulip::read(r, t, &mut c.zulip),
    },
    Section {
        name: database::SECTION,
        keys: database::KNOWN,
        read: |r, t, c| database::read(r, t, &mut c.database),
    },
    Section {
        name: listeners::SECTION,
        keys: listeners::KNOWN,
        read: |r, t, c| listeners::read(r, t, &mut c.listeners),
    },
    Section {
        name: performance::SECTION,
        keys: performance::KNOWN,
        read: |r, t, c| performance::read(r, t, &mut c.performance),
    },
    Section {
        name: logging::SECTION,
        keys: logging::KNOWN,
        read: |r, t, c| logging::read(r, t, &mut c.logging),
    },
    Section {
        name: telemetry::SECTION,
        keys: telemetry::KNOWN,
        read: |r, t, c| telemetry::read(r, t, &mut c.telemetry),
    },
    Section {
        name: network::SECTION,
        keys: network::KNOWN,
        read: |r, t, c| network::read(r, t, &mut c.network),
    },
    Section {
        name: http::SECTION,
        keys: http::KNOWN,
        read: |r, t, c| http::read(r, t, &mut c.http),
    },
    Section {
        name: scaling::SECTION,
        keys: scaling::KNOWN,
        read: |r, t, c| scaling::read(r, t, &mut c.scaling),
    },
    Section {
        name: distributed::SECTION,
        keys: distributed::KNOWN,
        read: |r, t, c| distributed::read(r, t, &mut c.distributed),
    },
    Section {
        name: statistics::SECTION,
        keys: statistics::KNOWN,
        read: |r, t, c| statistics::read(r, t, &mut c.statistics),
    },
    Section {
        name: queue::SECTION,
        keys: queue::KNOWN,
        read: |r, t, c| queue::read(r, t, &mut c.queue),
    },
    Section {
        name: error_handling::SECTION,
        keys: error_handling::KNOWN,
        read: |r, t, c| error_handling::read(r, t, &mut c.error_handling),
    },
    Section {
        name: filters::SECTION,
        keys: filters::KNOWN,
        read: |r, t, c| filters::read(r, t, &mut c.filters),
    },
    Section {
        name: security::SECTION,
        keys: security::KNOWN,
        read: |r, t, c| security::read(r, t, &mut c.security),
    },
    Section {
        name: data_protection::SECTION,
        keys: data_protection::KNOWN,
        read: |r, t, c| data_protection::read(r, t, &mut c.data_protection),
    },
];

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
        let (cfg, problems) = Config::parse_with_problems(text, known_listeners);
        match (cfg, problems.is_empty()) {
            (Some(cfg), true) => Ok(cfg),
            _ => Err(ConfigError {
                path: None,
                problems,
            }),
        }
    }

    /// [`Config::parse`], and also the configuration read despite its
    /// problems (each bad value left at its default), so that `check-config`
    /// can go on to check what `run` would do with it; `None` when the text
    /// is not TOML.
    pub(crate) fn parse_with_problems(
        text: &str,
        known_listeners: &[&str],
    ) -> (Option<Config>, Vec<String>) {
        let table: Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => return (None, vec![toml_problem(text, &e)]),
        };
        let mut r = Reader::new(known_listeners);
        let mut cfg = Config::default();
        for (name, value) in &table {
            if let (zulip::SECTION, Some(items)) = (name.as_str(), value.as_array()) {
                organizations::read_entries(&mut r, items, &mut cfg.zulip, &mut cfg.organizations);
                continue;
            }
            let Some(t) = value.as_table() else {
                r.problem(format!("`{name}` must be a [section]"));
                continue;
            };
            match SECTIONS.iter().find(|s| s.name == name) {
                Some(section) => {
                    r.enter(section.name, section.keys);
                    (section.read)(&mut r, t, &mut cfg);
                }
                None => {
                    let known: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
                    r.problem(format!(
                        "unknown section [{name}] (known: {})",
                        known.join(", ")
                    ));
                }
            }
        }
        let parts = organizations::Parts {
            zulip: &mut cfg.zulip,
            organizations: &mut cfg.organizations,
            scaling: &mut cfg.scaling,
            enabled: &cfg.listeners.enabled,
            allowed: cfg.security.allowed_realms.as_deref(),
        };
        organizations::check(&mut r, parts);
        http::per_instance_default(&mut cfg.http, cfg.scaling.instance_index);
        (Some(cfg), r.problems)
    }
}

/// A TOML syntax error as one problem: where (line and column, from 1)
/// and what.
fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {column}")
    });
    format!(
        "not valid TOML{}: {}",
        at.unwrap_or_default(),
        e.message().trim()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{PartitionStrategy, UserRef, DEFAULT_DATABASE_URL};

    const KNOWN: &[&str] = &["message_logger", "user_activity_tracker"];

    #[test]
    fn zulip_event_types_narrows_the_registration_and_must_list_something() {
        let cfg = Config::parse(
            "[zulip]\nevent_types = [\"message\", \"reaction\"]\n",
            KNOWN,
        )
        .unwrap();
        assert_eq!(
            cfg.zulip.event_types,
            Some(vec!["message".to_owned(), "reaction".to_owned()])
        );
        assert_eq!(
            Config::default().zulip.event_types,
            None,
            "every type by default"
        );
        let err = Config::parse("[zulip]\nevent_types = []\n", KNOWN).unwrap_err();
        assert!(err.to_string().contains("zulip.event_types"), "{err}");
    }

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
    fn invalid_toml_is_one_clear_problem_with_its_line_and_column() {
        let err = Config::parse("[database]\nurl = \"x\"\n[zulip\n", KNOWN).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0].starts_with("not valid TOML at line 3, column 7"),
            "{err}"
        );
    }
    #[test]
    fn every_new_key_parses_into_its_value() {
        let cfg = Config::parse(
            r#"
            [filters]
            max_event_age = 3600
            [security]
            blocked_users = [42, "Spam@Example.com", "43"]
            rate_limit_per_user = 100
            [scaling]
            instance_id = 2
            total_instances = 3
            partition_strategy = "round_robin"
            [listeners.message_logger]
            event_types = ["message"]
            channels = ["general", "support"]
            topics = ["lunch"]
            senders = [10, "alice@example.com"]
            content_regex = "(?i)deploy"
            "#,
            KNOWN,
        )
        .unwrap();
        assert_eq!(cfg.filters.max_event_age, Some(Duration::from_secs(3600)));
        assert_eq!(
            cfg.security.blocked_users,
            vec![
                UserRef::Id(42),
                UserRef::Email("spam@example.com".into()),
                UserRef::Id(43)
            ]
        );
        assert_eq!(cfg.security.rate_limit_per_user, Some(100));
        assert_eq!(cfg.scaling.total_instances, 3);
        assert_eq!(cfg.scaling.instance_index, 1);
        assert_eq!(
            cfg.scaling.partition_strategy,
            PartitionStrategy::RoundRobin
        );
        let f = &cfg.listeners.instances["message_logger"].filter;
        assert_eq!(f.event_types.as_deref(), Some(&["message".to_owned()][..]));
        assert_eq!(f.channels.as_ref().map(Vec::len), Some(2));
        assert_eq!(f.topics.as_deref(), Some(&["lunch".to_owned()][..]));
        assert_eq!(
            f.senders.as_deref(),
            Some(&[UserRef::Id(10), UserRef::Email("alice@example.com".into())][..])
        );
        assert!(f.content_regex.as_ref().unwrap().is_match("DEPLOY now"));
    }

    #[test]
    fn the_defaults_split_nothing_and_filter_nothing() {
        let cfg = Config::parse("", KNOWN).unwrap();
        assert_eq!(cfg.scaling.total_instances, 1);
        assert_eq!(cfg.scaling.instance_index, 0);
        assert_eq!(cfg.scaling.partition_strategy, PartitionStrategy::Hash);
        assert!(cfg.filters.max_event_age.is_none());
        assert!(cfg.security.blocked_users.is_empty());
        assert!(cfg.security.rate_limit_per_user.is_none());
        assert!(cfg.listeners.instances.is_empty());
    }

    #[test]
    fn degradation_backfill_window_and_the_old_retry_count_parse() {
        let cfg = Config::parse("", KNOWN).unwrap();
        assert_eq!(cfg.error_handling.degraded_after, Duration::from_secs(30));
        assert_eq!(cfg.zulip.backfill_window, 50);
        assert_eq!(cfg.network.max_retries, None);
        let cfg = Config::parse(
            "[zulip]\nbackfill_window = 0\n[network]\nmax_retries = 3\n[error_handling]\ndegraded_after = \"2m\"\n",
            KNOWN,
        )
        .unwrap();
        assert_eq!(cfg.error_handling.degraded_after, Duration::from_secs(120));
        assert_eq!(cfg.zulip.backfill_window, 0);
        assert_eq!(cfg.network.max_retries, Some(3));
        let err = Config::parse(
            "[zulip]\nbackfill_window = -1\n[error_handling]\ndegraded_after = 0\n",
            KNOWN,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("zulip.backfill_window"), "{err}");
        assert!(err.contains("error_handling.degraded_after"), "{err}");
    }

    #[test]
    fn deadletter_retention_is_off_by_default_and_takes_whole_days() {
        let cfg = Config::parse("", KNOWN).unwrap();
        assert_eq!(cfg.error_handling.deadletter_retention_days, 0);
        let cfg =
            Config::parse("[error_handling]\ndeadletter_retention_days = 14\n", KNOWN).unwrap();
        assert_eq!(cfg.error_handling.deadletter_retention_days, 14);
        let err = Config::parse("[error_handling]\ndeadletter_retention_days = -1\n", KNOWN)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("error_handling.deadletter_retention_days"),
            "{err}"
        );
    }

    #[test]
    fn one_instance_keeps_any_instance_name() {
        let cfg = Config::parse("[scaling]\ninstance_id = \"eu-1\"\n", KNOWN).unwrap();
        assert_eq!(cfg.scaling.instance_index, 0);
    }

    #[test]
    fn every_bad_value_and_an_invalid_regex_are_reported_at_once() {
        let err = Config::parse(
            r#"
            [filters]
            max_event_age = -1
            default_realm_filter = 1
            [security]
            blocked_users = [0, "nobody"]
            rate_limit_per_user = 0
            allowed_realms = [1, 2]
            require_authentication = true
            [scaling]
            total_instances = 3
            partition_strategy = "random"
            [listeners.message_logger]
            channels = []
            topics = "lunch"
            content_regex = "(unclosed"
            colour = "red"
            "#,
            KNOWN,
        )
        .unwrap_err();
        let text = err.to_string();
        for key in [
            "filters.max_event_age",
            "filters.default_realm_filter",
            "security.blocked_users` entries must be user ids (positive integers) or email addresses, got `0`",
            "got `\"nobody\"`",
            "security.rate_limit_per_user",
            "security.allowed_realms",
            "security.require_authentication",
            "scaling.partition_strategy",
            "scaling.instance_id` must be this instance's number, 1 to 3",
            "listeners.message_logger.channels",
            "listeners.message_logger.topics",
            "listeners.message_logger.content_regex` is not a valid regular expression (`(unclosed`)",
            "listeners.message_logger.colour",
        ] {
            assert!(text.contains(key), "missing {key}: {text}");
        }
        assert_eq!(err.problems.len(), 13, "{text}");
    }

    #[test]
    fn allowed_realms_must_be_organization_names() {
        let err = Config::parse("[security]\nallowed_realms = [1]\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("organization names"), "{err}");
    }

    #[test]
    fn an_instance_number_outside_the_total_is_refused() {
        for id in ["0", "4", "\"web\""] {
            let text = format!("[scaling]\ninstance_id = {id}\ntotal_instances = 3\n");
            let err = Config::parse(&text, KNOWN).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert!(err.problems[0].contains("1 to 3"), "{err}");
        }
    }

    /// Regression (issue 16): three instances configured alike but for
    /// `instance_id` all bound 127.0.0.1:9187, so two of them could not
    /// start on one host.
    #[test]
    fn instances_alike_but_for_their_id_get_a_port_each_unless_bind_is_set() {
        let bind = |id: u32, extra: &str| {
            let text = format!("{extra}[scaling]\ninstance_id = {id}\ntotal_instances = 3\n");
            Config::parse(&text, KNOWN)
                .unwrap()
                .http
                .bind
                .map(|a| a.to_string())
        };
        let ports: Vec<_> = (1..=3).map(|id| bind(id, "")).collect();
        assert_eq!(
            ports,
            ["127.0.0.1:9187", "127.0.0.1:9188", "127.0.0.1:9189"].map(|s| Some(s.to_owned()))
        );
        let set = "[http]\nbind = \"0.0.0.0:9300\"\n";
        assert_eq!(bind(2, set).as_deref(), Some("0.0.0.0:9300"));
        assert_eq!(bind(2, "[http]\nbind = \"off\"\n"), None);
        let one = Config::parse("", KNOWN)
            .unwrap()
            .http
            .bind
            .map(|a| a.to_string());
        assert_eq!(one.as_deref(), Some("127.0.0.1:9187"));
    }

    #[test]
    fn filters_of_an_unknown_listener_are_still_refused() {
        let err =
            Config::parse("[listeners.spam_filter]\nchannels = [\"x\"]\n", KNOWN).unwrap_err();
        assert!(err.problems[0].contains("has no `kind`"), "{err}");
    }

    #[test]
    fn every_known_key_of_every_section_is_read_by_its_section() {
        for section in SECTIONS {
            for key in section.keys.iter().filter(|k| !k.starts_with('[')) {
                let text = format!("[{}]\n{key} = true\n", section.name);
                let problems = Config::parse(&text, KNOWN).err().map(|e| e.problems);
                for p in problems.unwrap_or_default() {
                    assert!(!p.contains("unknown key"), "{}.{key}: {p}", section.name);
                }
            }
        }
        for key in crate::config::listener_filter::KNOWN {
            let text = format!("[listeners.message_logger]\n{key} = true\n");
            let err = Config::parse(&text, KNOWN).unwrap_err();
            assert!(!err.problems[0].contains("unknown key"), "{err}");
        }
    }

    #[test]
    fn the_unknown_section_message_lists_every_section() {
        let err = Config::parse("[stats]\n", KNOWN).unwrap_err();
        assert_eq!(
            err.problems,
            vec!["unknown section [stats] (known: zulip, database, listeners, performance, logging, telemetry, network, http, scaling, distributed, statistics, queue, error_handling, filters, security, data_protection)"]
        );
    }

    #[test]
    fn an_unknown_key_names_the_keys_of_its_section() {
        let err = Config::parse("[network]\ntimeout = 3\n", KNOWN).unwrap_err();
        assert_eq!(
            err.problems,
            vec!["unknown key `network.timeout` (known: connection_timeout, read_timeout, max_retries, backoff_cap, ca_bundle)"]
        );
    }

    #[test]
    fn durations_may_be_written_as_text_wherever_seconds_are_read() {
        let cfg = Config::parse(
            r#"
            [zulip]
            queue_lifespan_secs = "2d"
            [performance]
            handler_timeout = "1m 30s"
            [network]
            connection_timeout = "500ms"
            read_timeout = 45
            backoff_cap = "2m"
            [statistics]
            aggregation_interval = "10m"
            [queue]
            retry_delay = "5s"
            [error_handling]
            circuit_breaker_cooldown = "1h"
            [filters]
            max_event_age = "7d"
            "#,
            KNOWN,
        )
        .unwrap();
        assert_eq!(cfg.zulip.queue_lifespan_secs, 172_800);
        assert_eq!(cfg.performance.handler_timeout, Duration::from_secs(90));
        assert_eq!(cfg.network.connection_timeout, Duration::from_millis(500));
        assert_eq!(cfg.network.read_timeout, Duration::from_secs(45));
        assert_eq!(cfg.network.backoff_cap, Duration::from_secs(120));
        assert_eq!(
            cfg.statistics.aggregation_interval,
            Duration::from_secs(600)
        );
        assert_eq!(cfg.queue.retry_delay, Duration::from_secs(5));
        assert_eq!(
            cfg.error_handling.circuit_breaker_cooldown,
            Duration::from_secs(3_600)
        );
        assert_eq!(
            cfg.filters.max_event_age,
            Some(Duration::from_secs(604_800))
        );
    }

    #[test]
    fn text_durations_out_of_range_or_unreadable_are_each_reported() {
        let err = Config::parse(
            r#"
            [zulip]
            queue_lifespan_secs = "8d"
            [performance]
            handler_timeout = "0s"
            [network]
            read_timeout = "2years"
            backoff_cap = "soon"
            [statistics]
            aggregation_interval = "1500ms"
            [queue]
            retry_delay = "25h"
            "#,
            KNOWN,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(
            text.contains("`zulip.queue_lifespan_secs` is at most 604800"),
            "{text}"
        );
        assert!(
            text.contains("`performance.handler_timeout` must be a number of seconds above 0 and at most a year, got 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "`network.read_timeout` must be a number of seconds above 0 and at most a year"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "`network.backoff_cap` must be a number of seconds or a duration such as"
            ),
            "{text}"
        );
        assert!(
            text.contains("`statistics.aggregation_interval` must be a whole number of seconds"),
            "{text}"
        );
    }
}
