//! The `zulip-event-listeners` binary: parse the command line, load the
//! configuration, set up logging, run the subcommand, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use zulip_event_listeners::cli::{self, Cli, Failure, EXIT_CONFIG, EXIT_FAILURE};
use zulip_event_listeners::{listeners::Registry, telemetry};

fn main() -> ExitCode {
    zulip_event_listeners::app::malloc_tuning::tune();
    let cli = Cli::parse();
    let registry = Registry::builtin();
    let outcome = cli::load_config(&cli, &registry).and_then(|config| {
        let log_file = telemetry::init(&config.logging).map_err(|e| {
            Failure::new(
                EXIT_CONFIG,
                anyhow::anyhow!("cannot open the log file: {e}"),
            )
        })?;
        let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        runtime.block_on(async {
            telemetry::reopen_on_sighup(log_file);
            cli::run(cli, config, registry).await
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
