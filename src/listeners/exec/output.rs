//! Reading a child's pipes in bounded memory, whatever it writes: stdout
//! to its end with at most a cap kept ([`read_capped`]), the last bytes of
//! stderr ([`read_tail`], [`tail_text`]), lines of at most a given length
//! ([`LineReader`]); and [`LogBudget`], so a chatty child cannot flood the
//! daemon's log.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::time::Instant;

/// Reads `r` to its end (or a read error), keeping the first `limit`
/// bytes; the rest is read and dropped, so the writer never blocks. The
/// flag says whether anything was dropped.
pub(super) async fn read_capped<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut dropped = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, dropped),
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                dropped |= n > room;
            }
        }
    }
}

/// Reads `r` to its end (or a read error), keeping its last `limit` bytes.
pub(super) async fn read_tail<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trimmed once it holds twice the limit: memory stays
                // bounded and the copy is amortised.
                if tail.len() > 2 * limit {
                    tail.drain(..tail.len() - limit);
                }
            }
        }
    }
    if tail.len() > limit {
        tail.drain(..tail.len() - limit);
    }
    tail
}

/// The text of a stderr tail: invalid UTF-8 replaced, a character cut by
/// the tail's start dropped, surrounding whitespace trimmed.
pub(super) fn tail_text(tail: &[u8]) -> String {
    let start = tail
        .iter()
        .take(4)
        .position(|b| (*b & 0xC0) != 0x80)
        .unwrap_or(0);
    String::from_utf8_lossy(&tail[start..]).trim().to_owned()
}

/// One line read by a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// A line (without its `\n`) in the reader's buffer.
    Text,
    /// A line longer than the bound, read to its end; its length in bytes
    /// (the buffer holds its first `max` bytes).
    TooLong(usize),
}

/// Reads `\n`-terminated lines of at most `max` bytes; longer ones are
/// cut (read to their end and reported), never buffered whole.
pub(super) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    /// The last line read (cut to `max` bytes).
    pub(super) line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of `r`, at most `max` bytes each.
    pub(super) fn new(r: R, max: usize) -> LineReader<R> {
        LineReader {
            inner: BufReader::with_capacity(64 * 1024, r),
            max,
            line: Vec::new(),
        }
    }

    /// The next line; `None` at the end (a last line without `\n` counts)
    /// or on a read error.
    pub(super) async fn next(&mut self) -> Option<Line> {
        self.line.clear();
        let mut total = 0usize;
        loop {
            let buf = match self.inner.fill_buf().await {
                Ok(buf) => buf,
                Err(_) => return None,
            };
            if buf.is_empty() {
                return match total {
                    0 => None,
                    n if n > self.max => Some(Line::TooLong(n)),
                    _ => Some(Line::Text),
                };
            }
            let (part, used, end) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            total += part.len();
            let room = self.max.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            self.inner.consume(used);
            if end {
                return Some(if total > self.max {
                    Line::TooLong(total)
                } else {
                    Line::Text
                });
            }
        }
    }
}

/// At most `per_window` log lines per window; what is held back is
/// counted and reported when the next window opens.
#[derive(Debug)]
pub(super) struct LogBudget {
    per_window: u32,
    window: Duration,
    opened: Instant,
    used: u32,
    held_back: u64,
}

/// What [`LogBudget::take`] allows.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Allowance {
    /// Log it; `held_back` lines were not logged in the window before.
    Log {
        /// Lines suppressed since the last logged one.
        held_back: u64,
    },
    /// Do not log it (counted).
    Suppress,
}

impl LogBudget {
    /// A budget of `per_window` lines per `window`.
    pub(super) fn new(per_window: u32, window: Duration) -> LogBudget {
        LogBudget {
            per_window,
            window,
            opened: Instant::now(),
            used: 0,
            held_back: 0,
        }
    }

    /// Whether one more line may be logged now.
    pub(super) fn take(&mut self) -> Allowance {
        let now = Instant::now();
        if now.duration_since(self.opened) >= self.window {
            self.opened = now;
            self.used = 0;
        }
        if self.used >= self.per_window {
            self.held_back += 1;
            return Allowance::Suppress;
        }
        self.used += 1;
        Allowance::Log {
            held_back: std::mem::take(&mut self.held_back),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdout_past_the_cap_is_read_and_dropped() {
        let data = vec![b'x'; 100_000];
        let (kept, dropped) = read_capped(&data[..], 1000).await;
        assert_eq!(kept.len(), 1000);
        assert!(dropped);
        let (kept, dropped) = read_capped(&b"short"[..], 1000).await;
        assert_eq!((kept.as_slice(), dropped), (&b"short"[..], false));
    }

    #[tokio::test]
    async fn only_the_tail_of_stderr_is_kept() {
        let mut data = vec![b'a'; 50_000];
        data.extend_from_slice(b"the end\n");
        let tail = read_tail(&data[..], 4096).await;
        assert_eq!(tail.len(), 4096);
        assert!(tail_text(&tail).ends_with("aaathe end"));
    }

    #[test]
    fn a_character_cut_by_the_tail_is_dropped() {
        let text = "é and more".as_bytes();
        assert_eq!(tail_text(&text[1..]), "and more");
        assert_eq!(tail_text(b"  plain \n"), "plain");
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_next_ones_read() {
        let mut data = b"one\n".to_vec();
        data.extend(vec![b'z'; 300]);
        data.extend_from_slice(b"\ntwo\nlast");
        let mut lines = LineReader::new(&data[..], 100);
        assert_eq!(lines.next().await, Some(Line::Text));
        assert_eq!(lines.line, b"one");
        assert_eq!(lines.next().await, Some(Line::TooLong(300)));
        assert_eq!(lines.line, vec![b'z'; 100]);
        assert_eq!(lines.next().await, Some(Line::Text));
        assert_eq!(lines.line, b"two");
        assert_eq!(lines.next().await, Some(Line::Text));
        assert_eq!(lines.line, b"last");
        assert_eq!(lines.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_log_budget_holds_back_lines_and_reports_them_later() {
        let mut budget = LogBudget::new(2, Duration::from_secs(10));
        assert_eq!(budget.take(), Allowance::Log { held_back: 0 });
        assert_eq!(budget.take(), Allowance::Log { held_back: 0 });
        assert_eq!(budget.take(), Allowance::Suppress);
        assert_eq!(budget.take(), Allowance::Suppress);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.take(), Allowance::Log { held_back: 2 });
    }
}
