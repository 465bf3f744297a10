//! The distributed mode on RabbitMQ: `run --role ingest` polls Zulip
//! (while it leads), commits to the inbox and publishes each committed
//! event to a partition; `run --role worker` consumes partitions, runs the
//! listeners and records their outcomes; any number of each share one
//! PostgreSQL database. `run --role all` (the default) is the single
//! process and touches none of this.
//!
//! - `topology`: the exchanges and quorum queues, declared by every role.
//! - `envelope`: an inbox event as a message, and back.
//! - `route`: the partition of an event (its conversation's).
//! - `leader`: standing by, taking and keeping the lead (the fenced lease).
//! - `publisher`: the leader's outbox drain, with publisher confirms.
//! - `error`: [`DistributedError`].
//! - `membership`: how the live workers split the partitions.
//! - `worker`: a worker's consumer loop, acking after commit.
//!
//! It sits on the intake floor: it uses `dispatch`, `store`, `event` and
//! `config`, and `app` runs it.

mod envelope;
mod error;
mod leader;
mod membership;
mod publisher;
mod route;
mod topology;
mod worker;

pub(crate) use envelope::Envelope;
pub(crate) use error::DistributedError;
pub(crate) use leader::{keep_lead, stand_by, wait_for_lead};
pub(crate) use membership::{balance, leave, share as partition_share, worker_id};
pub(crate) use publisher::Publisher;
pub(crate) use topology::Topology;
pub(crate) use worker::{Worker, WorkerSettings};

use crate::config::{Config, Role};

/// How long connecting to the broker (TCP, AMQP handshake, channel,
/// declarations) may take before it counts as failed and is retried.
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `role` can run with `config` (and an events file or a dry run
/// as asked): every problem at once.
///
/// # Errors
///
/// [`DistributedError::Setup`] naming each problem.
pub(crate) fn check_role(
    config: &Config,
    role: Role,
    events_file: bool,
    dry_run: bool,
) -> Result<(), DistributedError> {
    if !role.is_distributed() {
        return Ok(());
    }
    let name = role.as_str();
    let mut problems = Vec::new();
    if config.distributed.amqp_url.is_none() {
        problems.push(format!(
            "`--role {name}` needs a [distributed] section with `amqp_url` (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)"
        ));
    }
    if config.database.url.backend() != "postgres" {
        problems.push(format!(
            "`--role {name}` needs PostgreSQL: SQLite is single-host only, and the ingest and its workers on other machines share one database (set [database] url = \"postgres://…\", or run `--role all`)"
        ));
    }
    if events_file {
        problems.push(format!(
            "`--role {name}` does not read --events files (run them with `--role all`)"
        ));
    }
    if dry_run {
        problems.push(format!(
            "`--role {name}` has no --dry-run (use `--role all --dry-run`)"
        ));
    }
    if config.organizations.len() > 1 {
        problems.push(format!(
            "`--role {name}` runs one organization per deployment; give each [[zulip]] organization its own configuration and [distributed] prefix or vhost"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DistributedError::Setup(problems))
    }
}
