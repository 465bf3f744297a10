//! The fuzz targets' inputs replayed on stable (issue 14, item 6): every
//! seed of `fuzz/corpus/<target>/` and every crash reproducer of
//! `fuzz/regressions/<target>/` goes through the same entry point
//! (`zulip_event_listeners::fuzzing`) that `cargo fuzz` drives, so CI
//! checks them without nightly or cargo-fuzz. An entry point panics on a
//! broken promise; each file is run on its own, and all failures are named.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use zulip_event_listeners::fuzzing;

use crate::support::repo;

/// Runs every file of the target's corpus and regressions through `entry`;
/// fails naming each file that panicked. Returns how many ran.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = repo().join("fuzz").join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail: {failed:#?}"
    );
    files.len()
}

#[test]
fn the_event_head_corpus_and_regressions_pass() {
    assert!(replay("event_head", fuzzing::event) >= 20);
}

#[test]
fn the_zuliprc_corpus_and_regressions_pass() {
    assert!(replay("zuliprc", fuzzing::zuliprc) >= 10);
}

#[test]
fn the_config_corpus_and_regressions_pass() {
    assert!(replay("config", fuzzing::config) >= 20);
}

#[test]
fn the_events_page_corpus_and_regressions_pass() {
    assert!(replay("events_page", fuzzing::events_page) >= 20);
}
