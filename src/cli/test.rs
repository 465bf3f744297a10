//! `test EVENTS.jsonl [--run [--dry]] [--expect FILE] [--pairs]`: the
//! configured filters, partitioning and routing applied to recorded events,
//! printing which listener instances would run each — and, with `--run`,
//! running them (built-ins and responders for their records and replies,
//! which are printed, never stored or sent; webhook and exec listeners for
//! real, or with `--dry` printing what they would send). With `--expect`,
//! the (event, listener) pairs are compared with a file of the expected
//! ones, so a filter change can be checked in CI.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use chrono::Utc;
use tokio::io::BufReader;

use crate::cli::args::TestArgs;
use crate::cli::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;
use crate::dispatch::filters::Filters;
use crate::dispatch::partition::Partitioner;
use crate::dispatch::{guard, route};
use crate::event::{Event, Recipient};
use crate::intake::{event_of, LineProblem, LineReader, LINE_LIMIT, READ_BUFFER};
use crate::listeners::{Context, DryRun, Instance, Listener, Record, Registry, ReplyTo};

/// One (event, listener) pair: the event's own `id`, or `line:N` without one.
type Pair = (String, String);

/// `test`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 when a file cannot be read or a listener cannot be
/// built, 1 when a line was skipped (malformed, not UTF-8, or longer than
/// `run --events`' line limit; each is printed with its number, and the
/// lines after it still run) or the pairs differ from `--expect`.
pub(crate) async fn cmd_test(
    config: &Config,
    registry: &Registry,
    args: &TestArgs,
) -> Result<(), Failure> {
    let names = args
        .listeners
        .clone()
        .unwrap_or_else(|| config.listeners.enabled.clone());
    let instances = Instance::build_all(registry, config, &names)?;
    // A fallback gets events only from its primary's failures.
    let listeners: Vec<Arc<dyn Listener>> = instances
        .iter()
        .filter(|i| !i.is_fallback_of_any(&instances))
        .map(|i| i.listener.clone())
        .collect();
    let filters = Filters::new(config);
    let partitioner = Partitioner::from_config(&config.scaling);
    let mut pairs: BTreeSet<Pair> = BTreeSet::new();
    let mut skipped = 0usize;
    let mut lines = open_lines(&args.events).await?;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| unreadable(&args.events, e))?
    {
        let number = line.number as i64;
        let event = match event_of(&line) {
            Ok(Some((e, _))) => e,
            Ok(None) => continue,
            Err(problem) => {
                skipped += 1;
                if !args.pairs {
                    match problem {
                        LineProblem::Malformed(e) => {
                            println!("line {number}: malformed, skipped: {e}");
                        }
                        other => println!("line {number}: skipped: {other}"),
                    }
                }
                continue;
            }
        };
        let key = event_key(event.raw(), number);
        let r = route(&listeners, &filters, &partitioner, &event, Utc::now());
        let runs: Vec<&Arc<dyn Listener>> = r
            .runs
            .iter()
            .filter(|(_, skip)| skip.is_none())
            .map(|(i, _)| &listeners[*i])
            .collect();
        for l in &runs {
            pairs.insert((key.clone(), l.name().to_owned()));
        }
        if args.pairs {
            continue;
        }
        let mut out = format!("line {number} ({}): ", describe(&event, &key));
        if !r.owned {
            let owner = r.owner.map_or_else(String::new, |o| format!(" {}", o + 1));
            let _ = write!(
                out,
                "owned by instance{owner} of the deployment, not this one"
            );
        } else if runs.is_empty() {
            out.push_str("no listener runs");
        } else {
            let names: Vec<&str> = runs.iter().map(|l| l.name()).collect();
            out.push_str(&names.join(", "));
        }
        let skipped: Vec<String> = r
            .runs
            .iter()
            .filter_map(|(i, s)| s.map(|s| format!("{} ({})", listeners[*i].name(), s.as_str())))
            .collect();
        if !skipped.is_empty() {
            let _ = write!(out, "; skipped: {}", skipped.join(", "));
        }
        println!("{out}");
        if args.run {
            for l in &runs {
                let timeout = instances
                    .iter()
                    .find(|i| i.name() == l.name())
                    .and_then(|i| i.timeout)
                    .unwrap_or(config.performance.handler_timeout);
                run_one(config, l.as_ref(), &event, number, args.dry, timeout).await;
            }
        }
    }
    if args.pairs {
        for (event, listener) in &pairs {
            println!("{event} {listener}");
        }
    }
    if let Some(path) = &args.expect {
        compare(&pairs, &read_expected(path)?)?;
        if !args.pairs {
            println!(
                "The (event, listener) pairs are those of {}.",
                path.display()
            );
        }
    }
    if skipped > 0 {
        return Err(Failure::new(
            EXIT_FAILURE,
            anyhow!(
                "{}: {skipped} line(s) skipped (malformed, not UTF-8 or too long)",
                args.events.display()
            ),
        ));
    }
    Ok(())
}

/// The lines of the events file, each bounded as `run --events` bounds
/// them (a line over the limit is read to its end without being kept).
async fn open_lines(path: &Path) -> Result<LineReader<BufReader<tokio::fs::File>>, Failure> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| unreadable(path, e))?;
    Ok(LineReader::new(
        BufReader::with_capacity(READ_BUFFER, file),
        LINE_LIMIT,
    ))
}

/// Exit 2: the file cannot be read.
fn unreadable(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        EXIT_CONFIG,
        anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
    )
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))
}

/// The event's own `id` when the line has an integer one, else `line:N`.
fn event_key(line: &str, number: i64) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<i64>,
    }
    match serde_json::from_str::<Id>(line) {
        Ok(Id { id: Some(id) }) => id.to_string(),
        _ => format!("line:{number}"),
    }
}

/// `id 17, message in #ops > deploys from a@x` and the like.
fn describe(event: &Event, key: &str) -> String {
    let mut kind = event.event_type().to_owned();
    if let Some(op) = event.op() {
        let _ = write!(kind, "/{op}");
    }
    let mut out = format!("id {key}, {kind}");
    if let Some(m) = event.message() {
        match &m.recipient {
            Recipient::Channel { channel, topic, .. } => {
                let _ = write!(out, " in #{channel} > {topic}");
            }
            Recipient::Direct { .. } => out.push_str(" (direct)"),
        }
        let _ = write!(out, " from {}", m.sender_email);
    }
    out
}

/// Runs (or describes) one listener on one event and prints the outcome.
async fn run_one(
    config: &Config,
    listener: &dyn Listener,
    event: &Event,
    line: i64,
    dry: bool,
    timeout: Duration,
) {
    let ctx = Context {
        org: Arc::from(config.scaling.instance_id.as_str()),
        inbox_id: line,
        bot_user_id: None,
        attempt: 1,
        bot: None,
        received_at: None,
        fallback_of: None,
    };
    let name = listener.name();
    if dry {
        match listener.dry_run(event, &ctx) {
            DryRun::Handle => {}
            DryRun::Describe(what) => {
                println!("  {name}: would {what}");
                return;
            }
            DryRun::Unsupported => {
                println!("  {name}: not run (--dry cannot show its effects without causing them)");
                return;
            }
        }
    }
    match guard(listener, event, &ctx, timeout).await {
        Ok(records) if records.is_empty() => println!("  {name}: ok"),
        Ok(records) => {
            for r in &records {
                println!("  {name}: {}", record_line(r));
            }
        }
        Err(e) => println!("  {name}: failed: {e}"),
    }
}

/// One record, as `test --run` prints it.
fn record_line(r: &Record) -> String {
    match r {
        Record::Reply(reply) => {
            let to = match &reply.to {
                ReplyTo::Channel { channel, topic } => format!("#{channel} > {topic}"),
                ReplyTo::Direct { user_ids } => {
                    let ids: Vec<String> = user_ids.iter().map(i64::to_string).collect();
                    format!("direct message to {}", ids.join(","))
                }
            };
            format!("reply to {to}: {}", reply.content)
        }
        Record::Data { key, value } => format!("data {key} = {value}"),
        Record::MessageLog(m) => format!("message log row for message {}", m.message_id),
        Record::Activity(a) => format!("activity of user {} ({:?})", a.user_id, a.kind),
        Record::MessageEdit(e) => format!("message log edit of message {}", e.message_id),
        Record::MessageMove(m) => format!("message log move of {} message(s)", m.message_ids.len()),
        Record::MessageDelete(d) => {
            format!("message log deletion of {} message(s)", d.message_ids.len())
        }
    }
}

/// The pairs of an `--expect` file: `EVENT LISTENER` per line, `#` comments.
fn read_expected(path: &Path) -> Result<BTreeSet<Pair>, Failure> {
    let text = read(path)?;
    let mut out = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(event), Some(listener), None) => {
                out.insert((event.to_owned(), listener.to_owned()));
            }
            _ => {
                return Err(Failure::new(
                    EXIT_CONFIG,
                    anyhow!(
                        "{} line {}: expected `EVENT_ID LISTENER`, got `{line}`",
                        path.display(),
                        n + 1
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// Fails with both differences listed when `got` is not `expected`.
fn compare(got: &BTreeSet<Pair>, expected: &BTreeSet<Pair>) -> Result<(), Failure> {
    if got == expected {
        return Ok(());
    }
    let mut why = String::from("the (event, listener) pairs differ from the expected ones:");
    for (e, l) in expected.difference(got) {
        let _ = write!(why, "\n  expected, not run: {e} {l}");
    }
    for (e, l) in got.difference(expected) {
        let _ = write!(why, "\n  run, not expected: {e} {l}");
    }
    Err(Failure::new(EXIT_FAILURE, anyhow!(why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> BTreeSet<Pair> {
        items
            .iter()
            .map(|(e, l)| ((*e).to_owned(), (*l).to_owned()))
            .collect()
    }

    #[test]
    fn a_difference_names_what_is_missing_and_what_is_extra() {
        let got = pairs(&[("1", "a"), ("2", "b")]);
        let expected = pairs(&[("1", "a"), ("3", "b")]);
        let err = compare(&got, &expected).unwrap_err().error.to_string();
        assert!(err.contains("expected, not run: 3 b"), "{err}");
        assert!(err.contains("run, not expected: 2 b"), "{err}");
        assert!(compare(&got, &got).is_ok());
    }

    #[test]
    fn an_event_without_an_id_is_named_by_its_line() {
        assert_eq!(event_key(r#"{"type":"heartbeat","id":7}"#, 3), "7");
        assert_eq!(event_key(r#"{"type":"heartbeat"}"#, 3), "line:3");
    }
}
