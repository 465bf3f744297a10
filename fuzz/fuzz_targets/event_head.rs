//! Fuzz target `event_head`: arbitrary bytes through
//! `zulip_event_listeners::fuzzing::event` (what it drives and checks is
//! documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zulip_event_listeners::fuzzing::event(data));
