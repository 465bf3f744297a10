//! The operator subcommands: `enable` and `disable` (listener state in the
//! database, with who and why), `replay` (dead letters run again in this
//! process), and `list` with each listener's run state; plus their text.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use clap::Args;

use crate::app;
use crate::cli::actor::{actor, disabled};
use crate::cli::{Failure, EXIT_CONFIG, EXIT_DATABASE, EXIT_FAILURE};
use crate::config::Config;
use crate::dispatch::replay::{self, ReplayOutcome, ReplaySettings};
use crate::listeners::{Listener, Registry, RegistryError};
use crate::store::{
    AuditAction, CleanupCounts, DatabaseUrl, ListenerOverview, ListenerState, Store, StoreError,
    StoreOptions,
};

/// The window of `list`'s failure count.
const LIST_WINDOW_HOURS: i64 = 1;

/// `replay` options.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The listener whose dead letters to run again.
    #[arg(long, value_name = "NAME")]
    pub listener: String,
    /// Only dead letters from this long ago (e.g. 24h, 7d) or this RFC 3339 time on.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only this inbox event; without a dead letter, any event the listener
    /// has a logged run of.
    #[arg(long = "event", value_name = "INBOX_ID")]
    pub event: Option<i64>,
}

/// A `--since` value that is neither an age nor a time.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{0}` is neither an age such as 24h or 7d nor an RFC 3339 time such as 2026-11-27T09:00:00Z"
)]
pub struct SinceError(String);

/// Parses `--since`: an age (`90s`, `30m`, `24h`, `7d`, `2w`) back from now,
/// or an RFC 3339 timestamp.
///
/// # Errors
///
/// [`SinceError`] when it is neither.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, SinceError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    crate::cli::stats::parse_age(text)
        .ok()
        .and_then(|age| ChronoDuration::from_std(age).ok())
        .map(|age| Utc::now() - age)
        .ok_or_else(|| SinceError(text.to_owned()))
}

fn db(e: StoreError) -> Failure {
    Failure {
        code: EXIT_DATABASE,
        error: anyhow::Error::new(e),
    }
}

/// The registered listener `name`, or exit code 2 naming those available.
fn known<'a>(registry: &'a Registry, name: &str) -> Result<&'a Arc<dyn Listener>, Failure> {
    registry.get(name).ok_or_else(|| Failure {
        code: EXIT_CONFIG,
        error: anyhow::Error::new(RegistryError::Unknown {
            name: name.to_owned(),
            available: registry.names().join(", "),
        }),
    })
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `enable NAME` / `disable NAME [--reason TEXT]`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 for an unknown listener, 4 when the database fails.
pub async fn cmd_set_enabled(
    config: &Config,
    registry: &Registry,
    name: &str,
    enabled: bool,
    reason: Option<&str>,
) -> Result<(), Failure> {
    known(registry, name)?;
    let store = app::open_store(config, false).await.map_err(db)?;
    let who = actor();
    store
        .set_listener_enabled(name, enabled, reason, &who)
        .await
        .map_err(db)?;
    let why = reason.map_or_else(String::new, |r| format!(" ({r})"));
    if enabled {
        println!("Enabled `{name}` as {who}{why}.");
    } else {
        println!("Disabled `{name}` as {who}{why}.");
    }
    println!("The daemon applies it at its next start or listener state refresh.");
    Ok(())
}

/// `replay --listener NAME [--since TIME] [--event INBOX_ID]`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 for an unknown listener, 4 when the database
/// fails, 1 when `--event` finds nothing or a replay fails again.
pub async fn cmd_replay(
    config: &Config,
    registry: &Registry,
    args: &ReplayArgs,
) -> Result<(), Failure> {
    let listener = known(registry, &args.listener)?.clone();
    let store = app::open_store(config, false).await.map_err(db)?;
    let items = replay::select(store.as_ref(), &args.listener, args.since, args.event)
        .await
        .map_err(db)?;
    let filters = describe_filters(args);
    if items.is_empty() {
        if let Some(id) = args.event {
            return Err(Failure {
                code: EXIT_FAILURE,
                error: anyhow::anyhow!(
                    "inbox event {id} has no pending dead letter and no logged run of `{}`{}; nothing to replay",
                    args.listener,
                    args.since.map_or_else(String::new, |t| format!(" since {}", time(t)))
                ),
            });
        }
        println!("No pending dead letters of `{}`{filters}.", args.listener);
        return Ok(());
    }
    let settings = ReplaySettings {
        instance: config.scaling.instance_id.clone(),
        timeout: config.performance.handler_timeout,
    };
    let mut outcomes = Vec::with_capacity(items.len());
    for item in &items {
        let outcome = replay::replay_one(store.as_ref(), &listener, item, &settings)
            .await
            .map_err(db)?;
        println!("{}", replay_line(&outcome));
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().filter(|o| !o.success).count();
    let total = format!(
        "Replayed {} event(s) through `{}`{filters}: {} succeeded, {failed} failed{}.",
        outcomes.len(),
        args.listener,
        outcomes.len() - failed,
        if failed > 0 {
            " (dead letters again)"
        } else {
            ""
        }
    );
    println!("{total}");
    store
        .audit(&actor(), AuditAction::Replay, Some(&args.listener), &total)
        .await
        .map_err(db)?;
    if failed > 0 {
        return Err(Failure {
            code: EXIT_FAILURE,
            error: anyhow::anyhow!(
                "{failed} of {} replay(s) failed; they are pending dead letters again",
                outcomes.len()
            ),
        });
    }
    Ok(())
}

fn describe_filters(args: &ReplayArgs) -> String {
    let mut out = String::new();
    if let Some(id) = args.event {
        let _ = write!(out, " for inbox event {id}");
    }
    if let Some(since) = args.since {
        let _ = write!(out, " since {}", time(since));
    }
    out
}

/// One line per replayed event.
pub fn replay_line(o: &ReplayOutcome) -> String {
    let source = match o.dead_letters.as_slice() {
        [] => "logged run".to_owned(),
        [one] => format!("dead letter {one}"),
        many => format!(
            "dead letters {}",
            many.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let head = format!("inbox {} ({}, {source})", o.inbox_id, o.event_type);
    if o.success {
        format!(
            "{head}: succeeded on attempt {} in {:.1} ms",
            o.attempts,
            o.duration.as_secs_f64() * 1000.0
        )
    } else {
        format!(
            "{head}: failed on attempt {}: {}",
            o.attempts,
            o.error.as_deref().unwrap_or("(no error message)")
        )
    }
}

/// Writes the audit row of a `cleanup`; a failure is only logged, since
/// the cleanup itself is done.
pub async fn audit_cleanup(store: &dyn Store, days: u32, counts: &CleanupCounts) {
    let detail = format!(
        "older than {days} day(s): {} event log row(s), {} inbox row(s)",
        counts.eventlog, counts.inbox
    );
    if let Err(e) = store
        .audit(&actor(), AuditAction::Cleanup, None, &detail)
        .await
    {
        tracing::warn!(error = %e, "Cannot write the audit row of the cleanup");
    }
}

/// What `list` knows from the database.
#[derive(Debug, Default)]
pub struct RunState {
    /// Listener states set with `enable` / `disable`.
    pub states: Vec<ListenerState>,
    /// Failures in the window and last success, per listener.
    pub overview: Vec<ListenerOverview>,
}

/// `list`: every registered listener with its configuration and, when the
/// database exists, its run state. Never creates a database.
///
/// # Errors
///
/// None in practice: database problems become a note under the table.
pub async fn cmd_list(config: &Config, registry: &Registry) -> Result<(), Failure> {
    let state = read_run_state(config).await;
    print!("{}", render_list(config, registry, state.as_ref().ok()));
    if let Err(why) = &state {
        println!();
        println!("Note: run state (disabled listeners, failures, last success) not shown: {why}.");
    }
    if let Some(open) = open_circuits_of_running_daemon(config).await {
        for c in &open {
            println!(
                "Circuit of `{}` is open until {} (from the running daemon).",
                c.listener, c.until
            );
        }
    }
    Ok(())
}

/// Circuit breakers live in the running daemon: ask its `/health`, if it
/// answers within a second.
async fn open_circuits_of_running_daemon(
    config: &Config,
) -> Option<Vec<crate::http::health::OpenCircuit>> {
    #[derive(serde::Deserialize)]
    struct Partial {
        #[serde(default)]
        open_circuits: Vec<crate::http::health::OpenCircuit>,
    }
    let addr = config.http.bind?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .ok()?;
    let health: Partial = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(health.open_circuits)
}

/// Reads the run state without creating or migrating anything; `Err` says
/// why it is not available.
async fn read_run_state(config: &Config) -> Result<RunState, String> {
    let url =
        DatabaseUrl::parse(&config.database.url).map_err(|e| format!("bad database URL: {e}"))?;
    if let Some(path) = url.sqlite_path() {
        if !path.exists() {
            return Err(format!("there is no database at {} yet", path.display()));
        }
    }
    let opts = StoreOptions {
        max_connections: 1,
        ..app::store_options(config)
    };
    let store = crate::store::open(&url, &opts)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let pending = store
        .pending_migrations()
        .await
        .map_err(|e| e.to_string())?;
    if !pending.is_empty() {
        return Err(format!(
            "the database has {} pending migration(s); `migrate` (or, with SQLite, `run`) applies them",
            pending.len()
        ));
    }
    let since = Utc::now() - ChronoDuration::hours(LIST_WINDOW_HOURS);
    Ok(RunState {
        states: store.listener_states().await.map_err(|e| e.to_string())?,
        overview: store
            .listener_overview(since)
            .await
            .map_err(|e| e.to_string())?,
    })
}

/// The `list` table. `ENABLED` is `yes` when the configuration enables the
/// listener and `disable` has not switched it off, `disabled` when it has
/// (with who, when and why on the next line), `no` otherwise.
pub fn render_list(config: &Config, registry: &Registry, state: Option<&RunState>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<8} {:<36} {:<12} {:<23} DESCRIPTION",
        "NAME",
        "ENABLED",
        "EVENT TYPES",
        format!("FAILURES {LIST_WINDOW_HOURS}H"),
        "LAST SUCCESS"
    );
    for l in registry.all() {
        let configured = config.listeners.enabled.iter().any(|n| n == l.name());
        let off = state.and_then(|s| disabled(&s.states, l.name()));
        let enabled = match (off, configured) {
            (Some(_), _) => "disabled",
            (None, true) => "yes",
            (None, false) => "no",
        };
        let overview = state.map(|s| s.overview.iter().find(|o| o.listener == l.name()));
        let (failures, last_success) = match overview {
            None => ("-".to_owned(), "-".to_owned()),
            Some(None) => ("0".to_owned(), "never".to_owned()),
            Some(Some(o)) => (
                o.failures.to_string(),
                o.last_success.map_or_else(|| "never".to_owned(), time),
            ),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<36} {:<12} {:<23} {}",
            l.name(),
            enabled,
            l.event_types().join(","),
            failures,
            last_success,
            l.description()
        );
        if let Some(s) = off {
            let reason = s
                .reason
                .as_deref()
                .filter(|r| !r.is_empty())
                .map_or_else(String::new, |r| format!(": {r}"));
            let _ = writeln!(
                out,
                "    disabled by {} at {}{reason}",
                s.changed_by,
                time(s.changed_at)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn since_accepts_ages_and_rfc3339_times() {
        let t = parse_since("2026-11-27T09:00:00+01:00").unwrap();
        assert_eq!(t, at(1_795_766_400));
        let day_ago = parse_since("24h").unwrap();
        let expected = Utc::now() - ChronoDuration::hours(24);
        assert!((day_ago - expected).num_seconds().abs() <= 2);
        let err = parse_since("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("`yesterday`") && err.contains("RFC 3339"),
            "{err}"
        );
    }

    #[test]
    fn list_shows_a_disabled_listener_with_who_and_why_and_its_run_state() {
        let config = Config::default();
        let registry = Registry::builtin();
        let state = RunState {
            states: vec![ListenerState {
                name: "message_logger".into(),
                enabled: false,
                reason: Some("floods the disk".into()),
                changed_by: "alice@box".into(),
                changed_at: at(1_790_000_000),
            }],
            overview: vec![ListenerOverview {
                listener: "user_activity_tracker".into(),
                failures: 3,
                last_success: Some(at(1_790_000_600)),
            }],
        };
        let text = render_list(&config, &registry, Some(&state));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("FAILURES 1H") && lines[0].contains("LAST SUCCESS"));
        assert!(lines[1].starts_with("message_logger") && lines[1].contains(" disabled "));
        assert!(lines[1].contains(" never "), "{}", lines[1]);
        assert_eq!(
            lines[2],
            "    disabled by alice@box at 2026-09-21 14:13:20 UTC: floods the disk"
        );
        assert!(lines[3].starts_with("user_activity_tracker"));
        assert!(
            lines[3].contains(" yes ") && lines[3].contains(" 3 "),
            "{}",
            lines[3]
        );
        assert!(lines[3].contains("2026-09-21 14:23:20 UTC"), "{}", lines[3]);
    }

    #[test]
    fn list_without_a_database_shows_dashes_for_the_run_state() {
        let text = render_list(&Config::default(), &Registry::builtin(), None);
        let logger = text.lines().nth(1).unwrap();
        assert!(
            logger.contains(" yes ") && logger.contains(" - "),
            "{logger}"
        );
    }

    #[test]
    fn replay_lines_name_the_event_its_dead_letter_and_the_outcome() {
        let mut o = ReplayOutcome {
            inbox_id: 42,
            event_type: "message".into(),
            dead_letters: vec![7],
            attempts: 4,
            success: true,
            error: None,
            duration: Duration::from_micros(3_210),
        };
        assert_eq!(
            replay_line(&o),
            "inbox 42 (message, dead letter 7): succeeded on attempt 4 in 3.2 ms"
        );
        o.success = false;
        o.error = Some("down".into());
        o.dead_letters = vec![];
        assert_eq!(
            replay_line(&o),
            "inbox 42 (message, logged run): failed on attempt 4: down"
        );
    }
}
