//! [`Progress`]: how a long subcommand (`cleanup`, `replay`, `aggregate`,
//! `deadletters retry`) shows how far it is: a bar on stderr when stderr
//! is a terminal (as `rotate-key` draws one), otherwise plain log lines, at
//! the start, at each tenth of the work and at the end, so that cron mail
//! and journald get a few lines rather than terminal escapes.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress through `total` steps of one piece of work.
pub(super) struct Progress {
    /// The bar, on a terminal only.
    bar: Option<ProgressBar>,
    /// What is being done, for the log lines.
    what: &'static str,
    total: u64,
    done: u64,
    /// The next step count that writes a log line.
    next_line: u64,
}

impl Progress {
    /// Progress through `total` `unit`s of `what` (e.g. "Retrying dead
    /// letters", "dead letters"): a bar on a terminal, else log lines.
    pub(super) fn new(what: &'static str, unit: &'static str, total: u64) -> Progress {
        Progress::with_terminal(what, unit, total, std::io::stderr().is_terminal())
    }

    /// [`Progress::new`], told whether stderr is a terminal.
    fn with_terminal(
        what: &'static str,
        unit: &'static str,
        total: u64,
        terminal: bool,
    ) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!("{{msg:24}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            bar
        });
        if bar.is_none() {
            tracing::info!(total, "{what}: started");
        }
        Progress {
            bar,
            what,
            total,
            done: 0,
            next_line: step(total),
        }
    }

    /// Names the part being done now (e.g. the table being cleaned).
    pub(super) fn set_message(&self, msg: &'static str) {
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None => tracing::info!(done = self.done, total = self.total, "{}: {msg}", self.what),
        }
    }

    /// `n` more steps done.
    pub(super) fn inc(&mut self, n: u64) {
        self.done = self.done.saturating_add(n);
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.done >= self.next_line && self.done < self.total => {
                tracing::info!(done = self.done, total = self.total, "{}", self.what);
                while self.next_line <= self.done {
                    self.next_line = self.next_line.saturating_add(step(self.total));
                }
            }
            None => {}
        }
    }

    /// The work is over: the bar is cleared (the command prints its own
    /// summary), or a last log line says how far it got.
    pub(super) fn finish(self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => tracing::info!(done = self.done, total = self.total, "{}: done", self.what),
        }
    }

    /// How many steps are done.
    #[cfg(test)]
    fn done(&self) -> u64 {
        self.done
    }
}

/// A tenth of `total`, at least one step.
fn step(total: u64) -> u64 {
    (total / 10).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_there_is_no_bar_and_a_line_every_tenth() {
        let mut p = Progress::with_terminal("Retrying", "dead letters", 100, false);
        assert!(p.bar.is_none());
        assert_eq!(p.next_line, 10);
        p.inc(25);
        assert_eq!(p.next_line, 30, "one line for the jump, the next at 30");
        p.inc(5);
        assert_eq!(p.next_line, 40);
        assert_eq!(p.done(), 30);
        p.finish();
    }

    #[test]
    fn on_a_terminal_the_bar_counts_the_steps() {
        let mut p = Progress::with_terminal("Retrying", "dead letters", 3, true);
        p.inc(2);
        assert_eq!(p.bar.as_ref().map(ProgressBar::position), Some(2));
        assert_eq!(p.bar.as_ref().and_then(ProgressBar::length), Some(3));
        p.finish();
    }
}
