//! The tap: what enters dispatch and how each run ends, streamed live to
//! whoever asks (`GET /admin/tap`, the `tap` subcommand).
//!
//! - `hub`: [`Tap`], the fan-out from the dispatchers to the subscribers;
//!   a publish costs one atomic load while nobody taps, and a subscriber
//!   that does not keep up loses lines (counted), never slows dispatch.
//! - `redact`: an event's JSON with what people wrote and who they are
//!   replaced by `[redacted: N characters]`.

mod hub;
mod redact;

pub(crate) use hub::{Subscription, Tap, TapFilter, Tapped};
pub(crate) use redact::redact_event;
