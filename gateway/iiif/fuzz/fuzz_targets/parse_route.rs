//! Feeds arbitrary bytes to `parse_route` in both versions and, when a route parses as an image request, plans
//! it against a few fixed images and configurations, checking every plan invariant (the same checks the property
//! tests and the corpus replay use).

#![no_main]

use iiif::{parse_route, Route, Version};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let rest = String::from_utf8_lossy(data);
    for version in [Version::V2, Version::V3] {
        let Ok(route) = parse_route(version, &rest) else {
            continue;
        };
        if let Route::Image {
            identifier,
            request,
        } = route
        {
            for facts in support::fixed_images() {
                for (limits, caps) in support::fixed_configurations() {
                    let _ = support::plan_and_check(
                        version,
                        &identifier,
                        &request,
                        &facts,
                        &limits,
                        &caps,
                    );
                }
            }
        }
    }
});
