//! Replays the fuzz seed corpus (`fuzz/corpus/parse_route`) on stable Rust: every file goes through
//! `parse_route` in both versions and every image request through `plan` against the fixed images and
//! configurations, with all plan invariants checked. A few entries also have their outcome pinned, so the corpus
//! doubles as a table of interesting requests.

mod support;

use std::fs;
use std::path::PathBuf;

use iiif::{parse_route, plan, Capabilities, Limits, Route, Version};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_route")
}

/// Every corpus entry as (file name, contents), sorted by name.
fn corpus() -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = fs::read_dir(corpus_dir())
        .expect("the seed corpus exists")
        .map(|entry| {
            let entry = entry.unwrap();
            let bytes = fs::read(entry.path()).unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect();
    entries.sort();
    entries
}

/// A one-line description of what the gateway makes of `rest` for the validator's 1000×1000 image with the
/// default configuration.
fn outcome(version: Version, rest: &str) -> String {
    let image = &support::fixed_images()[0];
    match parse_route(version, rest) {
        Err(error) => format!("route {}", error.status),
        Ok(Route::Info { identifier }) => format!("info {}", identifier.raw()),
        Ok(Route::Base { identifier }) => format!("base {}", identifier.raw()),
        Ok(Route::Image { request, .. }) => {
            match plan(
                version,
                &request,
                image,
                &Limits::default(),
                &Capabilities::default(),
            ) {
                Err(error) => format!("plan {}", error.status),
                Ok(planned) => format!("iipsrv {}", planned.backend.path()),
            }
        }
    }
}

#[test]
fn the_corpus_is_there() {
    assert!(
        corpus().len() >= 30,
        "the seed corpus has only {} entries",
        corpus().len()
    );
}

#[test]
fn every_entry_routes_and_plans_without_breaking_an_invariant() {
    for (name, rest) in corpus() {
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
                        let result = support::plan_and_check(
                            version,
                            &identifier,
                            &request,
                            &facts,
                            &limits,
                            &caps,
                        );
                        if let Err(error) = result {
                            assert!(matches!(error.status, 400 | 501), "{name}: {error:?}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn pinned_outcomes() {
    let expected: &[(&str, &str, &str)] = &[
        (
            "01_full_max",
            "iipsrv full/1000,1000/0/default.jpg",
            "iipsrv full/1000,1000/0/default.jpg",
        ),
        (
            "02_full_full_v2",
            "iipsrv full/1000,1000/0/default.jpg",
            "route 400",
        ),
        ("03_info", "info id", "info id"),
        ("04_base", "base id", "base id"),
        ("05_base_slash", "base id", "base id"),
        (
            "06_unencoded_slash_id",
            "iipsrv full/1000,1000/0/default.jpg",
            "iipsrv full/1000,1000/0/default.jpg",
        ),
        ("07_encoded_slash_info", "info a%2Fb", "info a%2Fb"),
        (
            "09_square",
            "iipsrv full/1000,1000/0/default.jpg",
            "iipsrv full/1000,1000/0/default.jpg",
        ),
        (
            "10_tile",
            "iipsrv 0,0,256,256/256,256/0/default.jpg",
            "iipsrv 0,0,256,256/256,256/0/default.jpg",
        ),
        (
            "11_edge_tile",
            "iipsrv 768,768,232,104/232,104/0/default.jpg",
            "iipsrv 768,768,232,104/232,104/0/default.jpg",
        ),
        (
            "12_crash_last_row",
            "iipsrv 0,998,100,1/50,1/0/default.jpg",
            "iipsrv 0,998,100,1/50,1/0/default.jpg",
        ),
        (
            "13_crash_last_column",
            "iipsrv 998,0,1,100/1,50/0/default.jpg",
            "iipsrv 998,0,1,100/1,50/0/default.jpg",
        ),
        (
            "14_past_the_edge",
            "iipsrv 999,749,1,10/1,10/0/default.jpg",
            "route 400",
        ),
        (
            "16_pct_onto_the_edge",
            "iipsrv 999,999,1,1/1,1/0/default.jpg",
            "iipsrv 999,999,1,1/1,1/0/default.jpg",
        ),
        (
            "17_caret_max",
            "route 400",
            "iipsrv full/5000,5000/0/default.jpg",
        ),
        (
            "19_confined_noup",
            "iipsrv full/2000,2000/0/default.jpg",
            "plan 400",
        ),
        ("23_arbitrary_rotation", "plan 400", "plan 400"),
        ("25_plus_rotation", "route 400", "route 400"),
        ("26_missing_format", "route 400", "route 400"),
        ("27_traversal", "route 400", "route 400"),
        ("28_nul", "route 400", "route 400"),
        (
            "29_unescaped_brackets",
            "iipsrv full/1000,1000/0/default.jpg",
            "iipsrv full/1000,1000/0/default.jpg",
        ),
        ("30_empty_segment", "route 400", "route 400"),
        ("31_over_max_cvt", "plan 400", "plan 400"),
        (
            "32_tile_180_bitonal",
            "iipsrv 256,512,256,256/256,256/180/bitonal.jpg",
            "iipsrv 256,512,256,256/256,256/180/bitonal.jpg",
        ),
        ("33_lone_percent", "route 400", "route 400"),
        ("34_double_extension", "route 400", "route 400"),
        // IIIF §9: encoded parameters mean what they encode.
        (
            "35_encoded_caret_max",
            "route 400",
            "iipsrv full/5000,5000/0/default.jpg",
        ),
        (
            "36_encoded_bang_confined",
            "iipsrv full/128,128/0/default.jpg",
            "iipsrv full/128,128/0/default.jpg",
        ),
        (
            "37_encoded_comma_width",
            "iipsrv full/128,128/0/default.jpg",
            "iipsrv full/128,128/0/default.jpg",
        ),
        (
            "38_encoded_colon_region",
            "iipsrv 0,0,500,500/100,100/0/default.jpg",
            "iipsrv 0,0,500,500/100,100/0/default.jpg",
        ),
        (
            "39_encoded_mirror",
            "iipsrv full/100,100/!90/default.jpg",
            "iipsrv full/100,100/!90/default.jpg",
        ),
        (
            "40_encoded_dot_format",
            "iipsrv full/1000,1000/0/default.jpg",
            "iipsrv full/1000,1000/0/default.jpg",
        ),
        ("41_malformed_escape_in_size", "route 400", "route 400"),
        ("42_encoded_slash_in_format", "route 400", "route 400"),
        ("43_dot_component", "route 400", "route 400"),
    ];
    let corpus = corpus();
    for (name, v2, v3) in expected {
        let (_, rest) = corpus
            .iter()
            .find(|(file, _)| file == name)
            .unwrap_or_else(|| panic!("{name} is missing"));
        assert_eq!(outcome(Version::V2, rest), *v2, "{name} in 2.1");
        assert_eq!(outcome(Version::V3, rest), *v3, "{name} in 3.0");
    }
}
