//! `mode = "per_event"`: one process per event. The envelope (and a
//! newline) on stdin, `ZEL_*` variables in the environment; exit 0 is
//! success, 75 (`EX_TEMPFAIL`) a transient failure, any other status or a
//! signal a permanent one, with the last 4 KB of stderr as the error; a
//! `{"content": …}` object on stdout is a reply. The process group is the
//! run: whatever the command leaves running when it exits is killed, and
//! when the run times out (the dispatcher drops this future) the whole
//! group is killed by the [`ProcessGroup`] guard.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::command::{ProcessGroup, Spec};
use super::output::{read_capped, read_tail, tail_text};
use super::protocol::stdout_records;
use crate::event::Event;
use crate::listeners::envelope::envelope;
use crate::listeners::{Context, Listener, ListenerError, Record, ALL_EVENT_TYPES};

/// The most of stdout read as a reply; more is read and dropped.
const STDOUT_LIMIT: usize = 1024 * 1024;

/// The stderr kept for the run's error: its last bytes.
const STDERR_TAIL: usize = 4096;

/// The exit status of a transient failure (`EX_TEMPFAIL`, sysexits.h).
pub(super) const EX_TEMPFAIL: i32 = 75;

/// An exec instance that runs its command once per event.
pub(super) struct PerEvent {
    name: String,
    description: String,
    spec: Spec,
}

impl PerEvent {
    /// The instance `name` running `spec`.
    pub(super) fn new(name: &str, spec: Spec) -> PerEvent {
        PerEvent {
            name: name.to_owned(),
            description: format!("Runs `{}` for each event", spec.display()),
            spec,
        }
    }
}

#[async_trait]
impl Listener for PerEvent {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn event_types(&self) -> &[&str] {
        ALL_EVENT_TYPES
    }

    #[tracing::instrument(skip_all, fields(listener = %self.name, inbox_id = ctx.inbox_id))]
    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let mut input = envelope(&self.name, event, ctx);
        input.push('\n');
        let mut cmd = self.spec.command();
        cmd.env("ZEL_LISTENER", &self.name)
            .env("ZEL_IDEMPOTENCY_KEY", ctx.idempotency_key(event))
            .env("ZEL_ATTEMPT", ctx.attempt.to_string())
            .env("ZEL_INBOX_ID", ctx.inbox_id.to_string())
            .env("ZEL_EVENT_TYPE", event.event_type());
        let mut child = cmd.spawn().map_err(|e| match self.spec.spawn_failure(&e) {
            (msg, true) => ListenerError::Permanent(msg),
            (msg, false) => ListenerError::Transient(msg),
        })?;
        // From here on, dropping this future (a timeout) kills the group.
        let mut group = ProcessGroup::of(&child);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A command that exits without reading its input is no
                // error of ours: the broken pipe is ignored.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
        };
        let exited = async {
            let status = child.wait().await;
            // The run ends with its command: what it left behind would
            // hold the pipes open (and outlive the run).
            group.kill();
            status
        };
        let out = async {
            match stdout {
                Some(s) => read_capped(s, STDOUT_LIMIT).await,
                None => (Vec::new(), false),
            }
        };
        let err = async {
            match stderr {
                Some(s) => read_tail(s, STDERR_TAIL).await,
                None => Vec::new(),
            }
        };
        let ((), status, (stdout, truncated), stderr) = tokio::join!(feed, exited, out, err);
        group.disarm();
        let status = status.map_err(|e| {
            ListenerError::transient(format!("cannot wait for `{}`: {e}", self.spec.display()))
        })?;
        exit_outcome(status, &tail_text(&stderr))?;
        if truncated {
            tracing::warn!(
                limit_bytes = STDOUT_LIMIT,
                "The command wrote more than the limit to stdout: not read as a reply"
            );
            return Ok(Vec::new());
        }
        Ok(stdout_records(&self.name, &stdout, event))
    }
}

/// What an exit status means, with the stderr tail as the error.
fn exit_outcome(status: ExitStatus, stderr: &str) -> Result<(), ListenerError> {
    let with = |what: String| match stderr {
        "" => what,
        tail => format!("{what}; stderr: {tail}"),
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(EX_TEMPFAIL), _) => Err(ListenerError::Transient(with(format!(
            "exited with status {EX_TEMPFAIL} (EX_TEMPFAIL)"
        )))),
        (Some(code), _) => Err(ListenerError::Permanent(with(format!(
            "exited with status {code}"
        )))),
        (None, Some(signal)) => Err(ListenerError::Permanent(with(format!(
            "killed by signal {signal}{}",
            signal_name(signal)
        )))),
        (None, None) => Err(ListenerError::Permanent(with(
            "ended without an exit status".to_owned(),
        ))),
    }
}

/// ` (SIGKILL)` and the like for the usual signals.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{ExecConfig, ExecMode};

    fn instance(script: &str) -> PerEvent {
        let config = ExecConfig {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            mode: ExecMode::PerEvent,
            env: vec![("EXTRA".into(), "yes".into())],
            working_dir: None,
        };
        PerEvent::new("script", Spec::from_config(&config).unwrap())
    }

    fn ctx() -> Context {
        Context {
            org: Arc::from("acme"),
            inbox_id: 12,
            bot_user_id: None,
            attempt: 2,
            bot: None,
            received_at: None,
            fallback_of: None,
        }
    }

    fn event() -> Event {
        Event::parse(r#"{"type":"message","id":4,"message":{"id":77,"sender_id":3,"sender_email":"s@x","type":"private","display_recipient":[{"id":3,"email":"s@x"},{"id":9,"email":"bot@x"}],"subject":"","timestamp":1,"content":"hi"},"flags":[]}"#).unwrap()
    }

    #[test]
    fn exit_statuses_map_to_outcomes() {
        let status = |code: i32| ExitStatus::from_raw(code << 8);
        assert!(exit_outcome(status(0), "").is_ok());
        let t = exit_outcome(status(75), "try later").unwrap_err();
        assert!(
            matches!(&t, ListenerError::Transient(m) if m.ends_with("stderr: try later")),
            "{t:?}"
        );
        assert!(
            matches!(exit_outcome(status(1), ""), Err(ListenerError::Permanent(m)) if m == "exited with status 1")
        );
        let killed = exit_outcome(ExitStatus::from_raw(libc::SIGKILL), "").unwrap_err();
        assert!(
            matches!(&killed, ListenerError::Permanent(m) if m.contains("SIGKILL")),
            "{killed:?}"
        );
    }

    #[tokio::test]
    async fn the_command_reads_the_envelope_and_its_variables() {
        let l = instance(
            r#"read line; printf '{"content": "%s %s %s %s %s %s"}' "$ZEL_LISTENER" "$ZEL_IDEMPOTENCY_KEY" "$ZEL_ATTEMPT" "$ZEL_INBOX_ID" "$ZEL_EVENT_TYPE" "$EXTRA"; echo "$line" > /dev/null"#,
        );
        let records = l.handle(&event(), &ctx()).await.unwrap();
        let [Record::Reply(reply)] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(reply.content, "script acme:message:77 2 12 message yes");
    }

    #[tokio::test]
    async fn stderr_becomes_the_error_of_a_failed_run() {
        let l = instance("cat > /dev/null; echo 'first line' >&2; echo 'it broke' >&2; exit 3");
        let e = l.handle(&event(), &ctx()).await.unwrap_err();
        assert!(
            matches!(&e, ListenerError::Permanent(m) if m == "exited with status 3; stderr: first line\nit broke"),
            "{e:?}"
        );
        let t = instance("exit 75")
            .handle(&event(), &ctx())
            .await
            .unwrap_err();
        assert_eq!(t.class(), "transient");
    }

    /// Whether `pid` is a live process (a zombie is not).
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn a_dropped_run_kills_its_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let l = instance(&format!(
            "sleep 300 & echo $! > {}.tmp; mv {0}.tmp {0}; wait",
            pid_file.display()
        ));
        let event = event();
        let ctx = ctx();
        let mut run = Box::pin(l.handle(&event, &ctx));
        let pid: i32 = loop {
            tokio::select! {
                r = &mut run => panic!("the script sleeps, yet ended: {r:?}"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                break text.trim().parse().unwrap();
            }
        };
        assert!(alive(pid));
        // What the dispatcher's timeout does: drop the run.
        drop(run);
        let mut gone = false;
        for _ in 0..200 {
            if !alive(pid) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the grandchild {pid} was killed with its group");
    }

    #[tokio::test]
    async fn a_background_process_left_behind_does_not_hold_the_run() {
        let l = instance("sleep 300 & echo '{\"content\": \"quick\"}'");
        let records = tokio::time::timeout(Duration::from_secs(20), l.handle(&event(), &ctx()))
            .await
            .expect("the run ends with its command")
            .unwrap();
        assert_eq!(records.len(), 1);
    }
}
