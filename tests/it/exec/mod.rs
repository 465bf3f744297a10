//! `kind = "exec"` through the whole daemon (fake Zulip, real database):
//! per-event commands and persistent children written in Python, and the
//! shipped examples.

mod examples;
mod per_event;
mod persistent;

use std::path::{Path, PathBuf};
use std::time::Duration;

use zulip_event_listeners::app::RunOptions;
use zulip_event_listeners::listeners::Registry;

use crate::support::fake_zulip::FakeOptions;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// A temporary directory holding the test's scripts and what they write.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the Python script `name` and returns the `command` running it
    /// with `args`, as TOML.
    fn python(&self, name: &str, body: &str, args: &[&str]) -> String {
        let script = self.path(name);
        std::fs::write(&script, body).expect("write the script");
        let mut argv = vec!["python3".to_owned(), script.display().to_string()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        toml_list(&argv)
    }

    /// The lines of the file `name` (none while it does not exist).
    fn lines(&self, name: &str) -> Vec<String> {
        lines_of(&self.path(name))
    }
}

fn lines_of(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `items` as a TOML array of strings.
fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).expect("a JSON string"))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A daemon on `backend` whose only listener is `instance` (a
/// `[listeners.NAME]` table), started and registered with the fake Zulip.
async fn start(backend: Backend, name: &str, instance: &str) -> TestApp {
    start_with(backend, &[name], instance).await
}

/// [`start`] with several instances.
async fn start_with(backend: Backend, names: &[&str], tables: &str) -> TestApp {
    let enabled: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let extra = format!(
        "[performance]\nmax_concurrent_handlers = 16\n[listeners]\nenabled = {}\n{tables}\n",
        toml_list(&enabled)
    );
    let mut app = TestApp::new(backend, FakeOptions::default(), &extra).await;
    if backend == Backend::Postgres {
        app.db.migrate().await;
    }
    app.start(Registry::builtin(), RunOptions::default()).await;
    let fake = app.fake.clone();
    // Replies the sender posts reach no queue, so they are no events (and
    // no runs) of their own.
    fake.lose_echoes(true);
    assert!(eventually(WAIT, || async { fake.register_count() == 1 }).await);
    app
}

/// Waits until `listener` has `n` rows in the event log.
async fn until_logged(app: &TestApp, listener: &str, n: i64) {
    let sql =
        format!("SELECT count(*) FROM event_listeners_eventlog WHERE listener_name = '{listener}'");
    let db = app.db.clone();
    assert!(
        eventually(WAIT, || async { db.try_scalar(&sql).await == Some(n) }).await,
        "{listener} logs {n} runs, has {:?}",
        db.try_scalar(&sql).await
    );
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// Waits until `pid` is gone.
async fn until_gone(pid: i32) -> bool {
    eventually(WAIT, || async move { !alive(pid) }).await
}
