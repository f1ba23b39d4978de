//! Protocol-level probes: each one connects and asks the service something in its own
//! protocol, so "ready" means "answers", never "a process of that name exists". A probe returns
//! why it failed, for the readiness error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one probe may take to connect and to read its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one probe: why the service did not answer as expected.
pub type Probe = Result<(), String>;

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(stream)
}

/// The status of `GET path` over HTTP/1.0.
///
/// # Errors
/// Why there was no HTTP answer.
pub fn http_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let mut filled = 0;
    // The status line is all we need; it fits in the first bytes of any answer.
    while filled < head.len() && !head[..filled].contains(&b'\n') {
        match stream.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
    parse_status_line(&head[..filled]).ok_or_else(|| {
        format!(
            "{addr} answered {:?}, not HTTP",
            String::from_utf8_lossy(&head[..filled])
        )
    })
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next()?.strip_prefix("HTTP/")?;
    parts.next()?.parse().ok()
}

/// Something accepts connections at `addr` (for a listener whose protocol answer is checked
/// elsewhere: a request would be counted by the service).
pub fn accepts(addr: SocketAddr) -> Probe {
    connect(addr).map(drop)
}

/// Any HTTP answer to `GET path` (Garage's S3 API answers an unsigned request with an error,
/// which is still an answer).
pub fn http_answers(addr: SocketAddr, path: &str) -> Probe {
    http_status(addr, path).map(|_| ())
}

/// `GET path` answers `want`.
pub fn http_status_is(addr: SocketAddr, path: &str, want: u16) -> Probe {
    match http_status(addr, path)? {
        status if status == want => Ok(()),
        status => Err(format!(
            "GET {path} on {addr} answered {status}, not {want}"
        )),
    }
}

/// FastCGI record types of the management exchange (FastCGI 1.0 spec, section 4.1).
const FCGI_GET_VALUES: u8 = 9;
const FCGI_GET_VALUES_RESULT: u8 = 10;

/// A FastCGI `GET_VALUES` management record asking for `FCGI_MPXS_CONNS`: answered by the
/// FastCGI library itself, before and without any request, so it costs iipsrv nothing.
fn get_values_record() -> Vec<u8> {
    const NAME: &[u8] = b"FCGI_MPXS_CONNS";
    let mut content = vec![NAME.len() as u8, 0];
    content.extend_from_slice(NAME);
    let padding = (8 - content.len() % 8) % 8;
    let mut record = vec![
        1,
        FCGI_GET_VALUES,
        0,
        0,
        0,
        content.len() as u8,
        padding as u8,
        0,
    ];
    record.extend_from_slice(&content);
    record.resize(record.len() + padding, 0);
    record
}

/// The FastCGI server at `addr` answers a `GET_VALUES` management record.
pub fn fastcgi(addr: SocketAddr) -> Probe {
    let mut stream = connect(addr)?;
    stream
        .write_all(&get_values_record())
        .map_err(|e| format!("send FCGI_GET_VALUES to {addr}: {e}"))?;
    let mut header = [0u8; 8];
    stream
        .read_exact(&mut header)
        .map_err(|e| format!("read the FastCGI answer from {addr}: {e}"))?;
    if header[0] == 1 && header[1] == FCGI_GET_VALUES_RESULT {
        Ok(())
    } else {
        Err(format!(
            "{addr} answered FastCGI record type {} (version {}), not GET_VALUES_RESULT",
            header[1], header[0]
        ))
    }
}

/// Redis at `url` answers `PING` with `PONG` (authenticated with the URL's password; over TLS
/// for `rediss://`, trusting `ca` when given).
pub fn redis(url: &str, ca: Option<&[u8]>) -> Probe {
    let client = crate::redis::client(url, ca).map_err(|e| format!("{url}: {e}"))?;
    let mut connection = client
        .get_connection_with_timeout(PROBE_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    let answer: String = redis::cmd("PING")
        .query(&mut connection)
        .map_err(|e| format!("PING: {e}"))?;
    if answer == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {answer:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 403 Forbidden"), Some(403));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn the_get_values_record_is_padded_to_eight_bytes() {
        let record = get_values_record();
        assert_eq!(record.len() % 8, 0);
        assert_eq!(&record[..2], &[1, FCGI_GET_VALUES]);
        let length = u16::from_be_bytes([record[4], record[5]]) as usize;
        assert_eq!(8 + length + record[6] as usize, record.len());
    }

    #[test]
    fn a_server_that_accepts_but_does_not_speak_fails_the_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = std::thread::spawn(move || {
            // Accept two connections and close them without a word.
            for _ in 0..2 {
                drop(listener.accept());
            }
        });
        assert!(http_answers(addr, "/").is_err());
        assert!(fastcgi(addr).is_err());
        silent.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let port = crate::ports::free_port();
        let error = http_answers(([127, 0, 0, 1], port).into(), "/").unwrap_err();
        assert!(error.starts_with("connect to"), "{error}");
    }
}
