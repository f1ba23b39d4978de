//! Feeds arbitrary bytes to `harness::config` (see harness.rs for what it checks); a panic is a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::config(data);
});
