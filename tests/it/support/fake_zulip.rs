//! A stateful fake Zulip server on loopback for integration tests and benchmarks.
//!
//! It follows the contract in `shared/zulip-events-api.md` (§2-§7): Basic auth,
//! `POST /register`, `GET`/`DELETE /events` with Zulip's acknowledgement,
//! pruning, supersede, heartbeat and idle-expiry rules, `GET /users/me`,
//! `GET /server_settings`, `GET /messages` (paged like Zulip's
//! `limit_query_to_range`), `POST /messages` (with the local echo of
//! `local_id` on the sender's queue) and `GET /users/{id}`. Tests drive it
//! through [`FakeZulip`]: send messages (also out of id order), edit, move
//! and delete them, push arbitrary events (one by one or as one page) or a
//! synthetic backlog of millions, hold polls while a backlog builds up,
//! expire queues, pause heartbeats, inject faults with a [`FaultPlan`],
//! shape `GET /events` bodies (slow, cut or stalled mid-way, keys
//! reordered, or exact raw bytes) with [`BodyFault`], and inspect every request via
//! [`RequestRecord`]. It models a single user, the bot, which receives
//! every message sent, with Zulip's rate limit ([`RateLimit`]), flagged as
//! Zulip flags the bot's copy (`read` for its own, `mentioned` for an
//! @-mention of it, the wildcard flags for @**all**).

#![allow(dead_code)]

// The children are named by path so that this file can also be included
// on its own with `#[path]` (as benches/pipeline.rs does), where child
// modules would otherwise be looked up beside it.
#[path = "fake_zulip/api.rs"]
mod api;
#[path = "fake_zulip/body.rs"]
mod body;
#[path = "fake_zulip/edits.rs"]
mod edits;
#[path = "fake_zulip/faults.rs"]
mod faults;
#[path = "fake_zulip/http.rs"]
mod http;
#[path = "fake_zulip/messages.rs"]
mod messages;
#[path = "fake_zulip/narrow.rs"]
mod narrow;
#[path = "fake_zulip/options.rs"]
mod options;
#[path = "fake_zulip/presence.rs"]
mod presence;
#[path = "fake_zulip/queues.rs"]
mod queues;
#[path = "fake_zulip/rate_limit.rs"]
mod rate_limit;
#[path = "fake_zulip/server.rs"]
mod server;

// Named by no benchmark, which includes this file too.
#[allow(unused_imports)]
pub use body::{BodyFault, BodyGate};
pub use faults::{Fault, FaultPlan};
// Unused by the benchmark, which includes this file on its own.
#[allow(unused_imports)]
pub use messages::{SendFault, SentMessage};
pub use options::FakeOptions;
// Named by the integration tests, not by the benchmark that includes this file.
#[allow(unused_imports)]
pub use rate_limit::{RateLimit, RateLimitModel};
// Named by no test today, but part of what [`FakeZulip::requests`] returns.
#[allow(unused_imports)]
pub use queues::RequestRecord;
pub use server::FakeZulip;
