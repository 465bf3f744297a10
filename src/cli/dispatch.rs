//! Loading the configuration the command line names, and [`run`]: each
//! [`Command`] handed to the file of its subcommand.

use crate::cli::aggregate::cmd_aggregate;
use crate::cli::args::{Cli, Command};
use crate::cli::audit::cmd_audit;
use crate::cli::check_config::cmd_check_config;
use crate::cli::cleanup::cmd_cleanup;
use crate::cli::cursor::cmd_cursor;
use crate::cli::deadletters::cmd_deadletters;
use crate::cli::exit::Failure;
use crate::cli::generate::{cmd_completions, cmd_man};
use crate::cli::list::cmd_list;
use crate::cli::migrate::cmd_migrate;
use crate::cli::replay::cmd_replay;
use crate::cli::rotate_key::cmd_rotate_key;
use crate::cli::run::cmd_run;
use crate::cli::set_enabled::cmd_set_enabled;
use crate::cli::stats::cmd_stats;
use crate::cli::tap::cmd_tap;
use crate::cli::test::cmd_test;
use crate::cli::top::cmd_top;
use crate::config::Config;
use crate::listeners::Registry;

/// Loads the configuration named on the command line, or the defaults.
///
/// # Errors
///
/// A [`Failure`] with [`EXIT_CONFIG`](crate::cli::EXIT_CONFIG) listing every problem.
pub fn load_config(cli: &Cli, registry: &Registry) -> Result<Config, Failure> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path, &registry.names())?,
        None => Config::default(),
    };
    config.file_permissions = cli.file_permissions();
    Ok(config)
}

/// Runs one subcommand.
///
/// # Errors
///
/// A [`Failure`] carrying the exit code.
pub async fn run(cli: Cli, config: Config, registry: Registry) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => cmd_run(args, cli.config.as_deref(), &config, &registry).await,
        Command::List => cmd_list(&config, &registry).await,
        Command::Migrate => cmd_migrate(&config).await,
        Command::Cleanup { days } => cmd_cleanup(&config, days).await,
        Command::CheckConfig => {
            cmd_check_config(cli.config.as_deref(), cli.file_permissions(), &registry)
        }
        Command::Aggregate { since } => cmd_aggregate(&config, since).await,
        Command::Stats { listener, since } => cmd_stats(&config, listener.as_deref(), since).await,
        Command::Enable { name } => cmd_set_enabled(&config, &registry, &name, true, None).await,
        Command::Disable { name, reason } => {
            cmd_set_enabled(&config, &registry, &name, false, reason.as_deref()).await
        }
        Command::Replay(args) => cmd_replay(&config, &registry, &args).await,
        Command::Audit { since, limit, json } => cmd_audit(&config, since, limit, json).await,
        Command::Cursor { action } => cmd_cursor(&config, &registry, action).await,
        Command::Tap(args) => cmd_tap(&config, &args).await,
        Command::Deadletters { action } => cmd_deadletters(&config, &registry, action).await,
        Command::Test(args) => cmd_test(&config, &registry, &args).await,
        Command::RotateKey {
            new_key_file,
            batch_size,
            pause,
        } => cmd_rotate_key(&config, &new_key_file, batch_size, pause).await,
        Command::Top { interval, once } => cmd_top(&config, interval, once).await,
        Command::Completions { shell } => cmd_completions(shell),
        Command::Man => cmd_man(),
    }
}
