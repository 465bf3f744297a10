//! The life of a persistent exec child: [`supervise`] spawns it (at the
//! instance's first run), serves it — request lines batched into its stdin,
//! response lines from its stdout handed to their requests, its stderr
//! forwarded to the log line by line within a budget — and, when it dies,
//! fails its in-flight requests as transient and starts the next one after
//! a backoff (`backoff.rs`). When the listener is dropped the child gets
//! EOF on stdin and SIGTERM, then SIGKILL for its whole process group.

use std::convert::Infallible;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::command::ProcessGroup;
use super::output::{Allowance, Line, LineReader, LogBudget};
use super::protocol::Response;
use super::shared::{Delivery, Shared};
use crate::backoff::Backoff;
use crate::pii::Pii;

/// First restart delay ceiling (full jitter) after the child dies.
const RESTART_BASE: Duration = Duration::from_millis(250);

/// Longest restart delay.
const RESTART_CAP: Duration = Duration::from_secs(30);

/// How long a stopping child has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The longest response line read; longer ones are ignored.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// The longest stderr line logged; longer ones are cut.
const MAX_STDERR_LINE: usize = 2048;

/// Runs the child of `shared` until `stop` is cancelled, restarting it
/// whenever it dies.
pub(super) async fn supervise(shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Backoff::new(RESTART_BASE, RESTART_CAP);
    let mut generation = 0u64;
    while !stop.is_cancelled() {
        let mut cmd = shared.spec.command();
        cmd.env("ZEL_LISTENER", &shared.name);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let (why, _) = shared.spec.spawn_failure(&e);
                let delay = backoff.next_delay();
                tracing::error!(listener = %shared.name, error = %why, retry_in_ms = delay.as_millis() as u64, "Cannot start the persistent exec child");
                shared.go_down(None, &why, Some(why.clone()));
                if !pause(&stop, delay).await {
                    break;
                }
                continue;
            }
        };
        generation += 1;
        let pid = child.id();
        tracing::info!(listener = %shared.name, pid, command = shared.spec.display(), "Started the persistent exec child");
        let ended = serve(&shared, child, generation, &stop).await;
        let why = format!("the persistent exec child {}", ended.status);
        let failed = shared.go_down(Some(generation), &why, None);
        if stop.is_cancelled() {
            tracing::info!(listener = %shared.name, pid, status = %ended.status, "Stopped the persistent exec child");
            break;
        }
        if ended.answered {
            backoff.reset();
        }
        let restarts = shared.count_restart();
        let delay = backoff.next_delay();
        tracing::warn!(listener = %shared.name, pid, status = %ended.status, in_flight_failed = failed, restarts, restart_in_ms = delay.as_millis() as u64, "The persistent exec child exited; restarting it");
        if !pause(&stop, delay).await {
            break;
        }
    }
    shared.go_down(
        None,
        "the listener is stopping",
        Some("the listener is stopping".to_owned()),
    );
}

/// Waits `delay`; false if `stop` came first.
async fn pause(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.cancelled() => false,
    }
}

/// How a child's service ended.
struct Ended {
    /// `exited with status 1`, `was killed by signal 9`, …
    status: String,
    /// Whether it answered at least one request (a healthy start, which
    /// resets the restart backoff).
    answered: bool,
}

/// Serves child `generation` until it exits (or `stop`), then reads what
/// is left of its stdout; returns once its process group is gone.
async fn serve(
    shared: &Shared,
    mut child: Child,
    generation: u64,
    stop: &CancellationToken,
) -> Ended {
    let mut group = ProcessGroup::of(&child);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (tx, rx) = mpsc::channel(shared.queue);
    shared.go_live(generation, tx);
    // The futures borrowing the group end with this block.
    let (status, answered, ()) = {
        let writer = async {
            if let Err(e) = write_requests(stdin, rx).await {
                // It closed its stdin: it cannot be served any more.
                tracing::warn!(listener = %shared.name, error = %e, "Cannot write to the persistent exec child; killing it");
                group.kill();
            }
            std::future::pending::<Infallible>().await
        };
        let exited = async {
            let status = child.wait().await;
            // What it leaves behind would hold its pipes open.
            group.kill();
            status
        };
        let io = async {
            tokio::join!(
                exited,
                read_responses(shared, stdout),
                forward_stderr(&shared.name, stderr)
            )
        };
        tokio::pin!(io);
        tokio::select! {
            r = &mut io => r,
            never = writer => match never {},
            _ = stop.cancelled() => {
                // The writer is dropped with this `select!`: stdin closes.
                group.signal(libc::SIGTERM);
                match tokio::time::timeout(STOP_GRACE, &mut io).await {
                    Ok(r) => r,
                    Err(_) => {
                        group.kill();
                        io.await
                    }
                }
            }
        }
    };
    group.disarm();
    let status = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended".to_owned(),
        },
        Err(e) => format!("could not be waited for ({e})"),
    };
    Ended { status, answered }
}

/// Writes request lines to the child as they come, several per flush when
/// they queue up; ends when the queue closes (stdin is closed then).
async fn write_requests(
    stdin: Option<ChildStdin>,
    mut requests: mpsc::Receiver<String>,
) -> std::io::Result<()> {
    let Some(stdin) = stdin else {
        return Ok(());
    };
    let mut out = BufWriter::with_capacity(64 * 1024, stdin);
    while let Some(line) = requests.recv().await {
        out.write_all(line.as_bytes()).await?;
        while let Ok(line) = requests.try_recv() {
            out.write_all(line.as_bytes()).await?;
        }
        out.flush().await?;
    }
    Ok(())
}

/// Hands each response line to its request until stdout ends; lines that
/// are not responses, or answer no request, are logged (within a budget)
/// and ignored. Returns whether any request was answered.
async fn read_responses(shared: &Shared, stdout: Option<ChildStdout>) -> bool {
    let Some(stdout) = stdout else {
        return false;
    };
    let mut lines = LineReader::new(stdout, MAX_RESPONSE);
    let mut budget = LogBudget::new(20, Duration::from_secs(60));
    let mut answered = false;
    while let Some(line) = lines.next().await {
        let problem = match line {
            Line::TooLong(n) => format!("a line of {n} bytes, longer than a response may be"),
            Line::Text if lines.line.trim_ascii().is_empty() => continue,
            Line::Text => match Response::parse(&lines.line) {
                Ok(response) => {
                    let id = response.id;
                    match shared.deliver(response) {
                        Delivery::Answered => {
                            answered = true;
                            continue;
                        }
                        Delivery::Late => {
                            tracing::debug!(listener = %shared.name, id, "Ignoring the answer to a request that is no longer waiting");
                            continue;
                        }
                        Delivery::Unknown => format!("an answer to id {id}, which no request had"),
                    }
                }
                // The line is the child's, and may quote the event.
                Err(e) => format!(
                    "not a response ({}): {}",
                    Pii(e),
                    Pii(excerpt(&String::from_utf8_lossy(&lines.line)))
                ),
            },
        };
        if let Allowance::Log { held_back } = budget.take() {
            tracing::warn!(listener = %shared.name, problem = %problem, held_back, "Ignoring a line of the persistent exec child's stdout");
        }
    }
    answered
}

/// Logs each stderr line of the child (cut to a bounded length), at most
/// 100 lines per 10 s; the lines held back are counted in the next one.
async fn forward_stderr(listener: &str, stderr: Option<ChildStderr>) {
    let Some(stderr) = stderr else {
        return;
    };
    let mut lines = LineReader::new(stderr, MAX_STDERR_LINE);
    let mut budget = LogBudget::new(100, Duration::from_secs(10));
    while let Some(line) = lines.next().await {
        let Allowance::Log { held_back } = budget.take() else {
            continue;
        };
        let mut text = String::from_utf8_lossy(&lines.line).into_owned();
        if let Line::TooLong(n) = line {
            text.push_str(&format!("… ({n} bytes)"));
        }
        tracing::info!(listener, held_back, line = %Pii(text.trim_end()), "The persistent exec child wrote to stderr");
    }
}

/// The first 200 characters of `s`.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
