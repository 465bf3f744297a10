//! Test support: the in-process [`TestApp`], the fake Zulip server, fresh
//! databases, config files, the daemon as a process, test listeners, a
//! clock that jumps, a tmpfs that fills up, TLS in front of the fake, the real RabbitMQ
//! under a prefix of each test's own, and [`both_backends!`].
#![allow(dead_code)]

mod app;
mod backends;
mod clock;
mod config;
mod db;
mod eventually;
pub mod fake_zulip;
mod otlp;
mod process;
mod rabbit;
mod receiver;
mod store;
mod tcp_proxy;
mod test_listeners;
mod tls_proxy;
mod tmpfs;
mod traffic;

pub use app::*;
pub(crate) use backends::both_backends;
pub use clock::*;
pub use config::*;
pub use db::*;
pub use eventually::*;
pub use otlp::*;
pub use process::*;
pub use rabbit::*;
pub use receiver::*;
pub use store::*;
pub use tcp_proxy::*;
pub use test_listeners::*;
pub use tls_proxy::*;
pub use tmpfs::*;
pub use traffic::*;
