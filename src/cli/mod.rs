//! The command line: one function per subcommand, and the exit codes.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | any other failure (Zulip rejected a request, a file could not be read, …) |
//! | 2 | bad command line or configuration |
//! | 3 | Zulip refused the credentials (401/403), or they are missing |
//! | 4 | the database is unreachable, failed, or needs `migrate` |

mod actor;
mod admin;
pub mod stats;

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use chrono::{Duration as ChronoDuration, Utc};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppError, RunOptions, RunReport};
use crate::config::Config;
use crate::listeners::Registry;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: any other failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad command line or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: Zulip refused the credentials, or they are missing.
pub const EXIT_AUTH: u8 = 3;
/// Exit code: database failure.
pub const EXIT_DATABASE: u8 = 4;

/// Turns a Zulip organization's event stream into reliable work.
#[derive(Debug, Parser)]
#[command(name = "zulip-event-listeners", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Without it, defaults apply: a SQLite file
    /// in the current directory and the two default listeners.
    #[arg(long, short, global = true, env = "ZULIP_EVENT_LISTENERS_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register (or resume) the event queue and process events until stopped.
    Run(RunArgs),
    /// List the listeners: name, enabled or disabled (and why), event types, failures in the last hour, last success, description.
    List,
    /// Apply pending database migrations and print what was applied.
    Migrate,
    /// Delete event log and inbox rows older than N days.
    Cleanup {
        /// Age in days.
        #[arg(long)]
        days: u32,
    },
    /// Validate the configuration file and print every problem at once.
    CheckConfig,
    /// Recompute listener statistics buckets from the event log (idempotent; for cron).
    Aggregate {
        /// Only buckets from this long ago on, e.g. 24h or 7d (default: all).
        #[arg(long, value_name = "AGE", value_parser = crate::cli::stats::parse_age)]
        since: Option<std::time::Duration>,
    },
    /// Per-listener statistics: runs, success rate, p50/p95 duration, errors, volume.
    Stats {
        /// Only this listener.
        #[arg(long, value_name = "NAME")]
        listener: Option<String>,
        /// How far back, e.g. 30m, 24h or 7d.
        #[arg(long, value_name = "AGE", default_value = "24h", value_parser = crate::cli::stats::parse_age)]
        since: std::time::Duration,
    },
    /// Switch a listener back on after `disable`.
    Enable {
        /// The listener.
        name: String,
    },
    /// Switch a listener off in the database (who and why are recorded); the daemon skips it.
    Disable {
        /// The listener.
        name: String,
        /// Why, shown by `list`.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a listener's dead letters (or one logged event) again and record the outcomes.
    Replay(crate::cli::admin::ReplayArgs),
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Receive events and print which listeners would run; store nothing,
    /// run nothing, and delete the queue on exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only these listeners (comma-separated), e.g. to split them across instances.
    #[arg(long, value_delimiter = ',')]
    pub listeners: Option<Vec<String>>,
    /// Read events from a JSON-lines file (one event per line, as GET /events returns them) instead of Zulip.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Delete the Zulip event queue on exit (by default it is kept, so a restart resumes it).
    #[arg(long)]
    pub release_queue: bool,
    /// On the very first start, also fetch messages newer than this message id.
    #[arg(long, value_name = "MESSAGE_ID")]
    pub backfill_since: Option<i64>,
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl Failure {
    fn new(code: u8, error: anyhow::Error) -> Failure {
        Failure { code, error }
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let code = match &e {
            AppError::Auth(_) | AppError::Credentials(_) => EXIT_AUTH,
            AppError::Store(_) => EXIT_DATABASE,
            AppError::Listeners(_) => EXIT_CONFIG,
            AppError::Zulip(_) | AppError::File(_) | AppError::Http(..) | AppError::Pipeline(_) => {
                EXIT_FAILURE
            }
        };
        Failure::new(code, anyhow::Error::new(e))
    }
}

/// Loads the configuration named on the command line, or the defaults.
///
/// # Errors
///
/// A [`Failure`] with [`EXIT_CONFIG`] listing every problem.
pub fn load_config(cli: &Cli, registry: &Registry) -> Result<Config, Failure> {
    match &cli.config {
        Some(path) => Config::load(path, &registry.names())
            .map_err(|e| Failure::new(EXIT_CONFIG, anyhow::Error::new(e))),
        None => Ok(Config::default()),
    }
}

/// Runs one subcommand.
///
/// # Errors
///
/// A [`Failure`] carrying the exit code.
pub async fn run(cli: Cli, config: Config, registry: Registry) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => cmd_run(args, &config, &registry).await,
        Command::List => cmd_list(&config, &registry).await,
        Command::Migrate => cmd_migrate(&config).await,
        Command::Cleanup { days } => cmd_cleanup(&config, days).await,
        Command::CheckConfig => cmd_check_config(&cli.config, &config),
        Command::Aggregate { since } => cmd_aggregate(&config, since).await,
        Command::Stats { listener, since } => cmd_stats(&config, listener.as_deref(), since).await,
        Command::Enable { name } => {
            crate::cli::admin::cmd_set_enabled(&config, &registry, &name, true, None).await
        }
        Command::Disable { name, reason } => {
            crate::cli::admin::cmd_set_enabled(&config, &registry, &name, false, reason.as_deref())
                .await
        }
        Command::Replay(args) => crate::cli::admin::cmd_replay(&config, &registry, &args).await,
    }
}

async fn cmd_run(args: RunArgs, config: &Config, registry: &Registry) -> Result<(), Failure> {
    let opts = RunOptions {
        dry_run: args.dry_run,
        listeners: args.listeners,
        events_file: args.events,
        release_queue: args.release_queue,
        backfill_since: args.backfill_since,
    };
    let token = CancellationToken::new();
    crate::shutdown::cancel_on_signal(token.clone());
    let report = app::run(config, registry, &opts, token).await?;
    print_report(&report, &opts);
    Ok(())
}

fn print_report(report: &RunReport, opts: &RunOptions) {
    if opts.dry_run {
        println!(
            "Dry run: {} event(s) described; nothing was stored.",
            report.stored
        );
        if let Some(f) = &report.file {
            print_malformed(f);
        }
        return;
    }
    let Some(f) = &report.file else {
        eprintln!(
            "Stopped. This run stored {} event(s) ({} duplicate(s) skipped) and recorded {} listener run(s), {} failed.",
            report.stored, report.duplicates, report.recorder.recorded, report.recorder.failures
        );
        return;
    };
    println!(
        "Read {} line(s): stored {} new event(s), {} already stored, {} heartbeat(s) skipped, {} malformed line(s) skipped.",
        f.lines,
        f.stored,
        f.duplicates,
        f.heartbeats,
        f.malformed.len()
    );
    print_malformed(f);
    println!(
        "Recorded {} listener run(s) ({} failed){}.",
        report.recorder.recorded,
        report.recorder.failures,
        if report.recovered > 0 {
            format!(
                ", after re-dispatching {} unfinished event(s)",
                report.recovered
            )
        } else {
            String::new()
        }
    );
    if let (Some(s), Some(location)) = (&report.summary, &report.location) {
        println!("Database {location} now holds:");
        println!("  event_listeners_inbox          {:>8} event(s)", s.inbox);
        for (t, n) in &s.by_type {
            println!("    {t:<28} {n:>8}");
        }
        println!(
            "  event_listeners_eventlog       {:>8} run(s), {} failed",
            s.eventlog, s.failures
        );
        println!(
            "  event_listeners_messagelog     {:>8} message(s)",
            s.messages
        );
        println!("  event_listeners_useractivity   {:>8} user(s)", s.users);
    }
}

fn print_malformed(f: &crate::intake::FileReport) {
    for (line, problem) in &f.malformed {
        println!("  line {line}: {problem}");
    }
}

async fn cmd_list(config: &Config, registry: &Registry) -> Result<(), Failure> {
    crate::cli::admin::cmd_list(config, registry).await
}

async fn cmd_migrate(config: &Config) -> Result<(), Failure> {
    let opts = crate::store::StoreOptions {
        max_connections: 2,
        ..app::store_options(config)
    };
    let url = crate::store::DatabaseUrl::parse(&config.database.url).map_err(|e| {
        Failure::new(
            EXIT_DATABASE,
            anyhow::Error::new(crate::store::StoreError::from(e)),
        )
    })?;
    let store = crate::store::open(&url, &opts)
        .await
        .map_err(|e| Failure::new(EXIT_DATABASE, anyhow::Error::new(e)))?;
    let applied = store
        .migrate()
        .await
        .map_err(|e| Failure::new(EXIT_DATABASE, anyhow::Error::new(e)))?;
    if applied.is_empty() {
        println!("{} is up to date; no migration applied.", store.location());
    } else {
        for m in &applied {
            println!("Applied {m}");
        }
        println!(
            "{}: {} migration(s) applied.",
            store.location(),
            applied.len()
        );
    }
    Ok(())
}

async fn cmd_cleanup(config: &Config, days: u32) -> Result<(), Failure> {
    let store = app::open_store(config, false)
        .await
        .map_err(|e| Failure::new(EXIT_DATABASE, anyhow::Error::new(e)))?;
    let before = Utc::now() - ChronoDuration::days(i64::from(days));
    let counts = store
        .cleanup(before)
        .await
        .map_err(|e| Failure::new(EXIT_DATABASE, anyhow::Error::new(e)))?;
    println!(
        "Deleted {} event log row(s) and {} inbox row(s) older than {days} day(s) (before {}).",
        counts.eventlog,
        counts.inbox,
        before.format("%Y-%m-%d %H:%M:%S UTC")
    );
    crate::cli::admin::audit_cleanup(store.as_ref(), days, &counts).await;
    Ok(())
}

async fn cmd_aggregate(config: &Config, since: Option<std::time::Duration>) -> Result<(), Failure> {
    let db = |e| Failure::new(EXIT_DATABASE, anyhow::Error::new(e));
    let store = app::open_store(config, false).await.map_err(db)?;
    let since = match since {
        Some(age) => Some(
            Utc::now()
                - ChronoDuration::from_std(age).map_err(|e| Failure::new(EXIT_CONFIG, e.into()))?,
        ),
        None => None,
    };
    let interval = config.statistics.aggregation_interval;
    let report = store.aggregate(interval, since).await.map_err(db)?;
    println!(
        "Wrote {} listener stats bucket(s) of {} s from {} logged run(s){}.",
        report.written,
        interval.as_secs(),
        report.runs,
        since.map_or_else(String::new, |s| format!(
            " since {}",
            s.format("%Y-%m-%d %H:%M:%S UTC")
        ))
    );
    if report.kept() > 0 {
        println!(
            "Left {} existing bucket(s) unchanged: they hold the oldest event log rows, and older runs of theirs may have been deleted from the event log.",
            report.kept()
        );
    }
    Ok(())
}

async fn cmd_stats(
    config: &Config,
    listener: Option<&str>,
    since: std::time::Duration,
) -> Result<(), Failure> {
    let db = |e| Failure::new(EXIT_DATABASE, anyhow::Error::new(e));
    let store = app::open_store(config, false).await.map_err(db)?;
    let now = Utc::now();
    let from =
        now - ChronoDuration::from_std(since).map_err(|e| Failure::new(EXIT_CONFIG, e.into()))?;
    let summaries = store.listener_stats(listener, from).await.map_err(db)?;
    if summaries.is_empty() {
        match listener {
            Some(name) => println!(
                "No runs of listener `{name}` since {}.",
                from.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => println!(
                "No listener runs since {}.",
                from.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        }
        return Ok(());
    }
    print!(
        "{}",
        crate::cli::stats::render(
            &summaries,
            from,
            now,
            config.statistics.aggregation_interval
        )
    );
    Ok(())
}

fn cmd_check_config(path: &Option<PathBuf>, config: &Config) -> Result<(), Failure> {
    // Loading already validated the file; reaching here means it is valid.
    let path = path
        .as_ref()
        .ok_or_else(|| anyhow!("no configuration file given (use --config PATH)"))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let path = path
        .canonicalize()
        .with_context(|| path.display().to_string())
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    println!(
        "{} is valid: database {}, listeners {}.",
        path.display(),
        redact_url(&config.database.url),
        config.listeners.enabled.join(", ")
    );
    Ok(())
}

/// A database URL without its password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_database_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
