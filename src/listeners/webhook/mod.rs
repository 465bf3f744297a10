//! `kind = "webhook"`: each matching event POSTed to a URL, signed, with
//! an `Idempotency-Key`; a 2xx JSON `{"content": …}` answer is a reply.
//!
//! `hook.rs` is the listener (one request per run); `outgoing.rs` the
//! `zulip_outgoing` payload; `signature.rs` the HMAC header; `outcome.rs`
//! what a status means; `reply.rs` what a 2xx body asks for; `client.rs`
//! the HTTP client the instances share.

mod client;
mod hook;
mod outcome;
mod outgoing;
mod reply;
mod signature;

pub(super) use client::http_client;
pub(super) use hook::build;
