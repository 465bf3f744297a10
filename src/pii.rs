//! What a log line may say about people: [`Pii`] wraps text that may carry
//! what someone wrote or who they are (message content, topic names,
//! emails, full names, raw event JSON, a command's stderr, a receiver's
//! answer, a listener's error text, which may quote any of these) and
//! prints `[redacted: N characters]` in its place while
//! `[data_protection] log_sanitization` is on, ids being logged as they are.
//!
//! The switch is process-wide, as the log subscriber it goes with: the
//! command line sets it from the configuration when it installs the
//! subscriber (`cli/entry.rs`); until then, and in a program that embeds
//! the daemon without the command line, it is on. It is read with every
//! [`Pii`] printed, never while a value is stored: the database keeps
//! errors whole (it holds the messages themselves anyway).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

static SANITIZE: AtomicBool = AtomicBool::new(true);

/// Turns log sanitization on or off for the whole process.
pub(crate) fn set_log_sanitization(on: bool) {
    SANITIZE.store(on, Ordering::Relaxed);
}

/// Text that is printed in a log line only when sanitization is off.
pub(crate) struct Pii<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(&self.0, SANITIZE.load(Ordering::Relaxed), f)
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `value`, or when `sanitize`, how many characters it has.
fn show(value: &dyn fmt::Display, sanitize: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if !sanitize {
        return value.fmt(f);
    }
    let mut count = CharCount(0);
    fmt::write(&mut count, format_args!("{value}"))?;
    write!(f, "[redacted: {} characters]", count.0)
}

/// A writer that only counts the characters written to it.
struct CharCount(usize);

impl fmt::Write for CharCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.chars().count();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show` as a string (the process-wide switch is left alone: other
    /// tests run beside these).
    struct Shown<'a>(&'a str, bool);

    impl fmt::Display for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            show(&self.0, self.1, f)
        }
    }

    #[test]
    fn sanitized_text_shows_only_its_length_in_characters() {
        let text = "héllo jane@example.com";

        assert_eq!(Shown(text, true).to_string(), "[redacted: 22 characters]");
    }

    #[test]
    fn unsanitized_text_is_shown_as_it_is() {
        assert_eq!(Shown("héllo", false).to_string(), "héllo");
    }
}
