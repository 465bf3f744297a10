//! `top`: a live terminal view of the running daemon, read from its own
//! `/metrics` and `/health` (`client.rs`), the Prometheus text read by
//! `exposition.rs`, turned into figures by `figures.rs` (rates and
//! percentiles between two scrapes), drawn by `view.rs` (ratatui, fitted
//! to 80×24) and kept live by `live.rs` (crossterm: raw mode, keys).
//! `--once` prints one frame as plain text instead.

mod client;
mod command;
mod exposition;
mod figures;
mod live;
mod view;

#[cfg(test)]
mod tests;

pub(crate) use command::{cmd_top, parse_interval};
