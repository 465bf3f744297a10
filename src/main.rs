//! The `zulip-event-listeners` binary: the command line with the built-in
//! listeners ([`zulip_event_listeners::cli::main`] does the rest).

use std::process::ExitCode;

use zulip_event_listeners::listeners::Registry;

fn main() -> ExitCode {
    zulip_event_listeners::cli::main(Registry::builtin())
}
