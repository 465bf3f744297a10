//! `kind = "exec"`: the `command` to run (an argv array, no shell), its
//! `mode` (`per_event` or `persistent`), extra `env` and `working_dir`.

use std::path::PathBuf;

use toml::{Table, Value};

use super::super::reader::Reader;

/// The keys of an exec instance, besides those every kind has.
pub(in crate::config) const KNOWN: &[&str] = &["command", "mode", "env", "working_dir"];

/// How an exec instance runs its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// One process per event, the event's JSON on stdin.
    PerEvent,
    /// One long-lived child speaking JSON lines.
    Persistent,
}

impl ExecMode {
    /// As `mode = "…"` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::PerEvent => "per_event",
            ExecMode::Persistent => "persistent",
        }
    }
}

/// An exec instance's settings.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The program and its arguments (not passed to a shell).
    pub command: Vec<String>,
    /// Per event or persistent.
    pub mode: ExecMode,
    /// Extra environment variables, in order.
    pub env: Vec<(String, String)>,
    /// The working directory (the daemon's own when unset).
    pub working_dir: Option<PathBuf>,
}

/// Reads an exec instance's own keys of table `t`.
pub(in crate::config) fn read(r: &mut Reader, name: &str, t: &Table) -> Option<ExecConfig> {
    let prefix = format!("listeners.{name}");
    let command = match t.get("command") {
        None => {
            r.problem(format!(
                "`{prefix}.command` is missing: an exec listener needs the program to run, as a list such as [\"/usr/bin/python3\", \"handler.py\"]"
            ));
            None
        }
        Some(Value::String(s)) => {
            r.problem(format!(
                "`{prefix}.command` must be a list (argv, run without a shell), such as [\"/usr/bin/python3\", \"handler.py\"], got the string `{s}`"
            ));
            None
        }
        Some(v) => r.strings(&format!("{prefix}.command"), v, "program arguments"),
    };
    let mode = match t.get("mode") {
        None => Some(ExecMode::PerEvent),
        Some(v) => match v.as_str() {
            Some("per_event") => Some(ExecMode::PerEvent),
            Some("persistent") => Some(ExecMode::Persistent),
            _ => r.wrong(
                &format!("{prefix}.mode"),
                v,
                "\"per_event\" or \"persistent\"",
            ),
        },
    };
    let mut env = Vec::new();
    if let Some(v) = t.get("env") {
        match v.as_table() {
            Some(vars) => {
                for (k, v) in vars {
                    match v.as_str() {
                        Some(s) if !k.is_empty() && !k.contains('=') => {
                            env.push((k.clone(), s.to_owned()))
                        }
                        _ => r.problem(format!(
                            "`{prefix}.env.{k}` must be a string, under a name without `=`"
                        )),
                    }
                }
            }
            None => {
                r.wrong::<()>(
                    &format!("{prefix}.env"),
                    v,
                    "a table of variable names to values",
                );
            }
        }
    }
    let working_dir = t
        .get("working_dir")
        .and_then(|v| r.string(&format!("{prefix}.working_dir"), v))
        .map(PathBuf::from);
    Some(ExecConfig {
        command: command?,
        mode: mode?,
        env,
        working_dir,
    })
}
