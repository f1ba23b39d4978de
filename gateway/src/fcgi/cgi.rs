//! The CGI response head that iipsrv writes at the start of its `STDOUT` stream.
//!
//! A head is `Name: value` lines ended by an empty line. `Status: 404 Not Found` carries the
//! HTTP status; without it the status is 200 (iipsrv sends no `Status:` for its images).

use bytes::Bytes;

use super::error::FcgiError;

/// A complete answer from an iipsrv process.
#[derive(Debug, Clone)]
pub struct BackendResponse {
    /// HTTP status from the `Status:` line, 200 when there is none.
    pub status: u16,
    /// Every other header line, in order, with names as sent.
    pub headers: Vec<(String, String)>,
    /// Everything after the head.
    pub body: Bytes,
}

impl BackendResponse {
    /// The value of the first header called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `stdout` into head and body and parses the head.
///
/// # Errors
/// `BadHead` when no empty line ends the head within `max_head` bytes, or a line is not a valid
/// header.
pub fn parse_response(stdout: Bytes, max_head: usize) -> Result<BackendResponse, FcgiError> {
    // The blank line itself may end just past the limit.
    let searched = stdout.len().min(max_head.saturating_add(4));
    let (head_len, body_start) = find_head_end(&stdout[..searched]).ok_or_else(|| {
        FcgiError::BadHead(if stdout.len() > max_head {
            format!("no end of head within {max_head} bytes")
        } else {
            format!("no end of head in {} bytes of output", stdout.len())
        })
    })?;
    let (status, headers) = parse_head(&stdout[..head_len])?;
    Ok(BackendResponse {
        status,
        headers,
        body: stdout.slice(body_start..),
    })
}

/// Finds the blank line ending the head: the first `\r\n\r\n` or `\n\n`, whichever comes first.
/// Returns the length of the head (without the blank line) and where the body starts.
fn find_head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        let rest = &bytes[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some((nl, nl + 2));
        }
        if rest.starts_with(b"\r\n") {
            return Some((nl, nl + 3));
        }
        i = nl + 1;
    }
    None
}

fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), FcgiError> {
    let mut status = None;
    let mut headers = Vec::new();
    for raw in head.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(line).map_err(|_| {
            FcgiError::BadHead(format!(
                "header line is not utf-8: {}",
                String::from_utf8_lossy(line)
            ))
        })?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| FcgiError::BadHead(format!("header line without a colon: {text:?}")))?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(FcgiError::BadHead(format!("invalid header name {name:?}")));
        }
        // A control character (a stray CR in particular) would let the value break the HTTP
        // response the gateway builds from it.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(FcgiError::BadHead(format!(
                "control character in header {name}"
            )));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("status") {
            if status.is_some() {
                return Err(FcgiError::BadHead("two Status lines".into()));
            }
            status = Some(parse_status(value)?);
        } else {
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok((status.unwrap_or(200), headers))
}

/// `404 Not Found` → 404. The reason phrase is optional and ignored.
fn parse_status(value: &str) -> Result<u16, FcgiError> {
    let code = value.split([' ', '\t']).next().unwrap_or_default();
    match code.parse::<u16>() {
        Ok(status @ 100..=599) if code.len() == 3 => Ok(status),
        _ => Err(FcgiError::BadHead(format!("invalid Status line {value:?}"))),
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<BackendResponse, FcgiError> {
        parse_response(Bytes::copy_from_slice(text), 64 * 1024)
    }

    #[test]
    fn iipsrv_image_head_defaults_to_200() {
        let r = parse(b"Server: iipsrv/1.1\r\nContent-Type: image/jpeg\r\nContent-Length: 3\r\n\r\n\xFF\xD8\xFF").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(r.header("CONTENT-LENGTH"), Some("3"));
        assert_eq!(r.header("Last-Modified"), None);
        assert_eq!(&r.body[..], b"\xFF\xD8\xFF");
    }

    #[test]
    fn status_line_sets_the_status_and_is_not_a_header() {
        let r = parse(b"Server: iipsrv/1.1\r\nStatus: 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.headers, [("Server".to_owned(), "iipsrv/1.1".to_owned())]);
        assert_eq!(&r.body[..], b"nope");
        assert_eq!(parse(b"Status: 304\r\n\r\n").unwrap().status, 304);
    }

    #[test]
    fn bare_newlines_and_an_empty_body_are_fine() {
        let r = parse(b"Status: 400 Bad Request\nContent-Type: text/plain\n\n").unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn the_first_blank_line_ends_the_head() {
        // iipsrv's pct:110 bug puts a second head into the body; that stays body.
        let r = parse(b"Content-Type: image/jpeg\r\n\r\nStatus: 400\r\n\r\nx").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"Status: 400\r\n\r\nx");
        let r = parse(b"A: b\n\nC: d\r\n\r\n").unwrap();
        assert_eq!(&r.body[..], b"C: d\r\n\r\n");
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for bad in [
            &b"no colon here\r\n\r\n"[..],
            b"Status: abc\r\n\r\n",
            b"Status: 42\r\n\r\n",
            b"Status: 200\r\nStatus: 404\r\n\r\n",
            b"Bad Name: x\r\n\r\n",
            b": empty name\r\n\r\n",
            b"X: a\rb\r\n\r\n",
            b"Content-Type: image/jpeg\r\n",
            b"",
        ] {
            assert!(
                matches!(parse(bad), Err(FcgiError::BadHead(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_head_is_bounded() {
        let mut big = b"X: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 100));
        big.extend_from_slice(b"\r\n\r\nbody");
        assert!(parse_response(Bytes::from(big.clone()), 64).is_err());
        assert!(parse_response(Bytes::from(big), 1024).is_ok());
    }
}
