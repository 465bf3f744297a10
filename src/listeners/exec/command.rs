//! [`Spec`]: an exec instance's command as it is started — the argv (no
//! shell), the environment (the daemon's, without its `ZULIP_*`
//! credentials, plus the configured `env`), the working directory, three
//! pipes and a process group of its own; and [`ProcessGroup`], the guard
//! that kills that whole group when it is dropped, so a timed-out run (whose
//! future the dispatcher drops) leaves no grandchild behind.

use std::ffi::OsString;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::config::ExecConfig;

/// Environment variables the child does not inherit: the daemon's Zulip
/// credentials (`ZULIP_API_KEY`, …) are not the command's business.
const WITHHELD_PREFIX: &str = "ZULIP_";

/// How to start an exec instance's command.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<PathBuf>,
    /// `command` joined, for descriptions and errors.
    display: String,
}

impl Spec {
    /// The spec of `config`. A relative program path with a `/` in it
    /// (`./handler.py`) is taken from the `working_dir` when one is set; a
    /// bare name (`python3`) is looked up in `PATH`.
    pub(super) fn from_config(config: &ExecConfig) -> Result<Spec, String> {
        let (program, args) = config
            .command
            .split_first()
            .ok_or_else(|| "`command` is empty".to_owned())?;
        let mut program = PathBuf::from(program);
        if program.is_relative() && program.components().count() > 1 {
            if let Some(dir) = &config.working_dir {
                program = dir.join(program);
            }
        }
        Ok(Spec {
            program,
            args: args.to_vec(),
            env: config.env.clone(),
            working_dir: config.working_dir.clone(),
            display: config.command.join(" "),
        })
    }

    /// The command line, for `list`, logs and errors.
    pub(super) fn display(&self) -> &str {
        &self.display
    }

    /// The program.
    #[cfg(test)]
    pub(super) fn program(&self) -> &Path {
        &self.program
    }

    /// A command ready to spawn: stdin, stdout and stderr piped, in a new
    /// process group (its id is the child's pid), killed if dropped.
    pub(super) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for key in withheld(std::env::vars_os().map(|(k, _)| k)) {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.working_dir {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Why `error` kept the command from starting, and whether trying
    /// again could help (not for a missing or non-executable program).
    pub(super) fn spawn_failure(&self, error: &std::io::Error) -> (String, bool) {
        let msg = format!(
            "cannot start `{}` ({}): {error}",
            self.display,
            self.program.display()
        );
        let permanent = matches!(
            error.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        );
        (msg, permanent)
    }
}

/// The names among `vars` the child must not inherit.
fn withheld(vars: impl Iterator<Item = OsString>) -> Vec<OsString> {
    vars.filter(|k| k.to_string_lossy().starts_with(WITHHELD_PREFIX))
        .collect()
}

/// The process group of a child spawned by [`Spec::command`]; dropping the
/// guard sends SIGKILL to every process still in it.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    /// The group's id (the child's pid); `None` once disarmed.
    pgid: Option<libc::pid_t>,
}

impl ProcessGroup {
    /// The group `child` leads.
    pub(super) fn of(child: &Child) -> ProcessGroup {
        ProcessGroup {
            pgid: child
                .id()
                .and_then(|pid| libc::pid_t::try_from(pid).ok())
                // 0 and 1 would name our own group or init's: never signal those.
                .filter(|pid| *pid > 1),
        }
    }

    /// Sends `signal` to every process of the group.
    pub(super) fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg takes plain integers and touches no memory of
            // ours; `pgid` is a group this guard created (> 1), and an
            // error (ESRCH: the group is empty) is of no consequence.
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }

    /// Kills every process of the group.
    pub(super) fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Stops the guard from signalling the group again (once it is known
    /// to be empty, so a later group reusing the id is never touched).
    pub(super) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExecMode;

    fn config(command: &[&str], working_dir: Option<&str>) -> ExecConfig {
        ExecConfig {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            mode: ExecMode::PerEvent,
            env: vec![("GREETING".to_owned(), "hi".to_owned())],
            working_dir: working_dir.map(PathBuf::from),
        }
    }

    #[test]
    fn a_relative_program_path_is_taken_from_the_working_dir() {
        let spec = Spec::from_config(&config(&["./handler.py", "-v"], Some("/opt/h"))).unwrap();
        assert_eq!(spec.program(), Path::new("/opt/h/./handler.py"));
        let bare = Spec::from_config(&config(&["python3", "h.py"], Some("/opt/h"))).unwrap();
        assert_eq!(bare.program(), Path::new("python3"));
        assert_eq!(bare.display(), "python3 h.py");
    }

    #[test]
    fn the_zulip_credentials_are_withheld() {
        let vars = ["PATH", "ZULIP_API_KEY", "ZULIP_EMAIL", "HOME", "MY_ZULIP_X"];
        let out = withheld(vars.iter().map(OsString::from));
        assert_eq!(out, ["ZULIP_API_KEY", "ZULIP_EMAIL"]);
    }

    #[tokio::test]
    async fn the_child_gets_the_configured_env() {
        let spec =
            Spec::from_config(&config(&["/bin/sh", "-c", "echo \"$GREETING\""], None)).unwrap();
        let out = spec.command().output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_permanent_spawn_failure() {
        let spec = Spec::from_config(&config(&["/nonexistent/handler"], None)).unwrap();
        let e = spec.command().spawn().unwrap_err();
        let (msg, permanent) = spec.spawn_failure(&e);
        assert!(permanent);
        assert!(msg.contains("/nonexistent/handler"), "{msg}");
    }
}
