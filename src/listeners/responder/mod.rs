//! `kind = "responder"`: ordered rules that answer matching messages with
//! a template, through the reply outbox.

use std::sync::Arc;

use crate::config::ResponderConfig;
use crate::listeners::Listener;

/// The responder instance `name`.
pub(super) fn build(name: &str, _config: &ResponderConfig) -> Result<Arc<dyn Listener>, String> {
    Err(format!("the responder kind is not built yet ({name})"))
}
