//! The reply sender: replies listeners returned (`Record::Reply`), already
//! committed to `event_listeners_replyoutbox` with their run, are posted to
//! Zulip exactly once.
//!
//! - `sender`: the task — woken by the recorder (replies committed), by a
//!   tick, stopped with the services — and one pass over the open rows in
//!   id order, each posted with the current queue id.
//! - `post`: one POST: the row marked `sending` and committed first, then
//!   `POST /messages` with `queue_id` and `local_id = "zel-<id>"`, then
//!   `sent`, `failed`, back to `pending` (refused unprocessed) or left
//!   `sending` (the answer lost).
//! - `confirm`: what a `sending` row whose answer was lost (a crash, a
//!   dropped connection) becomes: its echo in the inbox makes it `sent`;
//!   on a queue that is gone it is resent; on the live queue it waits for
//!   a committed poll that began after it, then is resent if no echo came.
//! - `notes`: each outcome's log line and metric.

mod confirm;
mod notes;
mod post;
mod sender;

pub(crate) use sender::{echo_caveat, ReplySender};
