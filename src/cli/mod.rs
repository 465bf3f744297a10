//! The command line: [`main`], the whole binary (`entry.rs`); clap's
//! definitions (`args.rs`); the exit codes and the mapping of each
//! boundary's error to one (`exit.rs`); [`run`] handing each subcommand to
//! its own file (`dispatch.rs`); and one file per subcommand (`generate.rs`: completions and the man page).

mod actor;
mod age;
mod aggregate;
mod args;
mod audit;
mod check_config;
mod cleanup;
mod cursor;
mod deadletter_filter;
mod deadletters;
mod deadletters_retry;
mod dispatch;
mod entry;
mod exit;
mod generate;
mod list;
mod migrate;
mod progress;
mod replay;
mod rotate_key;
mod run;
mod set_enabled;
pub mod stats;
mod tap;
mod test;
mod top;

pub use age::{format_age, parse_age, parse_since, AgeError, SinceError};
pub use args::{
    Cli, Command, CursorCommand, DeadLetterArgs, DeadlettersCommand, ReplayArgs, RunArgs, TapArgs,
    TestArgs,
};
pub use dispatch::{load_config, run};
pub use entry::main;
pub use exit::{Failure, EXIT_AUTH, EXIT_CONFIG, EXIT_DATABASE, EXIT_FAILURE, EXIT_OK};
