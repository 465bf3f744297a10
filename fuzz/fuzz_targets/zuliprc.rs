//! Fuzz target `zuliprc`: arbitrary bytes through
//! `zulip_event_listeners::fuzzing::zuliprc` (what it drives and checks is
//! documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zulip_event_listeners::fuzzing::zuliprc(data));
