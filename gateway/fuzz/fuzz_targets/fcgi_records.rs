//! Feeds arbitrary bytes to `harness::fcgi_records` (see harness.rs for what it checks); a panic is a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::fcgi_records(data);
});
