//! `list`: every registered listener with its configuration and, when the
//! database exists, its run state (disabled by whom, failures in the last
//! hour, last success), plus the open circuits of a running daemon.

use std::fmt::Write as _;

use chrono::{Duration as ChronoDuration, Utc};

use crate::app;
use crate::cli::actor::disabled;
use crate::cli::age::format_time;
use crate::cli::exit::Failure;
use crate::config::{Config, ListenerKind};
use crate::listeners::Registry;
use crate::store::{LeaderRow, ListenerOverview, ListenerState, StoreOptions};

/// The window of `list`'s failure count.
const LIST_WINDOW_HOURS: i64 = 1;

/// What `list` knows from the database.
#[derive(Debug, Default)]
pub(super) struct RunState {
    /// Listener states set with `enable` / `disable`.
    pub states: Vec<ListenerState>,
    /// Failures in the window and last success, per listener.
    pub overview: Vec<ListenerOverview>,
    /// The distributed ingest's lease row, with a `[distributed]` section.
    pub leader: Option<LeaderRow>,
    /// The live workers, sorted, with a `[distributed]` section.
    pub workers: Vec<String>,
}

/// `list`: every registered listener with its configuration and, when the
/// database exists, its run state. Never creates a database.
///
/// # Errors
///
/// None in practice: database problems become a note under the table.
pub(crate) async fn cmd_list(config: &Config, registry: &Registry) -> Result<(), Failure> {
    let state = read_run_state(config).await;
    print!("{}", render_list(config, registry, state.as_ref().ok()));
    if let Ok(RunState {
        leader, workers, ..
    }) = &state
    {
        if config.distributed.amqp_url.is_some() {
            println!();
            println!("{}", distributed_line(config, leader.as_ref()));
            print!("{}", workers_lines(config, workers));
        }
    }
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
    let url = &config.database.url;
    if let Some(path) = url.sqlite_path() {
        if !path.exists() {
            return Err(format!("there is no database at {} yet", path.display()));
        }
    }
    let opts = StoreOptions {
        max_connections: 1,
        ..app::store_options(config)
    };
    let url = config
        .database
        .connect_url(config.file_permissions)
        .map_err(|e| e.to_string())?;
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
    let leader = if config.distributed.amqp_url.is_some() && store.backend() == "postgres" {
        store
            .leader_row(&config.scaling.instance_id)
            .await
            .map_err(|e| e.to_string())?
    } else {
        None
    };
    let workers = if config.distributed.amqp_url.is_some() && store.backend() == "postgres" {
        store
            .live_workers(
                &config.scaling.instance_id,
                config.distributed.lease_seconds,
            )
            .await
            .map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    Ok(RunState {
        leader,
        workers,
        states: store.listener_states().await.map_err(|e| e.to_string())?,
        overview: store
            .listener_overview(since)
            .await
            .map_err(|e| e.to_string())?,
    })
}

/// The distributed ingest's lead, as `list` says it.
fn distributed_line(config: &Config, leader: Option<&LeaderRow>) -> String {
    let d = &config.distributed;
    match leader {
        None => format!(
            "Distributed ({} partitions, prefix `{}`): no ingest has led yet.",
            d.partitions, d.prefix
        ),
        Some(l) => format!(
            "Distributed ({} partitions, prefix `{}`): role ingest led by {} (epoch {}, lease renewed {}); outbox depth {} (published through inbox id {}).",
            d.partitions,
            d.prefix,
            l.holder.as_deref().unwrap_or("nobody"),
            l.epoch,
            l.renewed_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339()),
            l.outbox_depth,
            l.published_through
        ),
    }
}

/// The live workers and the partitions each consumes (the split every
/// worker computes from the same sorted list, `distributed::membership`).
fn workers_lines(config: &Config, workers: &[String]) -> String {
    let partitions = config.distributed.partitions;
    if workers.is_empty() {
        return format!("No worker is alive: the {partitions} partitions wait for consumers.\n");
    }
    let mut out = format!("{} worker(s) alive:\n", workers.len());
    for w in workers {
        let share = crate::distributed::partition_share(workers, w, partitions);
        let _ = writeln!(out, "  {w} consumes partitions {share:?}");
    }
    out
}

/// The `FAILURES` and `LAST SUCCESS` cells of `name`: dashes without a
/// database, `0` and `never` without runs.
fn run_columns(state: Option<&RunState>, name: &str) -> (String, String) {
    let overview = state.map(|s| s.overview.iter().find(|o| o.listener == name));
    match overview {
        None => ("-".to_owned(), "-".to_owned()),
        Some(None) => ("0".to_owned(), "never".to_owned()),
        Some(Some(o)) => (
            o.failures.to_string(),
            o.last_success
                .map_or_else(|| "never".to_owned(), format_time),
        ),
    }
}

/// One row of `list`: a listener instance.
struct Row {
    name: String,
    kind: String,
    event_types: String,
    /// The built-in's description, or where a configured kind sends its work.
    about: String,
}

/// The instances `list` shows: every registered listener not reconfigured
/// under its own name, then every `[listeners.NAME]` table, by name.
fn rows(config: &Config, registry: &Registry) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for l in registry.all() {
        if config.listeners.instances.contains_key(l.name()) {
            continue;
        }
        rows.push(Row {
            name: l.name().to_owned(),
            kind: l.name().to_owned(),
            event_types: l.event_types().join(","),
            about: l.description().to_owned(),
        });
    }
    for (name, i) in &config.listeners.instances {
        let declared = match &i.kind {
            ListenerKind::Registered(k) => registry
                .get(k)
                .map(|l| l.event_types().join(","))
                .unwrap_or_default(),
            ListenerKind::Responder(_) => "message".to_owned(),
            ListenerKind::Webhook(_) | ListenerKind::Exec(_) => "*".to_owned(),
        };
        let about = match &i.kind {
            ListenerKind::Registered(k) => registry
                .get(k)
                .map(|l| l.description().to_owned())
                .unwrap_or_default(),
            other => other.target(),
        };
        rows.push(Row {
            name: name.clone(),
            kind: i.kind.name().to_owned(),
            event_types: i
                .filter
                .event_types
                .as_ref()
                .map_or(declared, |t| t.join(",")),
            about,
        });
    }
    rows
}

/// The `list` table. `ENABLED` is `yes` when the configuration enables the
/// instance and `disable` has not switched it off, `disabled` when it has
/// (with who, when and why on the next line), `no` otherwise. The last
/// column is a built-in's description, or a configured kind's target
/// (a webhook's URL without credentials or query, an exec's command).
pub(super) fn render_list(
    config: &Config,
    registry: &Registry,
    state: Option<&RunState>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<22} {:<8} {:<28} {:<12} {:<23} TARGET / DESCRIPTION",
        "NAME",
        "KIND",
        "ENABLED",
        "EVENT TYPES",
        format!("FAILURES {LIST_WINDOW_HOURS}H"),
        "LAST SUCCESS"
    );
    for row in rows(config, registry) {
        let name = row.name.as_str();
        let configured = config.listeners.enabled.iter().any(|n| n == name);
        let off = state.and_then(|s| disabled(&s.states, name));
        let enabled = match (off, configured) {
            (Some(_), _) => "disabled",
            (None, true) => "yes",
            (None, false) => "no",
        };
        let (failures, last_success) = run_columns(state, name);
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<8} {:<28} {:<12} {:<23} {}",
            name, row.kind, enabled, row.event_types, failures, last_success, row.about
        );
        for line in fallback_lines(config, name) {
            let _ = writeln!(out, "    {line}");
        }
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
                format_time(s.changed_at)
            );
        }
    }
    out
}

/// `fallback: OTHER` when `name` has a fallback, and `fallback of: A, B
/// (runs only as a fallback)` when it is one.
fn fallback_lines(config: &Config, name: &str) -> Vec<String> {
    let instances = &config.listeners.instances;
    let mut lines = Vec::new();
    if let Some(to) = instances.get(name).and_then(|i| i.fallback.as_deref()) {
        lines.push(format!("fallback: {to}"));
    }
    let of: Vec<&str> = instances
        .values()
        .filter(|i| i.fallback.as_deref() == Some(name))
        .map(|i| i.name.as_str())
        .collect();
    if !of.is_empty() {
        lines.push(format!(
            "fallback of: {} (runs only as a fallback)",
            of.join(", ")
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn the_workers_lines_split_the_partitions_as_the_workers_do() {
        let mut config = Config::default();
        config.distributed.partitions = 5;
        assert!(workers_lines(&config, &[]).starts_with("No worker is alive: the 5 partitions"));
        let text = workers_lines(&config, &["a".to_owned(), "b".to_owned()]);
        assert_eq!(
            text,
            "2 worker(s) alive:\n  a consumes partitions [0, 2, 4]\n  b consumes partitions [1, 3]\n"
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
            leader: None,
            workers: Vec::new(),
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
    fn list_shows_configured_instances_with_their_kind_and_a_redacted_target() {
        let config = Config::parse(
            r#"
[listeners]
enabled = ["hook"]
[listeners.hook]
kind = "webhook"
url = "https://user:pw@hooks.example.com/in?token=s3cret"
[listeners.script]
kind = "exec"
command = ["python3", "h.py"]
event_types = ["reaction"]
"#,
            &Registry::builtin().names(),
        )
        .unwrap();
        let text = render_list(&config, &Registry::builtin(), None);
        let hook = text.lines().find(|l| l.starts_with("hook ")).unwrap();
        assert!(
            hook.contains(" webhook ") && hook.contains(" yes "),
            "{hook}"
        );
        assert!(hook.contains("https://hooks.example.com/in?"), "{hook}");
        assert!(!text.contains("s3cret") && !text.contains("pw@"), "{text}");
        let script = text.lines().find(|l| l.starts_with("script ")).unwrap();
        assert!(
            script.contains(" exec ") && script.contains(" no "),
            "{script}"
        );
        assert!(script.contains(" reaction ") && script.contains("python3 h.py (per_event)"));
        assert!(text.lines().any(|l| l.starts_with("message_logger ")));
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
}
