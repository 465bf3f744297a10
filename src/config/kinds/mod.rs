//! The settings of each configurable listener kind (`webhook`, `exec`,
//! `responder`), one file per kind, read from its `[listeners.NAME]` table
//! once the keys every kind shares are taken out. Secrets are named by a
//! file or an environment variable, never written in the config.

mod exec;
mod responder;
mod webhook;

pub use exec::{ExecConfig, ExecMode};
pub use responder::{ResponderConfig, ResponderRule, RuleTrigger};
pub use webhook::{WebhookConfig, WebhookFormat};

pub(super) use exec::read as read_exec;

/// The keys of each kind, besides those every instance has.
pub(super) mod keys {
    pub(in crate::config) use super::exec::KNOWN as EXEC;
    pub(in crate::config) use super::responder::KNOWN as RESPONDER;
    pub(in crate::config) use super::webhook::KNOWN as WEBHOOK;
}
pub(super) use responder::read as read_responder;
pub(super) use webhook::read as read_webhook;

/// What a `[listeners.NAME]` instance is.
#[derive(Debug, Clone)]
pub enum ListenerKind {
    /// A listener compiled into the binary (the built-ins, or one a custom
    /// binary registered), by its registered name.
    Registered(String),
    /// `kind = "webhook"`.
    Webhook(WebhookConfig),
    /// `kind = "exec"`.
    Exec(ExecConfig),
    /// `kind = "responder"`.
    Responder(ResponderConfig),
}

impl ListenerKind {
    /// The kind's name, as `kind = "…"` writes it.
    pub fn name(&self) -> &str {
        match self {
            ListenerKind::Registered(n) => n,
            ListenerKind::Webhook(_) => "webhook",
            ListenerKind::Exec(_) => "exec",
            ListenerKind::Responder(_) => "responder",
        }
    }

    /// Where the instance sends its work, for `list` (no secrets).
    pub fn target(&self) -> String {
        match self {
            ListenerKind::Registered(_) => "built in".to_owned(),
            ListenerKind::Webhook(w) => w.redacted_url(),
            ListenerKind::Exec(e) => format!("{} ({})", e.command.join(" "), e.mode.as_str()),
            ListenerKind::Responder(r) => format!("{} rule(s)", r.rules.len()),
        }
    }
}

/// The kinds a config may name besides the registered listeners.
pub const CONFIG_KINDS: &[&str] = &["webhook", "exec", "responder"];
