//! [`main`]: the whole binary behind `src/main.rs` — tune the allocator,
//! parse the command line, load the configuration, set up logging, run the
//! subcommand on a tokio runtime, print the error and return its exit code.
//! A binary that links its own listeners calls it with its own [`Registry`].

use std::process::ExitCode;

use clap::Parser;

use super::args::{Cli, Command};
use super::dispatch::{load_config, run};
use super::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use crate::listeners::Registry;
use crate::telemetry;

/// Runs the command line with the listeners of `registry`.
pub fn main(registry: Registry) -> ExitCode {
    crate::app::malloc_tuning::tune();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        quiet_on_closed_pipe();
    }
    let outcome = load_config(&cli, &registry).and_then(|config| {
        let log_file = telemetry::init(&config.logging).map_err(|e| {
            Failure::new(
                EXIT_CONFIG,
                anyhow::anyhow!("cannot open the log file: {e}"),
            )
        })?;
        let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        runtime.block_on(async {
            telemetry::reopen_on_sighup(log_file);
            run(cli, config, registry).await
        })
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
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
