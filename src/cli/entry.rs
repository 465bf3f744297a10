//! [`main`]: the whole binary behind `src/main.rs` — tune the allocator,
//! parse the command line, load the configuration, set up logging, run the
//! subcommand on a tokio runtime, print the error and return its exit code.
//! A binary that links its own listeners calls it with its own [`Registry`].

use std::process::ExitCode;

use clap::Parser;

use super::args::{Cli, Command};
use super::check_config::cmd_check_config;
use super::dispatch::{load_config, run};
use super::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use super::generate::{cmd_completions, cmd_man};
use crate::listeners::Registry;
use crate::telemetry;

/// Runs the command line with the listeners of `registry`.
pub fn main(registry: Registry) -> ExitCode {
    crate::app::malloc_tuning::tune();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run(_)) {
        crate::app::malloc_tuning::trim_periodically();
    } else {
        quiet_on_closed_pipe();
    }
    // check-config reads the file itself: a problem in it must not hide
    // the others (the credentials it names). Completions and the man page
    // need no configuration at all.
    let outcome = match cli.command {
        Command::CheckConfig => {
            cmd_check_config(cli.config.as_deref(), cli.file_permissions(), &registry)
        }
        Command::Completions { shell } => cmd_completions(shell),
        Command::Man => cmd_man(),
        _ => load_and_run(cli, registry),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", error_text(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// Loads the configuration, sets up logging, and runs the subcommand on a
/// tokio runtime.
fn load_and_run(cli: Cli, registry: Registry) -> Result<(), Failure> {
    load_config(&cli, &registry).and_then(|config| {
        // With the subscriber: what the log lines may say is decided once
        // for the process, before the first of them.
        let dp = &config.data_protection;
        crate::pii::set_log_policy(dp.log_sanitization, dp.max_content_length);
        crate::pii::install_panic_hook();
        let telemetry = telemetry::init(&config.logging, &config.telemetry)
            .map_err(|e| Failure::new(EXIT_CONFIG, anyhow::anyhow!("{e}")))?;
        let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        let outcome = runtime.block_on(async {
            telemetry::reopen_on_sighup(telemetry.log_file);
            run(cli, config, registry).await
        });
        // Last: the spans of the runs the drain waited for go out too.
        if let Some(tracing) = telemetry.tracing {
            tracing.shutdown();
        }
        outcome
    })
}

/// A report piped into `head` ends quietly when the pipe closes, as `ls`
/// and `grep` do, instead of panicking in `println!`. Not for `run`: there
/// a closed socket must be an error the daemon handles, not a signal that
/// kills it.
fn quiet_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default action is
    // async-signal-safe and done before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes, `: `-separated, each cause left out when the
/// text before already says it (most errors here put their source's text
/// in their own message, which `{:#}` would print again).
fn error_text(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot serve on 127.0.0.1:1: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Outer(io)).context("cannot start");
        assert_eq!(
            error_text(&e),
            "cannot start: cannot serve on 127.0.0.1:1: Address already in use"
        );
    }
}
