//! The daemon as a process: its binary, one-shot subcommands, a running
//! daemon with its stderr in a file, signals, and waiting for its exit.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// The daemon binary built by cargo for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zulip-event-listeners"))
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with `args` to its end: errors-only logging, no
/// `ZULIP_*` credentials from the environment, and `alice` as the operator
/// that audit rows name.
pub fn zel(args: &[&str]) -> Output {
    zel_env(args, &[])
}

/// [`zel`] with `vars` set in its environment (e.g. `ZULIP_*`, `HOME`).
pub fn zel_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "error")
        .env("SUDO_USER", "alice")
        .env_remove("ZULIP_API_KEY")
        .env_remove("ZULIP_EMAIL")
        .env_remove("ZULIP_SITE")
        .env_remove("ZULIP_CONFIG")
        .envs(vars.iter().copied())
        .output()
        .expect("run the binary")
}

/// [`zel`] off the async runtime, so that the test's servers keep running.
pub async fn zel_async<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Output {
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    tokio::task::spawn_blocking(move || zel(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// `--config CFG` followed by `rest`, for [`zel_async`].
pub fn args(cfg: &str, rest: &[&str]) -> Vec<String> {
    ["--config", cfg]
        .iter()
        .chain(rest)
        .map(|s| (*s).to_owned())
        .collect()
}

/// `run` on `config`, with stdout discarded.
pub fn daemon_command(config: &Path) -> Command {
    let mut command = Command::new(bin());
    command
        .args(["--config", &config.display().to_string(), "run"])
        .stdout(Stdio::null());
    command
}

/// The daemon binary on `config`, logging warnings; its stderr goes to
/// `stderr_log` (appended, so that restarts keep what came before).
pub fn spawn_daemon(config: &Path, stderr_log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_log)
        .expect("open the stderr log");
    daemon_command(config)
        .env("RUST_LOG", "warn")
        .stderr(log)
        .spawn()
        .expect("spawn the daemon")
}

/// What a daemon wrote to its stderr log so far.
pub fn stderr_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Sends `signal` (e.g. `-TERM`) to `child` with `kill`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {}", child.id());
}

/// Waits up to `limit` for `child` to exit; after that, kills and reaps
/// it and returns `None`.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
