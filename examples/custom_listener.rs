//! A binary with its own listener and every subcommand of the daemon.
//!
//! `last_word` keeps, per channel, the last message seen (its id, sender
//! and topic) as a `Record::Data` row of `event_listeners_listenerdata`:
//! written in the same transaction as the run's event-log row, so it is
//! exactly once even when the daemon is killed mid-batch.
//!
//! ```sh
//! cargo run --example custom_listener -- --config my.toml list
//! cargo run --example custom_listener -- --config my.toml run
//! ```
//! with `enabled = ["last_word", ...]` under `[listeners]` in `my.toml`.

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use zulip_event_listeners::event::{Event, Recipient};
use zulip_event_listeners::listeners::{
    Context, DryRun, Listener, ListenerError, Record, Registry,
};

/// The last message of each channel, as listener data.
struct LastWord;

#[async_trait]
impl Listener for LastWord {
    fn name(&self) -> &str {
        "last_word"
    }

    fn description(&self) -> &str {
        "Keeps the last message of each channel in event_listeners_listenerdata"
    }

    fn event_types(&self) -> &[&str] {
        &["message"]
    }

    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let Some(m) = event.message() else {
            return Err(ListenerError::permanent(
                "a message event without its message",
            ));
        };
        if Some(m.sender_id) == ctx.bot_user_id {
            return Ok(Vec::new());
        }
        let Recipient::Channel { channel, topic, .. } = &m.recipient else {
            return Ok(Vec::new());
        };
        Ok(vec![Record::Data {
            key: format!("channel:{channel}"),
            value: json!({
                "message_id": m.id,
                "sender_email": m.sender_email,
                "topic": topic,
                "timestamp": m.timestamp,
            }),
        }])
    }

    // Its only effect is the record it returns: `test --run --dry` may run it.
    fn dry_run(&self, _event: &Event, _ctx: &Context) -> DryRun {
        DryRun::Handle
    }
}

fn main() -> ExitCode {
    let mut registry = Registry::builtin();
    if let Err(e) = registry.register(Arc::new(LastWord)) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    zulip_event_listeners::cli::main(registry)
}
