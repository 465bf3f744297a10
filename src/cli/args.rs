//! The command line as clap reads it: [`Cli`], its [`Command`]s and their
//! arguments. Ages and times are parsed here, once, by `age.rs`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::cli::age::{parse_age, parse_since};
use crate::config::{FilePermissions, Role};
use crate::store::{DeadLetterStatus, ErrorClass, UnknownWord};

/// Turns a Zulip organization's event stream into reliable work.
#[derive(Debug, Parser)]
#[command(name = "zulip-event-listeners", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Without it, defaults apply: a SQLite file
    /// in the current directory and the two default listeners.
    #[arg(long, short, global = true, env = "ZULIP_EVENT_LISTENERS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Use secret files (the zuliprc, `*_file` secrets, a TLS client key)
    /// even when their group or others may read them or another user owns
    /// them, logging a warning: for containers whose secret mounts cannot
    /// be made private.
    #[arg(long, global = true)]
    pub allow_insecure_permissions: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// What a secret file that breaks the permissions rule gets.
    pub fn file_permissions(&self) -> FilePermissions {
        if self.allow_insecure_permissions {
            FilePermissions::AllowInsecure
        } else {
            FilePermissions::Enforce
        }
    }
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
        /// Only buckets from this long ago on, e.g. 24h, 7d or 1h 30m (default: all).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        since: Option<Duration>,
    },
    /// Per-listener statistics: runs, success rate, p50/p95 duration, errors, volume.
    Stats {
        /// Only this listener.
        #[arg(long, value_name = "NAME")]
        listener: Option<String>,
        /// How far back, e.g. 30m, 24h, 7d or 1h 30m.
        #[arg(long, value_name = "AGE", default_value = "24h", value_parser = parse_age)]
        since: Duration,
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
    Replay(ReplayArgs),
    /// Dead-letter triage: list, show, retry or delete dead letters, by listener, age, class and count.
    Deadletters {
        /// What to do with them.
        #[command(subcommand)]
        action: DeadlettersCommand,
    },
    /// The audit trail, newest last: who enabled, disabled, replayed, cleaned up or migrated what, and how it ended.
    Audit {
        /// Only rows from this long ago (e.g. 1h, 2d) or this RFC 3339 time on.
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// At most this many rows (the newest).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print the rows as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every encrypted (and plain) inbox, listener data and reply row under the first key of a new key file, in batches, resumably, while the daemon runs.
    RotateKey {
        /// The file whose first key the rows are moved to; it must already be the first key of `[data_protection] key_file`.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Wait this long between batches (e.g. 100ms), to spare a busy database.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
        pause: Duration,
    },
    /// An organization's queue position and dispatch watermark: show it, or (with the daemon stopped) rewind it for chosen listeners or skip one event for one listener.
    Cursor {
        /// What to do with it.
        #[command(subcommand)]
        action: CursorCommand,
    },
    /// Stream, from the running daemon, each event entering dispatch and each run's outcome as JSON lines, live (content, topics, emails and names redacted unless --show-content and `[http] tap_show_content`).
    Tap(TapArgs),
    /// Run recorded events through the configured filters, partitioning and routing, and print which listeners would run each (--run runs them, --expect checks the pairs).
    Test(TestArgs),
    /// A live view of the running daemon, read from its /metrics and /health: each listener instance's runs/s, failures/s, p50/p99 latency, in flight, retries waiting, circuit and dead letters pending; intake's events/s, queue lag, last poll and rate-limit budget. q quits, arrows or j/k scroll.
    Top {
        /// Seconds between scrapes (a decimal number, 0.1 to 3600).
        #[arg(long, value_name = "SECS", default_value = "2", value_parser = crate::cli::top::parse_interval)]
        interval: Duration,
        /// Print one plain-text frame (two scrapes one interval apart) to stdout and exit.
        #[arg(long)]
        once: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout; reads no configuration.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, e.g. `man <(zulip-event-listeners man)`; reads no configuration.
    Man,
}

/// `deadletters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadlettersCommand {
    /// The dead letters the filters select, newest first: id, listener, inbox event, stage, class, attempts, first and last failure, status, error.
    List {
        /// Which ones.
        #[command(flatten)]
        filter: DeadLetterArgs,
        /// Of this status: pending (not retried yet), resolved (retried, succeeded), failed (retried, failed again) or any.
        #[arg(long, default_value = "pending", value_parser = parse_status)]
        status: DeadLetterStatus,
        /// Print them as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter, every column.
    Show {
        /// Its id (the first column of `deadletters list`).
        id: i64,
        /// Print it as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run the pending dead letters the filters select again, as `replay` does (a refused reply goes back to the outbox), with a progress bar.
    Retry {
        /// Which ones (pending ones only).
        #[command(flatten)]
        filter: DeadLetterArgs,
    },
    /// Delete the dead letters the filters select (of any status unless --status); a filter or --all is required.
    Delete {
        /// Which ones.
        #[command(flatten)]
        filter: DeadLetterArgs,
        /// Of this status only: pending, resolved, failed or any.
        #[arg(long, default_value = "any", value_parser = parse_status)]
        status: DeadLetterStatus,
        /// Delete every dead letter (of the status given) when no other filter is.
        #[arg(long)]
        all: bool,
    },
}

/// The filters of `deadletters list|retry|delete`.
#[derive(Debug, Args)]
pub struct DeadLetterArgs {
    /// Only this listener instance's.
    #[arg(long, value_name = "NAME")]
    pub listener: Option<String>,
    /// Only those that last failed this long ago (e.g. 2h, 7d) or at this RFC 3339 time, or later.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only this error class: transient, permanent, timeout, panic or circuit.
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    pub class: Option<ErrorClass>,
    /// At most this many, the newest (`list`: 100 unless given).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

fn parse_class(s: &str) -> Result<ErrorClass, UnknownWord> {
    s.parse()
}

fn parse_status(s: &str) -> Result<DeadLetterStatus, UnknownWord> {
    s.parse()
}

/// `cursor` subcommands.
#[derive(Debug, Subcommand)]
pub enum CursorCommand {
    /// The queue id, last event id, last message id and dispatched-through of an organization.
    Show {
        /// The organization (`[[zulip]] name`); default: the first (or only) one.
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
        /// Print it as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Dispatch stored events again, from an inbox id or a time on, to the chosen listeners at the next start (daemon stopped; nothing is deleted).
    Rewind {
        /// The first inbox id to dispatch again.
        #[arg(
            long,
            value_name = "N",
            required_unless_present = "since",
            conflicts_with = "since"
        )]
        to_inbox_id: Option<i64>,
        /// The first event stored this long ago (e.g. 2h) or at this RFC 3339 time on.
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// A listener to run them again (repeatable); default: every enabled one.
        #[arg(long, value_name = "NAME")]
        listener: Vec<String>,
        /// The organization (`[[zulip]] name`); default: the first (or only) one.
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
    },
    /// Mark one (poison) event done for one listener without running it (daemon stopped; audited).
    Skip {
        /// The event's inbox id.
        #[arg(long, value_name = "N")]
        inbox_id: i64,
        /// The listener that will not run it.
        #[arg(long, value_name = "NAME")]
        listener: String,
        /// The organization (`[[zulip]] name`); default: the first (or only) one.
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
    },
}

/// `tap` options.
#[derive(Debug, Args)]
pub struct TapArgs {
    /// Only events routed to this listener instance, and its outcomes.
    #[arg(long, value_name = "NAME")]
    pub listener: Option<String>,
    /// Only events (and outcomes) of this event type, e.g. message.
    #[arg(long = "type", value_name = "T")]
    pub event_type: Option<String>,
    /// Only events (and outcomes) in this channel: its name or its id.
    #[arg(long, value_name = "C")]
    pub channel: Option<String>,
    /// Exit (0) after this many event and outcome lines.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Show content, topics, emails and names (only when `[http] tap_show_content = true`).
    #[arg(long)]
    pub show_content: bool,
}

/// `test` options.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A JSON-lines file of events (one per line, as GET /events returns them).
    #[arg(value_name = "EVENTS.jsonl")]
    pub events: PathBuf,
    /// Also run the listeners: records and replies are printed, never stored or sent; webhook and exec listeners send for real unless --dry.
    #[arg(long)]
    pub run: bool,
    /// With --run: webhook and exec listeners print what they would send instead of sending.
    #[arg(long, requires = "run")]
    pub dry: bool,
    /// A file of expected `EVENT_ID LISTENER` pairs (`#` comments); exit 1 when the pairs differ.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Print only the (event, listener) pairs, in --expect's format.
    #[arg(long)]
    pub pairs: bool,
    /// Consider only these listener instances (comma-separated) instead of `[listeners] enabled`.
    #[arg(long, value_delimiter = ',')]
    pub listeners: Option<Vec<String>>,
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
    /// What this process does: `all` (poll, store and run listeners, the
    /// default), `ingest` (poll Zulip when leading, store, publish to
    /// RabbitMQ) or `worker` (consume from RabbitMQ, run listeners, record);
    /// `ingest` and `worker` need `[distributed]` and PostgreSQL.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
}

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
    /// The organization (`[[zulip]] name`) whose events to replay; default:
    /// the first (or only) one.
    #[arg(long, value_name = "NAME")]
    pub org: Option<String>,
}
