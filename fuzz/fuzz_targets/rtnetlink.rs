#![no_main]
//! Fuzz target; what it checks is bodies::rtnetlink.

#[path = "bodies.rs"]
#[allow(dead_code, unused_imports)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::rtnetlink(data));
