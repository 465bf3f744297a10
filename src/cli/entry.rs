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
use crate::listeners::Registry;
use crate::telemetry;

/// Runs the command line with the listeners of `registry`.
pub fn main(registry: Registry) -> ExitCode {
    crate::app::malloc_tuning::tune();
    let cli = Cli::parse();
    // check-config reads the file itself: a problem in it must not hide
    // the others (the credentials it names).
    let outcome = match cli.command {
        Command::CheckConfig => cmd_check_config(cli.config.as_deref(), &registry),
        _ => load_and_run(cli, registry),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Loads the configuration, sets up logging, and runs the subcommand on a
/// tokio runtime.
fn load_and_run(cli: Cli, registry: Registry) -> Result<(), Failure> {
    load_config(&cli, &registry).and_then(|config| {
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
    })
}
