//! The FastCGI 1.0 record layer: bytes on the wire, no I/O.
//!
//! Only what a Responder client needs: encoding a whole request, and decoding the answer's
//! records ([`ResponseReader`]: headers, `STDOUT`, `STDERR`, `END_REQUEST`) from bytes as they
//! arrive.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::FcgiError;

/// Every record starts with this many bytes.
pub(crate) const HEADER_LEN: usize = 8;

/// A record carries at most this many content bytes (the length field is 16 bits).
const MAX_CONTENT: usize = 0xFFFF;

/// The request id used for every request. Connections are never shared (libfcgi does not
/// multiplex), so one id is enough.
pub(crate) const REQUEST_ID: u16 = 1;

const VERSION_1: u8 = 1;
const ROLE_RESPONDER: u16 = 1;
const FLAG_KEEP_CONN: u8 = 1;

/// Longest name or value a FastCGI length field can express (31 bits).
const MAX_PAIR_PART: usize = 0x7FFF_FFFF;

/// All parameters together may not exceed this. iipsrv needs a few hundred bytes; the limit only
/// keeps a caller's mistake from allocating without bound.
const MAX_PARAMS_LEN: usize = 1 << 20;

/// Record types (FastCGI 1.0 §8).
pub(crate) mod kind {
    pub(crate) const BEGIN_REQUEST: u8 = 1;
    pub(crate) const END_REQUEST: u8 = 3;
    pub(crate) const PARAMS: u8 = 4;
    pub(crate) const STDIN: u8 = 5;
    pub(crate) const STDOUT: u8 = 6;
    pub(crate) const STDERR: u8 = 7;
}

/// `protocolStatus` values of `END_REQUEST`.
const REQUEST_COMPLETE: u8 = 0;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: u8,
    pub(crate) request_id: u16,
    pub(crate) content_len: u16,
    pub(crate) padding_len: u8,
}

impl Header {
    /// Decodes a record header.
    ///
    /// # Errors
    /// `Protocol` when the version byte is not 1 (the peer does not speak FastCGI).
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, FcgiError> {
        if bytes[0] != VERSION_1 {
            return Err(FcgiError::Protocol(format!(
                "record version {} instead of 1 (not a fastcgi peer?)",
                bytes[0]
            )));
        }
        Ok(Header {
            kind: bytes[1],
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_len: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_len: bytes[6],
        })
    }
}

/// Encodes a complete Responder request: `BEGIN_REQUEST`, the parameters as `PARAMS` records,
/// the empty `PARAMS` that ends them, and one empty `STDIN` (a GET has no body).
///
/// Everything goes into one buffer so that the caller can send it with a single write. libfcgi
/// reads a request's records as they come and treats a record that arrives after it has moved on
/// as a protocol error; a request split across writes can trip over that (measured with
/// keep-alive connections, see pingora-notes §3.3).
///
/// # Errors
/// `InvalidParams` when a name or value is too long to encode, or all of them together exceed
/// 1 MiB.
pub(crate) fn encode_request(params: &[(&str, &str)], keep_conn: bool) -> Result<Bytes, FcgiError> {
    let mut stream = BytesMut::new();
    for (name, value) in params {
        if name.len() > MAX_PAIR_PART || value.len() > MAX_PAIR_PART {
            return Err(FcgiError::InvalidParams(
                "a parameter is longer than fastcgi allows",
            ));
        }
        put_length(&mut stream, name.len());
        put_length(&mut stream, value.len());
        stream.put_slice(name.as_bytes());
        stream.put_slice(value.as_bytes());
        if stream.len() > MAX_PARAMS_LEN {
            return Err(FcgiError::InvalidParams(
                "the parameters are larger than 1 MiB",
            ));
        }
    }

    let mut out = BytesMut::with_capacity(stream.len() + 64);
    let flags = if keep_conn { FLAG_KEEP_CONN } else { 0 };
    let role = ROLE_RESPONDER.to_be_bytes();
    put_record(
        &mut out,
        kind::BEGIN_REQUEST,
        &[role[0], role[1], flags, 0, 0, 0, 0, 0],
    );
    // The parameters are one byte stream; a name-value pair may span records.
    for chunk in stream.chunks(MAX_CONTENT) {
        put_record(&mut out, kind::PARAMS, chunk);
    }
    put_record(&mut out, kind::PARAMS, &[]);
    put_record(&mut out, kind::STDIN, &[]);
    Ok(out.freeze())
}

/// Lengths below 128 take one byte, longer ones four with the top bit set.
fn put_length(buf: &mut BytesMut, len: usize) {
    if len < 0x80 {
        buf.put_u8(len as u8);
    } else {
        buf.put_u32(len as u32 | 0x8000_0000);
    }
}

/// Appends one record, padded to a multiple of 8 bytes as the specification recommends.
fn put_record(buf: &mut BytesMut, kind: u8, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT);
    let padding = (8 - content.len() % 8) % 8;
    buf.put_u8(VERSION_1);
    buf.put_u8(kind);
    buf.put_u16(REQUEST_ID);
    buf.put_u16(content.len() as u16);
    buf.put_u8(padding as u8);
    buf.put_u8(0);
    buf.put_slice(content);
    buf.put_bytes(0, padding);
}

/// Decodes the body of `END_REQUEST` and returns the application's exit status.
///
/// # Errors
/// `Protocol` when the body is too short, or the process refused the request
/// (`CANT_MPX_CONN`, `OVERLOADED`, `UNKNOWN_ROLE`).
pub(crate) fn parse_end_request(content: &[u8]) -> Result<u32, FcgiError> {
    let Some(body) = content.get(..8) else {
        return Err(FcgiError::Protocol(format!(
            "END_REQUEST body of {} bytes instead of 8",
            content.len()
        )));
    };
    let app_status = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    match body[4] {
        REQUEST_COMPLETE => Ok(app_status),
        1 => Err(FcgiError::Protocol(
            "request refused: cannot multiplex connections".into(),
        )),
        2 => Err(FcgiError::Protocol("request refused: overloaded".into())),
        3 => Err(FcgiError::Protocol("request refused: unknown role".into())),
        other => Err(FcgiError::Protocol(format!(
            "END_REQUEST with protocol status {other}"
        ))),
    }
}

/// What the records of one answer add up to.
#[derive(Debug)]
pub struct Output {
    /// The `STDOUT` stream: the CGI head, then the body.
    pub stdout: BytesMut,
    /// The start of `STDERR`: at most the `max_stderr` given to [`ResponseReader::new`].
    pub stderr: Vec<u8>,
    /// The application's exit status from `END_REQUEST`.
    pub app_status: u32,
}

/// What [`ResponseReader::feed`] made of the bytes it was given.
#[derive(Debug)]
pub enum Step {
    /// Every byte was used and the answer is not complete: feed more.
    NeedMore,
    /// The header of a record whose type a Responder client does not use (its content is
    /// skipped); bytes may be left.
    Ignored(u8),
    /// `END_REQUEST` arrived: the answer is complete. Whatever follows its content (its padding
    /// included) is left unread.
    Done(Output),
}

/// Decodes the records a FastCGI server sends back for request [`REQUEST_ID`] as the bytes
/// arrive, in whatever pieces the connection delivers them. No I/O: the client's socket loop
/// feeds it, and so does the fuzz target (`gateway/fuzz`).
///
/// Bounds: the header of a `STDOUT` record that would take the stream past `max_stdout` bytes
/// is refused (`TooLarge`) before any of its content is stored; only the first `max_stderr`
/// bytes of `STDERR` are kept; other content is skipped without being stored. A record
/// carries at most 64 KiB + 255 bytes, so nothing else grows.
#[derive(Debug)]
pub struct ResponseReader {
    max_stdout: usize,
    max_stderr: usize,
    state: State,
    stdout: BytesMut,
    stderr: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// `got` bytes of a record header so far.
    Header { bytes: [u8; HEADER_LEN], got: usize },
    /// `left` bytes of a record's content to go, then `padding` bytes of padding.
    Content {
        kind: u8,
        left: usize,
        padding: usize,
    },
    /// `left` bytes of `END_REQUEST`'s content to go; the first (up to) 8 are its body.
    EndRequest {
        body: [u8; 8],
        got: usize,
        left: usize,
    },
    /// `left` bytes of padding to skip.
    Padding { left: usize },
    /// `END_REQUEST` was decoded.
    Finished,
}

impl State {
    fn header() -> State {
        State::Header {
            bytes: [0; HEADER_LEN],
            got: 0,
        }
    }
}

impl ResponseReader {
    /// A reader for one answer, bounded as described above.
    pub fn new(max_stdout: usize, max_stderr: usize) -> ResponseReader {
        ResponseReader {
            max_stdout,
            max_stderr,
            state: State::header(),
            stdout: BytesMut::new(),
            stderr: Vec::new(),
        }
    }

    /// Consumes bytes from the front of `input` until it is empty ([`Step::NeedMore`]), a
    /// record of an unexpected type begins ([`Step::Ignored`], call again with the rest), or
    /// `END_REQUEST` ends the answer ([`Step::Done`], the rest is not consumed). The end of the
    /// stream before `Done` is `EndedWithoutResponse`, however much was decoded.
    ///
    /// # Errors
    /// `Protocol` for a header that is not FastCGI 1, a record for another request id, an
    /// `END_REQUEST` that is too short or refuses the request, or bytes fed after `Done`;
    /// `TooLarge` when `STDOUT` would pass `max_stdout`. The reader is of no use afterwards.
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Step, FcgiError> {
        loop {
            match &mut self.state {
                State::Header { bytes, got } => {
                    if input.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = take_into(input, &mut bytes[*got..]);
                    *got += n;
                    if *got < HEADER_LEN {
                        return Ok(Step::NeedMore);
                    }
                    let header = Header::parse(bytes)?;
                    if let Some(step) = self.begin(header)? {
                        return Ok(step);
                    }
                }
                State::Content {
                    kind,
                    left,
                    padding,
                } => {
                    if *left == 0 {
                        self.state = State::Padding { left: *padding };
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let (chunk, rest) = input.split_at((*left).min(input.len()));
                    *input = rest;
                    *left -= chunk.len();
                    match *kind {
                        kind::STDOUT => self.stdout.extend_from_slice(chunk),
                        kind::STDERR => {
                            let room = self.max_stderr.saturating_sub(self.stderr.len());
                            self.stderr
                                .extend_from_slice(&chunk[..chunk.len().min(room)]);
                        }
                        _ => {}
                    }
                }
                State::EndRequest { body, got, left } => {
                    if *left > 0 {
                        if input.is_empty() {
                            return Ok(Step::NeedMore);
                        }
                        let (chunk, rest) = input.split_at((*left).min(input.len()));
                        *input = rest;
                        *left -= chunk.len();
                        let mut chunk = chunk;
                        *got += take_into(&mut chunk, &mut body[*got..]);
                        continue;
                    }
                    let app_status = parse_end_request(&body[..*got])?;
                    self.state = State::Finished;
                    return Ok(Step::Done(Output {
                        stdout: std::mem::take(&mut self.stdout),
                        stderr: std::mem::take(&mut self.stderr),
                        app_status,
                    }));
                }
                State::Padding { left } => {
                    if *left == 0 {
                        self.state = State::header();
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (*left).min(input.len());
                    *input = &input[n..];
                    *left -= n;
                }
                State::Finished => {
                    return Err(FcgiError::Protocol(
                        "bytes fed to a finished fastcgi response reader".into(),
                    ))
                }
            }
        }
    }

    /// Checks a complete header and moves to its content. `Some` when the caller is to be told.
    fn begin(&mut self, header: Header) -> Result<Option<Step>, FcgiError> {
        if header.request_id != REQUEST_ID {
            return Err(FcgiError::Protocol(format!(
                "record for request id {} on a connection carrying request {REQUEST_ID}",
                header.request_id
            )));
        }
        let len = usize::from(header.content_len);
        let padding = usize::from(header.padding_len);
        let content = |kind| State::Content {
            kind,
            left: len,
            padding,
        };
        match header.kind {
            kind::STDOUT => {
                if self.stdout.len() + len > self.max_stdout {
                    return Err(FcgiError::TooLarge(self.max_stdout));
                }
                self.stdout.reserve(len);
                self.state = content(kind::STDOUT);
            }
            kind::STDERR => self.state = content(kind::STDERR),
            kind::END_REQUEST => {
                self.state = State::EndRequest {
                    body: [0; 8],
                    got: 0,
                    left: len,
                };
            }
            other => {
                self.state = content(other);
                return Ok(Some(Step::Ignored(other)));
            }
        }
        Ok(None)
    }
}

/// Moves as many bytes as fit from the front of `input` into `out`; returns how many.
fn take_into(input: &mut &[u8], out: &mut [u8]) -> usize {
    let n = out.len().min(input.len());
    out[..n].copy_from_slice(&input[..n]);
    *input = &input[n..];
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an encoded request back into (type, content) pairs, checking the framing.
    fn records(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let header = Header::parse(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
            assert_eq!(header.request_id, REQUEST_ID);
            let len = usize::from(header.content_len);
            let padding = usize::from(header.padding_len);
            assert_eq!((len + padding) % 8, 0, "records are padded to 8 bytes");
            out.push((header.kind, bytes[HEADER_LEN..HEADER_LEN + len].to_vec()));
            bytes = &bytes[HEADER_LEN + len + padding..];
        }
        out
    }

    /// Decodes a FastCGI name-value stream.
    fn pairs(mut stream: &[u8]) -> Vec<(String, String)> {
        fn length(stream: &mut &[u8]) -> usize {
            if stream[0] < 0x80 {
                let len = usize::from(stream[0]);
                *stream = &stream[1..];
                len
            } else {
                let len = u32::from_be_bytes(stream[..4].try_into().unwrap()) & 0x7FFF_FFFF;
                *stream = &stream[4..];
                len as usize
            }
        }
        let mut out = Vec::new();
        while !stream.is_empty() {
            let name_len = length(&mut stream);
            let value_len = length(&mut stream);
            let name = String::from_utf8(stream[..name_len].to_vec()).unwrap();
            let value = String::from_utf8(stream[name_len..name_len + value_len].to_vec()).unwrap();
            stream = &stream[name_len + value_len..];
            out.push((name, value));
        }
        out
    }

    #[test]
    fn a_request_is_begin_params_empty_params_empty_stdin() {
        let bytes = encode_request(
            &[
                ("QUERY_STRING", "IIIF=a.tif/info.json"),
                ("REQUEST_METHOD", "GET"),
            ],
            false,
        )
        .unwrap();
        let records = records(&bytes);
        let kinds: Vec<u8> = records.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [kind::BEGIN_REQUEST, kind::PARAMS, kind::PARAMS, kind::STDIN]
        );
        assert_eq!(
            records[0].1,
            [0, 1, 0, 0, 0, 0, 0, 0],
            "responder role, no keep-alive"
        );
        assert!(records[2].1.is_empty() && records[3].1.is_empty());
        assert_eq!(
            pairs(&records[1].1),
            [
                ("QUERY_STRING".to_owned(), "IIIF=a.tif/info.json".to_owned()),
                ("REQUEST_METHOD".to_owned(), "GET".to_owned())
            ]
        );
    }

    #[test]
    fn keep_conn_sets_the_flag() {
        let bytes = encode_request(&[], true).unwrap();
        assert_eq!(records(&bytes)[0].1[2], FLAG_KEEP_CONN);
    }

    #[test]
    fn long_values_use_four_byte_lengths_and_span_records() {
        let long = "x".repeat(100_000);
        let medium = "y".repeat(200);
        let bytes = encode_request(&[("A", &long), ("B", &medium), ("C", "")], false).unwrap();
        let records = records(&bytes);
        let params: Vec<u8> = records
            .iter()
            .filter(|(k, c)| *k == kind::PARAMS && !c.is_empty())
            .flat_map(|(_, c)| c.clone())
            .collect();
        assert!(
            records.iter().filter(|(k, _)| *k == kind::PARAMS).count() >= 3,
            "split into several records"
        );
        assert!(records.iter().all(|(_, c)| c.len() <= MAX_CONTENT));
        let decoded = pairs(&params);
        assert_eq!(decoded[0].1, long);
        assert_eq!(decoded[1].1, medium);
        assert_eq!(decoded[2], ("C".to_owned(), String::new()));
    }

    #[test]
    fn oversized_params_are_refused() {
        let huge = "x".repeat(MAX_PARAMS_LEN + 1);
        assert!(matches!(
            encode_request(&[("A", &huge)], false),
            Err(FcgiError::InvalidParams(_))
        ));
    }

    /// Feeds `stream` to a reader `chunk` bytes at a time.
    fn read_all(stream: &[u8], chunk: usize, max_stdout: usize) -> Result<Output, FcgiError> {
        let mut reader = ResponseReader::new(max_stdout, 4);
        for piece in stream.chunks(chunk) {
            let mut input = piece;
            loop {
                match reader.feed(&mut input)? {
                    Step::NeedMore => break,
                    Step::Ignored(_) => {}
                    Step::Done(output) => return Ok(output),
                }
            }
        }
        Err(FcgiError::EndedWithoutResponse)
    }

    #[test]
    fn the_reader_decodes_records_however_they_are_split() {
        let mut stream = Vec::new();
        let mut record = |kind, content: &[u8]| {
            let mut buf = BytesMut::new();
            put_record(&mut buf, kind, content);
            stream.extend_from_slice(&buf);
        };
        record(kind::STDOUT, b"Status: 404\r\n");
        record(kind::STDERR, b"oops, a warning");
        record(kind::PARAMS, b"ignored");
        record(kind::STDOUT, b"\r\nbody");
        record(kind::END_REQUEST, &[0, 0, 0, 7, 0, 0, 0, 0]);
        for chunk in [1, 2, 7, 8, 9, stream.len()] {
            let output = read_all(&stream, chunk, 1024).unwrap();
            assert_eq!(&output.stdout[..], b"Status: 404\r\n\r\nbody", "{chunk}");
            assert_eq!(output.stderr, b"oops", "stderr is cut at its limit");
            assert_eq!(output.app_status, 7);
        }
        assert!(matches!(
            read_all(&stream, 3, 16),
            Err(FcgiError::TooLarge(16))
        ));
        assert!(matches!(
            read_all(&stream[..stream.len() - 1], 5, 1024),
            Err(FcgiError::EndedWithoutResponse)
        ));
    }

    #[test]
    fn header_and_end_request_decoding() {
        let header = Header::parse(&[1, kind::STDOUT, 0, 1, 0x01, 0x02, 6, 0]).unwrap();
        assert_eq!(header.kind, kind::STDOUT);
        assert_eq!(header.content_len, 0x0102);
        assert_eq!(header.padding_len, 6);
        assert!(matches!(
            Header::parse(&[b'H', b'T', b'T', b'P', 0, 0, 0, 0]),
            Err(FcgiError::Protocol(_))
        ));

        assert_eq!(parse_end_request(&[0, 0, 1, 2, 0, 0, 0, 0]).unwrap(), 258);
        assert!(matches!(
            parse_end_request(&[0, 0, 0, 0, 2, 0, 0, 0]),
            Err(FcgiError::Protocol(_))
        ));
        assert!(matches!(
            parse_end_request(&[0, 0]),
            Err(FcgiError::Protocol(_))
        ));
    }
}
