//! Fuzz target `events_page`: arbitrary bytes through
//! `zulip_event_listeners::fuzzing::events_page` (what it drives and checks is
//! documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zulip_event_listeners::fuzzing::events_page(data));
