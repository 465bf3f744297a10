//! `top`'s entry: the live view, or `--once`'s frame of two scrapes;
//! the `--interval` parser; and the exit code of each [`TopError`].

use std::time::{Duration, Instant};

use super::client::{DaemonClient, TopError};
use super::figures::Figures;
use super::live;
use super::view::{plain_frame, View};
use crate::cli::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;

/// The width of `--once`'s frame.
const ONCE_WIDTH: u16 = 80;

/// `top [--interval SECS] [--once]`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 when the configuration leaves nothing to read
/// (no HTTP server, an unreadable token the endpoints need), 1 when the
/// daemon cannot be reached or the terminal used.
pub(crate) async fn cmd_top(
    config: &Config,
    interval: Duration,
    once: bool,
) -> Result<(), Failure> {
    let client = DaemonClient::from_config(config).map_err(failure)?;
    if once {
        let text = once_frame(&client, interval).await.map_err(failure)?;
        print!("{text}");
        return Ok(());
    }
    live::run_live(&client, interval).await.map_err(failure)
}

/// Two scrapes `interval` apart, as one plain-text frame.
async fn once_frame(client: &DaemonClient, interval: Duration) -> Result<String, TopError> {
    let first = client.scrape().await?;
    let began = Instant::now();
    tokio::time::sleep(interval).await;
    let second = client.scrape().await?;
    let figures = Figures::between(Some(&first), &second, began.elapsed());
    let view = View {
        address: client.address(),
        interval,
        figures: &figures,
        scroll: 0,
        error: None,
    };
    Ok(plain_frame(&view, ONCE_WIDTH)?)
}

fn failure(e: TopError) -> Failure {
    let code = match e {
        TopError::HttpOff | TopError::Token(_) => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    };
    Failure::new(code, e)
}

/// `--interval`: seconds (a decimal number), at least 0.1.
pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("the interval must be 0.1 to 3600 seconds, got {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}
