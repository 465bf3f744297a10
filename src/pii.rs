//! What a log line may say about people: [`Pii`] wraps text that may carry
//! what someone wrote or who they are (message content, topic names,
//! emails, full names, raw event JSON, a command's stderr, a receiver's
//! answer, a listener's error text, which may quote any of these) and
//! prints `[redacted: N characters]` in its place while
//! `[data_protection] log_sanitization` is on, ids being logged as they are.
//!
//! With sanitization off, `[data_protection] max_content_length` (when
//! set) still cuts each such text to that many characters, marked
//! `… [truncated: N characters]`: the guide's "limit logged content".
//!
//! The switch is process-wide, as the log subscriber it goes with: the
//! command line sets it from the configuration when it installs the
//! subscriber (`cli/entry.rs`); until then, and in a program that embeds
//! the daemon without the command line, it is on. It is read with every
//! [`Pii`] printed, never while a value is stored: the database keeps
//! errors whole (it holds the messages themselves anyway).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static SANITIZE: AtomicBool = AtomicBool::new(true);

/// The most characters of a [`Pii`] text logged; `usize::MAX` for no limit.
static MAX_LOGGED: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets, for the whole process, whether log lines are sanitized and, when
/// they are not, how many characters of each text they may carry.
pub(crate) fn set_log_policy(sanitize: bool, max_length: Option<usize>) {
    SANITIZE.store(sanitize, Ordering::Relaxed);
    MAX_LOGGED.store(max_length.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// The first `max` characters of `text` when it has more, cut at a
/// character boundary; `None` when it fits.
pub(crate) fn cut_chars(text: &str, max: usize) -> Option<&str> {
    text.char_indices().nth(max).map(|(i, _)| &text[..i])
}

/// The marker that replaces `text` where it may not be shown (log lines,
/// the tap).
pub(crate) fn redacted(text: &str) -> String {
    format!("[redacted: {} characters]", text.chars().count())
}

/// Text that is printed in a log line only when sanitization is off.
pub(crate) struct Pii<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = Policy {
            sanitize: SANITIZE.load(Ordering::Relaxed),
            max_length: MAX_LOGGED.load(Ordering::Relaxed),
        };
        show(&self.0, policy, f)
    }
}

/// What a log line may show of a text.
#[derive(Clone, Copy)]
struct Policy {
    sanitize: bool,
    max_length: usize,
}

/// `value` (at most `max_length` characters of it), or when `sanitize`,
/// how many characters it has.
fn show(value: &dyn fmt::Display, policy: Policy, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if policy.sanitize {
        let mut count = CharCount(0);
        fmt::write(&mut count, format_args!("{value}"))?;
        return write!(f, "[redacted: {} characters]", count.0);
    }
    if policy.max_length == usize::MAX {
        return value.fmt(f);
    }
    let text = value.to_string();
    match cut_chars(&text, policy.max_length) {
        Some(kept) => write!(
            f,
            "{kept}… [truncated: {} characters]",
            text.chars().count()
        ),
        None => f.write_str(&text),
    }
}

/// Installs a panic hook that prints a panic's message through [`Pii`]:
/// a custom listener's panic may quote what it was handling, and Rust's
/// default hook writes it to stderr, beside the log. The thread and the
/// place are printed as they are; the default hook (with its backtrace)
/// still runs when sanitization is off.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_panic_hook_now);
}

fn install_panic_hook_now() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !SANITIZE.load(Ordering::Relaxed) {
            return default(info);
        }
        let thread = std::thread::current();
        let place = info.location().map(ToString::to_string);
        eprintln!(
            "{}",
            panic_line(thread.name(), place.as_deref(), panic_message(info))
        );
    }));
}

/// A panic's message, when it is text.
fn panic_message<'a>(info: &'a std::panic::PanicHookInfo<'_>) -> &'a str {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

/// The line a sanitized panic prints: its thread and place, its message
/// redacted.
fn panic_line(thread: Option<&str>, place: Option<&str>, message: &str) -> String {
    let policy = Policy {
        sanitize: true,
        max_length: usize::MAX,
    };
    format!(
        "thread '{}' panicked at {}: {} (log_sanitization)",
        thread.unwrap_or("<unnamed>"),
        place.unwrap_or("an unknown place"),
        Redacted(message, policy)
    )
}

/// `text` as [`show`] prints it under `policy`.
struct Redacted<'a>(&'a str, Policy);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(&self.0, self.1, f)
    }
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
    struct Shown<'a>(&'a str, bool, usize);

    impl fmt::Display for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let policy = Policy {
                sanitize: self.1,
                max_length: self.2,
            };
            show(&self.0, policy, f)
        }
    }

    #[test]
    fn sanitized_text_shows_only_its_length_in_characters() {
        let text = "héllo jane@example.com";

        assert_eq!(
            Shown(text, true, 5).to_string(),
            "[redacted: 22 characters]"
        );
    }

    #[test]
    fn unsanitized_text_is_shown_as_it_is() {
        assert_eq!(Shown("héllo", false, usize::MAX).to_string(), "héllo");
    }

    #[test]
    fn unsanitized_text_is_cut_to_the_limit_at_a_character_boundary() {
        assert_eq!(
            Shown("héllo wörld", false, 2).to_string(),
            "hé… [truncated: 11 characters]"
        );
        assert_eq!(Shown("héllo", false, 5).to_string(), "héllo");
    }

    #[test]
    fn a_sanitized_panic_names_its_thread_and_place_but_not_its_message() {
        let line = panic_line(
            Some("tokio-runtime-worker"),
            Some("src/my_listener.rs:12:5"),
            "cannot handle jane@example.com's message",
        );

        assert_eq!(
            line,
            "thread 'tokio-runtime-worker' panicked at src/my_listener.rs:12:5: [redacted: 40 characters] (log_sanitization)"
        );
    }

    #[test]
    fn a_text_is_cut_only_when_it_has_more_characters_than_the_limit() {
        assert_eq!(cut_chars("ééé", 2), Some("éé"));
        assert_eq!(cut_chars("ééé", 3), None);
        assert_eq!(cut_chars("", 0), None);
        assert_eq!(cut_chars("a", 0), Some(""));
    }
}
