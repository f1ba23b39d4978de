//! Replays the seed corpora of the gateway's fuzz targets (`gateway/fuzz/corpus/{fcgi_records,cgi_response,
//! config}`) on stable Rust: every file goes through the same checks the fuzz targets run (`gateway/fuzz/
//! harness.rs`), so a crash the fuzzer once found and that was added to a corpus stays fixed. A few entries also
//! have their outcome pinned, so the corpora double as tables of interesting inputs.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::PathBuf;

use gateway::fcgi::FcgiError;
use harness::Decoded;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every entry of a target's corpus as (file name, contents), sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut entries: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {} exists: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path()).unwrap(),
            )
        })
        .collect();
    entries.sort();
    entries
}

fn entry(target: &str, name: &str) -> Vec<u8> {
    corpus(target)
        .into_iter()
        .find(|(file, _)| file == name)
        .unwrap_or_else(|| panic!("{target}/{name} is missing"))
        .1
}

#[test]
fn the_corpora_are_there() {
    for target in ["fcgi_records", "cgi_response", "config"] {
        let entries = corpus(target).len();
        assert!(entries >= 10, "{target} has only {entries} entries");
    }
}

#[test]
fn every_entry_passes_the_fuzz_checks() {
    for (name, data) in corpus("fcgi_records") {
        println!("fcgi_records/{name}");
        let _ = harness::fcgi_records(&data);
    }
    for (name, data) in corpus("cgi_response") {
        println!("cgi_response/{name}");
        let _ = harness::cgi_response(&data);
    }
    for (name, data) in corpus("config") {
        println!("config/{name}");
        let _ = harness::config(&data);
    }
}

/// What the gateway makes of a record stream, in a few words.
fn record_outcome(name: &str) -> String {
    match harness::fcgi_records(&entry("fcgi_records", name)) {
        Ok(response) => format!(
            "{} {} {:?}",
            response.status,
            response.header("content-type").unwrap_or("-"),
            response.body
        ),
        Err(FcgiError::EndedWithoutResponse) => "ended without response".into(),
        Err(FcgiError::TooLarge(_)) => "too large".into(),
        Err(FcgiError::Protocol(_)) => "protocol".into(),
        Err(FcgiError::BadHead(_)) => "bad head".into(),
        Err(other) => format!("{other:?}"),
    }
}

#[test]
fn pinned_record_outcomes() {
    let expected: &[(&str, &str)] = &[
        ("01_image", r#"200 image/jpeg b"\xff\xd8\xff\xd9""#),
        ("02_status_404_with_stderr", "404 text/plain b\"nope\""),
        ("03_head_split_across_records", "400 - b\"body\""),
        ("04_truncated_header", "ended without response"),
        ("05_truncated_content", "ended without response"),
        ("06_stdout_over_limit", "too large"),
        ("07_huge_stderr_length_cut", "ended without response"),
        ("08_max_padding", "200 text/plain b\"ok\""),
        ("09_padding_cut", "ended without response"),
        ("10_unknown_types_ignored", "200 text/plain b\"ok\""),
        ("11_end_overloaded", "protocol"),
        ("12_end_cant_mpx_conn", "protocol"),
        ("13_end_unknown_protocol_status", "protocol"),
        ("14_end_short_body", "protocol"),
        ("15_end_odd_app_status", "200 text/plain b\"ok\""),
        ("16_wrong_request_id", "protocol"),
        ("17_not_fastcgi", "protocol"),
        ("18_bytes_after_end_request", "200 text/plain b\"ok\""),
        ("19_end_without_output", "ended without response"),
        ("20_end_request_padded_long", "200 text/plain b\"ok\""),
        ("21_empty", "ended without response"),
        ("22_bad_cgi_head", "bad head"),
        ("23_eof_before_end_request", "ended without response"),
    ];
    for (name, outcome) in expected {
        assert_eq!(record_outcome(name), *outcome, "fcgi_records/{name}");
    }
}

#[test]
fn pinned_record_details() {
    let decoded = |name| harness::decode(&entry("fcgi_records", name), usize::MAX).0;
    // The valid stream: exactly its STDOUT, and nothing left behind END_REQUEST.
    let Decoded::Done { stdout, unread, .. } = decoded("01_image") else {
        panic!("01_image does not decode");
    };
    assert_eq!(
        stdout,
        b"Server: iipsrv/1.1\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9"
    );
    assert_eq!(unread, 0);
    let Decoded::Done { stderr, .. } = decoded("02_status_404_with_stderr") else {
        panic!("02 does not decode");
    };
    assert_eq!(stderr, b"iipsrv: file not found\n");
    let Decoded::Done { ignored, .. } = decoded("10_unknown_types_ignored") else {
        panic!("10 does not decode");
    };
    assert_eq!(ignored, 5);
    let Decoded::Done { app_status, .. } = decoded("15_end_odd_app_status") else {
        panic!("15 does not decode");
    };
    assert_eq!(app_status, u32::MAX);
    // What follows END_REQUEST's content (a late record, END_REQUEST's own padding) is left
    // unread, so a kept-alive connection carrying it is not reused.
    for (name, left) in [
        ("18_bytes_after_end_request", 16),
        ("20_end_request_padded_long", 8),
    ] {
        let Decoded::Done { unread, .. } = decoded(name) else {
            panic!("{name} does not decode");
        };
        assert_eq!(unread, left, "{name}");
    }
}

#[test]
fn pinned_cgi_outcomes() {
    let outcome = |name| match harness::cgi_response(&entry("cgi_response", name)) {
        Ok(response) => format!("{} {} headers", response.status, response.headers.len()),
        Err(FcgiError::BadHead(problem)) => format!("bad head: {problem}"),
        Err(other) => format!("{other:?}"),
    };
    let expected: &[(&str, &str)] = &[
        ("01_iipsrv_image", "200 6 headers"),
        ("02_status_404", "404 2 headers"),
        ("03_status_only", "304 0 headers"),
        ("04_lf_only", "400 1 headers"),
        (
            "05_no_blank_line",
            "bad head: no end of head in 46 bytes of output",
        ),
        ("06_two_status_lines", "bad head: two Status lines"),
        (
            "07_status_two_digits",
            "bad head: invalid Status line \"42\"",
        ),
        ("09_status_reason_after_tab", "503 1 headers"),
        ("10_second_head_in_body", "200 1 headers"),
        (
            "11_space_in_name",
            "bad head: invalid header name \"Bad Name\"",
        ),
        ("13_cr_in_value", "bad head: control character in header X"),
        (
            "14_non_utf8_value",
            "bad head: header line is not utf-8: X-Name: caf\u{fffd}",
        ),
        (
            "15_huge_head",
            "bad head: no end of head within 65536 bytes",
        ),
        ("16_empty", "bad head: no end of head in 0 bytes of output"),
        // A head must have at least one line (CGI asks for Content-Type, Location or Status).
        (
            "17_blank_line_only",
            "bad head: header line without a colon: \"\"",
        ),
        ("18_mixed_line_ends", "200 2 headers"),
        ("19_colons_in_value", "200 2 headers"),
        (
            "20_status_out_of_range",
            "bad head: invalid Status line \"600 Nope\"",
        ),
        ("21_many_headers", "200 300 headers"),
        ("22_nul_in_value", "bad head: control character in header X"),
    ];
    for (name, result) in expected {
        assert_eq!(outcome(name), *result, "cgi_response/{name}");
    }
}

#[test]
fn pinned_config_outcomes() {
    let load = |name| harness::config(&entry("config", name));
    for name in [
        "01_example",
        "02_minimal",
        "03_pingora_keys_beside",
        "20_non_utf8",
        // The top-level keys beside `gateway:` are Pingora's: skipped unread, aliases and
        // nesting included.
        "09_billion_laughs_in_ignored_keys",
        "10_deep_nesting_in_ignored_keys",
    ] {
        if let Err(error) = load(name) {
            panic!("config/{name} is refused: {error}");
        }
    }
    let refused = |name| match load(name) {
        Ok(_) => panic!("config/{name} loads"),
        Err(error) => error.to_string(),
    };
    for (name, says) in [
        ("04_unknown_key", "unknown field `adresses`"),
        ("05_wrong_types", "gateway.listen: invalid type"),
        (
            "08_broken_yaml",
            "found a tab character that violates indentation",
        ),
        (
            "06_huge_numbers",
            "gateway.iiif.max_width: invalid type: integer",
        ),
        ("12_empty", "missing section `gateway:`"),
        ("14_sizes", "gateway.cache.budget: invalid size"),
        ("18_multi_document", "more than one document"),
        // Under `gateway:` every value has a type and nothing nests deeply: the first value
        // of the wrong type ends the parse, however deep or aliased the rest.
        ("21_deep_mapping", "gateway: unknown field `a`"),
        (
            "25_deep_nesting_in_gateway",
            "gateway: invalid type: sequence, expected struct RawGatewayConfig",
        ),
        (
            "24_billion_laughs_in_gateway_keys",
            "gateway.trusted_proxies[0]: invalid type: sequence, expected a string",
        ),
        ("11_no_gateway_section", "missing section `gateway:`"),
        ("13_every_problem", "gateway.prefix"),
        ("16_duplicate_keys", "duplicate field `backend`"),
        (
            "22_admin_same_as_listen",
            "admin endpoints are never public",
        ),
        // YAML merge keys are not expanded: `<<` is just an unknown key.
        ("23_alias_as_key_merge", "unknown field `<<`"),
    ] {
        let text = refused(name);
        assert!(text.contains(says), "config/{name}: {text}");
    }
}

/// The loader never expands the billion laughs nor descends into deep nesting (above), and the
/// YAML parser would refuse both anyway: a generic value, which follows every alias and every
/// level, hits its repetition and recursion limits.
#[test]
fn the_yaml_parser_bounds_aliases_and_nesting() {
    for (name, says) in [
        (
            "09_billion_laughs_in_ignored_keys",
            "repetition limit exceeded",
        ),
        (
            "10_deep_nesting_in_ignored_keys",
            "recursion limit exceeded",
        ),
    ] {
        let text = entry("config", name);
        let error = serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(&text).unwrap_err();
        assert!(error.to_string().contains(says), "{name}: {error}");
    }
}
