//! What the fuzz targets check, shared with the corpus replay on stable (`gateway/tests/fuzz_corpus.rs`
//! includes this file). Every function takes arbitrary bytes, runs them through the gateway's own code, checks
//! the invariants of the result, and panics (a crash, for the fuzzer) when one does not hold.

#![allow(dead_code)]

use bytes::Bytes;
use gateway::config::{self, ConfigError, GatewayConfig};
use gateway::fcgi::fuzzing::{
    complete, parse_response, Output, ResponseReader, Step, MAX_HEAD_BYTES, MAX_STDERR_LOGGED,
};
use gateway::fcgi::{BackendResponse, FcgiError};

/// The `STDOUT` limit the record target runs with (the gateway's default is 64 MiB, far beyond what the fuzzer
/// writes; a small one lets it reach the limit).
pub(crate) const MAX_STDOUT: usize = 1024;

/// What a record stream decodes to, comparable across ways of feeding it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// `END_REQUEST` arrived: the output, how many records of other types were skipped, and how many bytes
    /// followed `END_REQUEST`'s content.
    Done {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        app_status: u32,
        ignored: usize,
        unread: usize,
    },
    /// The stream ended before `END_REQUEST`.
    Ended,
    /// `STDOUT` would have passed the limit.
    TooLarge,
    /// Not FastCGI, another request id, or a refusing `END_REQUEST`.
    Protocol,
}

/// `stream` as iipsrv's whole answer, handed to the gateway's [`ResponseReader`] `chunk` bytes at a time (as
/// the socket delivers them), then the end of the stream (`EndedWithoutResponse`, as the client says). Also
/// returns the reader's result itself.
pub(crate) fn decode(stream: &[u8], chunk: usize) -> (Decoded, Result<Output, FcgiError>) {
    let mut reader = ResponseReader::new(MAX_STDOUT, MAX_STDERR_LOGGED);
    let mut ignored = 0;
    let mut consumed = 0;
    for piece in stream.chunks(chunk.max(1)) {
        let mut input = piece;
        loop {
            match reader.feed(&mut input) {
                Ok(Step::NeedMore) => {
                    assert!(input.is_empty(), "NeedMore with bytes left");
                    break;
                }
                Ok(Step::Ignored(_)) => ignored += 1,
                Ok(Step::Done(output)) => {
                    consumed += piece.len() - input.len();
                    let decoded = Decoded::Done {
                        stdout: output.stdout.to_vec(),
                        stderr: output.stderr.clone(),
                        app_status: output.app_status,
                        ignored,
                        unread: stream.len() - consumed,
                    };
                    assert!(
                        reader.feed(&mut &b"x"[..]).is_err(),
                        "a finished reader takes more bytes"
                    );
                    return (decoded, Ok(output));
                }
                Err(error) => return (classify(&error), Err(error)),
            }
        }
        consumed += piece.len();
    }
    (Decoded::Ended, Err(FcgiError::EndedWithoutResponse))
}

fn classify(error: &FcgiError) -> Decoded {
    match error {
        FcgiError::TooLarge(limit) => {
            assert_eq!(*limit, MAX_STDOUT);
            Decoded::TooLarge
        }
        FcgiError::Protocol(_) => Decoded::Protocol,
        other => panic!("the record reader returned {other:?}"),
    }
}

/// The same decoding written the obvious way, record by record from a complete buffer, as the client's socket
/// loop did it before [`ResponseReader`] existed: the oracle the reader is compared with.
pub(crate) fn reference_decode(stream: &[u8]) -> Decoded {
    let mut at = 0;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut ignored = 0;
    loop {
        let Some(header) = stream.get(at..at + 8) else {
            return Decoded::Ended;
        };
        if header[0] != 1 || u16::from_be_bytes([header[2], header[3]]) != 1 {
            return Decoded::Protocol;
        }
        let kind = header[1];
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let padding = usize::from(header[6]);
        if kind == 6 && stdout.len() + len > MAX_STDOUT {
            return Decoded::TooLarge;
        }
        let Some(content) = stream.get(at + 8..at + 8 + len) else {
            return Decoded::Ended;
        };
        at += 8 + len;
        match kind {
            6 => stdout.extend_from_slice(content),
            7 => {
                let room = MAX_STDERR_LOGGED - stderr.len();
                stderr.extend_from_slice(&content[..len.min(room)]);
            }
            3 => {
                // The padding of END_REQUEST is not read.
                return match content {
                    [a, b, c, d, 0, _, _, _, ..] => Decoded::Done {
                        stdout,
                        stderr,
                        app_status: u32::from_be_bytes([*a, *b, *c, *d]),
                        ignored,
                        unread: stream.len() - at,
                    },
                    _ => Decoded::Protocol,
                };
            }
            _ => ignored += 1,
        }
        if stream.len() < at + padding {
            return Decoded::Ended;
        }
        at += padding;
    }
}

/// Target `fcgi_records`: `data` as the FastCGI byte stream iipsrv sends back. The reader gives the same result
/// however the bytes are split and agrees with [`reference_decode`]; what it keeps stays within its limits; the
/// output goes on through the client's [`complete`] (the CGI head), whose result is returned.
pub(crate) fn fcgi_records(data: &[u8]) -> Result<BackendResponse, FcgiError> {
    let (whole, output) = decode(data, data.len());
    for chunk in [1, 3, 8, 61] {
        assert_eq!(decode(data, chunk).0, whole, "fed {chunk} bytes at a time");
    }
    assert_eq!(
        reference_decode(data),
        whole,
        "the reference decoder disagrees"
    );
    let output = output?;
    assert!(output.stdout.len() <= MAX_STDOUT, "stdout over its limit");
    assert!(
        output.stderr.len() <= MAX_STDERR_LOGGED,
        "stderr over its limit"
    );
    let stdout = output.stdout.clone().freeze();
    let result = complete(output, "fuzz");
    match &result {
        Ok(response) => check_response(&stdout, MAX_HEAD_BYTES, response),
        Err(FcgiError::EndedWithoutResponse) => assert!(stdout.is_empty()),
        Err(FcgiError::BadHead(_)) => {}
        Err(other) => panic!("complete returned {other:?}"),
    }
    result
}

/// Target `cgi_response`: `data` as the `STDOUT` stream, through [`parse_response`] with a few head limits. A
/// parsed answer is well-formed (see [`check_response`]) and written back as a head parses the same; a head
/// accepted under one limit is accepted, identically, under a larger one. Returns the result under the
/// gateway's own limit.
pub(crate) fn cgi_response(data: &[u8]) -> Result<BackendResponse, FcgiError> {
    let stdout = Bytes::copy_from_slice(data);
    let mut accepted: Option<BackendResponse> = None;
    let mut result = None;
    for max_head in [0, 16, 256, MAX_HEAD_BYTES] {
        let parsed = parse_response(stdout.clone(), max_head);
        match &parsed {
            Ok(response) => {
                check_response(&stdout, max_head, response);
                if let Some(before) = &accepted {
                    assert_eq!(describe(before), describe(response), "limit {max_head}");
                }
                accepted = Some(response.clone());
            }
            Err(FcgiError::BadHead(_)) => assert!(
                accepted.is_none(),
                "a head accepted under a smaller limit is refused under {max_head}"
            ),
            Err(other) => panic!("parse_response returned {other:?}"),
        }
        result = Some(parsed);
    }
    result.expect("at least one limit")
}

/// What a parsed answer must look like: a status HTTP can carry, header names that are tokens and values that
/// cannot break the response the gateway writes, the body a suffix of the output after a head within the limit.
/// Written back as a head, it parses to the same answer.
pub(crate) fn check_response(stdout: &[u8], max_head: usize, response: &BackendResponse) {
    assert!(
        (100..=599).contains(&response.status),
        "{}",
        response.status
    );
    assert!(stdout.ends_with(&response.body), "the body is not the tail");
    let head = stdout.len() - response.body.len();
    assert!(head >= 2, "no blank line before the body");
    assert!(
        head <= max_head + 4,
        "a head of {head} bytes under {max_head}"
    );
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let mut written = format!("Status: {}\r\n", response.status);
    for (name, value) in &response.headers {
        assert!(!name.is_empty() && name.bytes().all(tchar), "name {name:?}");
        assert!(!name.eq_ignore_ascii_case("status"));
        assert!(
            !value.chars().any(|c| c.is_control() && c != '\t'),
            "control character in {value:?}"
        );
        assert_eq!(
            value.trim_matches([' ', '\t']),
            value,
            "untrimmed {value:?}"
        );
        written.push_str(&format!("{name}: {value}\r\n"));
    }
    written.push_str("\r\n");
    let mut again = written.into_bytes();
    again.extend_from_slice(&response.body);
    let reparsed = parse_response(Bytes::from(again), MAX_HEAD_BYTES.max(max_head) * 2)
        .unwrap_or_else(|e| panic!("the answer written back does not parse: {e}"));
    assert_eq!(describe(&reparsed), describe(response), "written back");
}

fn describe(response: &BackendResponse) -> (u16, Vec<(String, String)>, Bytes) {
    (
        response.status,
        response.headers.clone(),
        response.body.clone(),
    )
}

/// Target `config`: `data` as the text of a configuration file (invalid UTF-8 replaced, so that every input
/// reaches the parser), through the loader the binary uses, [`config::parse`]. Errors are fine; a refusal names
/// at least one problem, and an accepted file obeys the rules the loader promises to enforce.
pub(crate) fn config(data: &[u8]) -> Result<GatewayConfig, ConfigError> {
    let text = String::from_utf8_lossy(data);
    let result = config::parse(&text);
    match &result {
        Err(error) => {
            assert!(!error.problems.is_empty(), "a refusal without a problem");
            assert!(error.problems.iter().all(|p| !p.is_empty()));
        }
        Ok(config) => {
            assert_ne!(config.listen, config.admin_listen);
            assert!(config.prefix.starts_with('/') && !config.prefix.ends_with('/'));
            assert!(!config.backend.addresses.is_empty());
            assert!(config.backend.first_byte_timeout <= config.backend.total_timeout);
            assert!((1..=100).contains(&config.jpeg_quality));
        }
    }
    result
}
