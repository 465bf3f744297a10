//! The filters of `deadletters list|retry|delete`: the command line's
//! turned into the store's [`DeadLetterFilter`] once, and said in words
//! for the summary lines and the audit trail.

use std::fmt::Write as _;

use crate::cli::age::format_time;
use crate::cli::args::DeadLetterArgs;
use crate::store::{DeadLetterFilter, DeadLetterStatus};

/// The store's filter of the command line's.
pub(super) fn to_filter(args: &DeadLetterArgs, status: DeadLetterStatus) -> DeadLetterFilter {
    DeadLetterFilter {
        listener: args.listener.clone(),
        since: args.since,
        class: args.class,
        status,
        limit: args.limit,
    }
}

/// The filter in words, for the summary lines and the audit trail.
pub(super) fn describe(filter: &DeadLetterFilter) -> String {
    let mut out = format!("status {}", status_word(filter.status));
    if let Some(l) = &filter.listener {
        let _ = write!(out, ", listener {l}");
    }
    if let Some(t) = filter.since {
        let _ = write!(out, ", since {}", format_time(t));
    }
    if let Some(c) = filter.class {
        let _ = write!(out, ", class {c}");
    }
    if let Some(n) = filter.limit {
        let _ = write!(out, ", the newest {n}");
    }
    out
}

/// The status as `list` prints it.
pub(super) fn status_word(s: DeadLetterStatus) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ErrorClass;

    #[test]
    fn a_filter_in_words_names_each_narrowing() {
        let f = DeadLetterFilter {
            listener: Some("hook".into()),
            class: Some(ErrorClass::Timeout),
            limit: Some(3),
            ..DeadLetterFilter::default()
        };
        assert_eq!(
            describe(&f),
            "status pending, listener hook, class timeout, the newest 3"
        );
    }
}
