//! Waiting for a killed predecessor's last statements. PostgreSQL goes on
//! executing a statement whose client died (SIGKILL, OOM kill), and commits
//! it, until it tries to send the answer. A daemon restarted at once could
//! read its unfinished events before that commit lands, then run again
//! what the predecessor's last recorder batch was committing. So every
//! connection names its process (`application_name` = [`client_name`]),
//! and at start, before reading what is unfinished, the store waits (up to
//! [`SETTLE_LIMIT`]) until no session of a process of this host that no
//! longer exists is left. Live processes (another instance, a `list`) and
//! other hosts' sessions are not waited for.

use std::time::Duration;

use sqlx::PgPool;

use crate::store::error::StoreError;

/// The prefix of every connection's `application_name`.
const PREFIX: &str = "zulip-event-listeners";
/// How long start-up waits for a predecessor's sessions to end.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How often it looks.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// This process's `application_name`: `zulip-event-listeners host=H pid=P`.
pub(super) fn client_name() -> String {
    format!("{PREFIX} host={} pid={}", host(), std::process::id())
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Whether `name` is the `application_name` of a process of this host
/// (named `host`) that no longer runs.
fn is_dead_local(name: &str, host: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let mut their_host = None;
    let mut pid = None;
    for part in rest.split_whitespace() {
        if let Some(h) = part.strip_prefix("host=") {
            their_host = Some(h);
        } else if let Some(p) = part.strip_prefix("pid=") {
            pid = p.parse::<u32>().ok();
        }
    }
    match (their_host, pid) {
        (Some(h), Some(pid)) if h == host && pid != std::process::id() => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// Waits until no session of a dead local process is left on the database.
pub(super) async fn settle(pool: &PgPool) -> Result<(), StoreError> {
    let host = host();
    let started = tokio::time::Instant::now();
    let mut logged = false;
    loop {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT application_name FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND application_name LIKE 'zulip-event-listeners %'",
        )
        .fetch_all(pool)
        .await?;
        let left = names.iter().filter(|n| is_dead_local(n, &host)).count();
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() >= SETTLE_LIMIT {
            tracing::warn!(
                sessions = left,
                "Database sessions of a stopped process are still open; going on"
            );
            return Ok(());
        }
        if !logged {
            tracing::info!(
                sessions = left,
                "Waiting for the last statements of the previous, stopped process to end"
            );
            logged = true;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessions_of_local_processes_that_are_gone_are_waited_for() {
        let me = std::process::id();
        // Far above any pid the kernel hands out (pid_max is at most 2^22).
        let gone = 99_999_999u32;
        assert!(is_dead_local(&format!("{PREFIX} host=h pid={gone}"), "h"));
        assert!(
            !is_dead_local(&format!("{PREFIX} host=h pid={me}"), "h"),
            "ourselves"
        );
        assert!(
            !is_dead_local(&format!("{PREFIX} host=h pid=1"), "h"),
            "a live process"
        );
        assert!(
            !is_dead_local(&format!("{PREFIX} host=other pid={gone}"), "h"),
            "another host"
        );
        assert!(!is_dead_local("psql", "h"));
        assert!(client_name().starts_with("zulip-event-listeners host="));
    }
}
