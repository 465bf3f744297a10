//! `mode = "persistent"`: one long-lived child for every run of the
//! instance. Each run writes a request line (`{"id", …the envelope…}`) to
//! the child's stdin and waits for the response line with its id on stdout
//! (answers may come in any order); up to `max_concurrent` are in flight.
//!
//! [`Persistent`] is the run side: it starts the supervisor
//! (`supervisor.rs`: the child spawned at the first run, restarted with
//! backoff, stopped when the listener is dropped), and each run waits in
//! the pending set of `shared.rs` for its answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::command::Spec;
use super::protocol::request_line;
use super::shared::Shared;
use super::supervisor::supervise;
use crate::event::Event;
use crate::listeners::envelope::envelope;
use crate::listeners::{Context, Listener, ListenerError, Record, ALL_EVENT_TYPES};

/// An exec instance served by one persistent child.
pub(super) struct Persistent {
    name: String,
    description: String,
    shared: Arc<Shared>,
    started: AtomicBool,
    stop: CancellationToken,
}

impl Persistent {
    /// The instance `name` running `spec`, with at most `max_concurrent`
    /// requests in flight (unbounded here when `None`: the dispatcher's
    /// own bound applies).
    pub(super) fn new(name: &str, spec: Spec, max_concurrent: Option<usize>) -> Persistent {
        Persistent {
            name: name.to_owned(),
            description: format!("Sends each event to one persistent `{}`", spec.display()),
            shared: Arc::new(Shared::new(name, spec, max_concurrent)),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
        }
    }

    /// How many times the child was restarted after it died (also in the
    /// log line of each restart), for the per-instance metrics.
    #[allow(dead_code)]
    pub(super) fn restarts(&self) -> u64 {
        self.shared.restarts()
    }

    /// Starts the supervisor, once (at the first run).
    fn start(&self) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(supervise(self.shared.clone(), self.stop.clone()));
        }
    }
}

impl Drop for Persistent {
    fn drop(&mut self) {
        // The supervisor stops the child (and kills its process group).
        self.stop.cancel();
    }
}

#[async_trait]
impl Listener for Persistent {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn event_types(&self) -> &[&str] {
        ALL_EVENT_TYPES
    }

    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        self.start();
        let _permit = self.shared.admit().await?;
        let id = self.shared.next_id();
        let line = request_line(id, &envelope(&self.name, event, ctx));
        let (answer, answered) = oneshot::channel();
        // Dropped with this future (a timeout): the request is forgotten,
        // and a late answer to it ignored.
        let _waiting = Waiting {
            shared: &self.shared,
            id,
        };
        let requests = self.shared.enqueue(id, answer).await?;
        // A failed send means the child is gone: the request is in the
        // pending set of that child, which its end fails.
        let _ = requests.send(line).await;
        match answered.await {
            Ok(Ok(response)) => response.outcome(&self.name, event),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ListenerError::transient(
                "the persistent exec child went away without answering",
            )),
        }
    }
}

/// A request's place in the pending set, removed when the run ends.
struct Waiting<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{ExecConfig, ExecMode};

    /// A persistent handler: answers `re: <content>` in batches, the later
    /// request of a batch first; writes its pid to `pids` at start and each
    /// request id to `seen`; `die` makes it exit at once, `hold` is never
    /// answered, `noise` adds a garbage line and an answer to an unknown id.
    const HANDLER: &str = r#"
import json, os, select, sys
pids, seen = sys.argv[1], sys.argv[2]
with open(pids, "a") as f:
    f.write(f"{os.getpid()}\n")
buf, held = b"", []
def flush():
    for r in reversed(held):
        sys.stdout.write(json.dumps({"id": r["id"], "ok": True, "content": "re: " + r["event"]["message"]["content"]}) + "\n")
    held.clear()
    sys.stdout.flush()
while True:
    ready, _, _ = select.select([0], [], [], 0.05)
    if not ready:
        flush()
        continue
    chunk = os.read(0, 65536)
    if not chunk:
        flush()
        break
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for line in lines:
        r = json.loads(line)
        with open(seen, "a") as f:
            f.write(f"{r['id']}\n")
        content = r["event"]["message"]["content"]
        if content == "die":
            os._exit(3)
        if content == "noise":
            sys.stdout.write("this is not json\n" + json.dumps({"id": 999999, "ok": True}) + "\n")
        if content != "hold":
            held.append(r)
    if len(held) >= 2:
        flush()
"#;

    struct Fixture {
        dir: tempfile::TempDir,
        listener: Persistent,
    }

    impl Fixture {
        fn new(max_concurrent: Option<usize>) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("handler.py");
            std::fs::write(&script, HANDLER).unwrap();
            let path = |name: &str| dir.path().join(name).display().to_string();
            let config = ExecConfig {
                command: vec![
                    "python3".into(),
                    script.display().to_string(),
                    path("pids"),
                    path("seen"),
                ],
                mode: ExecMode::Persistent,
                env: Vec::new(),
                working_dir: None,
            };
            let spec = Spec::from_config(&config).unwrap();
            Fixture {
                listener: Persistent::new("p", spec, max_concurrent),
                dir,
            }
        }

        fn lines(&self, name: &str) -> Vec<String> {
            read_lines(&self.dir.path().join(name))
        }
    }

    fn read_lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn message(id: i64, content: &str) -> Event {
        Event::parse(&format!(r#"{{"type":"message","id":{id},"message":{{"id":{},"sender_id":3,"sender_email":"s@x","type":"stream","display_recipient":"ops","subject":"t","timestamp":1,"content":"{content}"}},"flags":[]}}"#, id + 100)).unwrap()
    }

    fn ctx(inbox_id: i64) -> Context {
        Context {
            org: Arc::from("acme"),
            inbox_id,
            bot_user_id: None,
            attempt: 1,
            bot: None,
            received_at: None,
            fallback_of: None,
        }
    }

    async fn run(l: &Persistent, id: i64, content: &str) -> Result<Vec<Record>, ListenerError> {
        l.handle(&message(id, content), &ctx(id)).await
    }

    fn reply_text(records: &[Record]) -> &str {
        match records {
            [Record::Reply(r)] => &r.content,
            other => panic!("one reply expected: {other:?}"),
        }
    }

    async fn until(limit: Duration, check: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check()
    }

    #[tokio::test]
    async fn many_concurrent_runs_share_one_child_and_get_their_own_answers() {
        let f = Fixture::new(Some(8));
        let runs = (0..40).map(|i| {
            let l = &f.listener;
            async move { (i, run(l, i, &format!("m{i}")).await) }
        });
        for (i, result) in futures::future::join_all(runs).await {
            assert_eq!(reply_text(&result.unwrap()), format!("re: m{i}"));
        }
        assert_eq!(f.lines("pids").len(), 1, "one child for every run");
        assert_eq!(f.lines("seen").len(), 40);
    }

    #[tokio::test]
    async fn lines_that_answer_nothing_are_ignored() {
        let f = Fixture::new(None);
        let (a, b) = tokio::join!(run(&f.listener, 1, "noise"), run(&f.listener, 2, "after"));
        assert_eq!(reply_text(&a.unwrap()), "re: noise");
        assert_eq!(reply_text(&b.unwrap()), "re: after");
        assert_eq!(f.listener.restarts(), 0);
    }

    #[tokio::test]
    async fn a_dying_child_fails_its_runs_as_transient_and_is_restarted() {
        let f = Fixture::new(Some(4));
        let held = async {
            tokio::join!(
                run(&f.listener, 1, "hold"),
                run(&f.listener, 2, "hold"),
                async {
                    assert!(until(Duration::from_secs(30), || f.lines("seen").len() == 2).await);
                    run(&f.listener, 3, "die").await
                }
            )
        };
        let (a, b, c) = tokio::time::timeout(Duration::from_secs(60), held)
            .await
            .expect("the child's end answers every run in flight");
        for r in [a, b, c] {
            let e = r.unwrap_err();
            assert_eq!(e.class(), "transient", "{e}");
            assert!(e.to_string().contains("exited with status 3"), "{e}");
        }
        let next = run(&f.listener, 4, "again").await.unwrap();
        assert_eq!(reply_text(&next), "re: again");
        assert_eq!(f.lines("pids").len(), 2, "a second child");
        assert_eq!(f.listener.restarts(), 1);
    }

    #[tokio::test]
    async fn dropping_the_listener_stops_the_child() {
        let f = Fixture::new(None);
        run(&f.listener, 1, "x").await.unwrap();
        let pid: i32 = f.lines("pids")[0].parse().unwrap();
        let Fixture { dir, listener } = f;
        drop(listener);
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            })
        };
        assert!(
            until(Duration::from_secs(30), || !alive()).await,
            "child {pid} stopped"
        );
        drop(dir);
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_fails_the_run_at_once() {
        let config = ExecConfig {
            command: vec!["/nonexistent/handler".into()],
            mode: ExecMode::Persistent,
            env: Vec::new(),
            working_dir: None,
        };
        let l = Persistent::new("p", Spec::from_config(&config).unwrap(), None);
        let e = run(&l, 1, "x").await.unwrap_err();
        assert_eq!(e.class(), "transient");
        assert!(e.to_string().contains("/nonexistent/handler"), "{e}");
    }
}
