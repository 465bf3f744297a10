//! Test support: the fake Zulip server, fresh databases, config files,
//! and helpers to run the daemon in-process or as a process.
#![allow(dead_code)]

pub mod fake_zulip;
mod helpers;
mod tcp_proxy;
mod test_listeners;

pub use helpers::*;
pub use tcp_proxy::*;
pub use test_listeners::*;
