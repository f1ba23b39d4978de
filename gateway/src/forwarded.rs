//! What a trusted proxy says about the request it forwarded: the client's address, and the
//! scheme, host and path prefix the client used.
//!
//! Two header families, and the operator says which one the nearest proxy sets
//! ([`ForwardedHeaders`]), because a proxy passes on the family it does not set exactly as the
//! client wrote it (nginx forwards a client's `Forwarded` header untouched unless told
//! otherwise):
//!
//! - `X-Forwarded-For`, `-Proto`, `-Host`, `-Prefix` (nginx, CloudFront, most load balancers);
//! - RFC 7239 `Forwarded: for=…;proto=…;host=…`.
//!
//! Proxies *append* to these lists, so the **last** item is the one the nearest proxy added and
//! everything before it may have come from the client. For the client's address the list is
//! walked from the right past every trusted proxy (a chain such as CloudFront → nginx → gateway).
//!
//! **Invariant:** pure: it parses header values, nothing else.

use std::net::{IpAddr, SocketAddr};

/// Which header family the trusted proxies set (`gateway.forwarded_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For/Proto/Host/Prefix`.
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded` (no prefix: the RFC has none).
    Forwarded,
}

impl ForwardedHeaders {
    /// Reads `x-forwarded` or `forwarded` as written in the configuration.
    pub fn from_config(value: &str) -> Option<ForwardedHeaders> {
        match value {
            "x-forwarded" => Some(ForwardedHeaders::XForwarded),
            "forwarded" => Some(ForwardedHeaders::Forwarded),
            _ => None,
        }
    }
}

/// The request headers a proxy may have set, as received.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyHeaders<'a> {
    pub forwarded: Option<&'a str>,
    pub forwarded_for: Option<&'a str>,
    pub forwarded_proto: Option<&'a str>,
    pub forwarded_host: Option<&'a str>,
    pub forwarded_prefix: Option<&'a str>,
}

/// What the nearest proxy said about the client's request; `None` where it said nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarded<'a> {
    pub proto: Option<&'a str>,
    pub host: Option<&'a str>,
    pub prefix: Option<&'a str>,
}

impl<'a> ProxyHeaders<'a> {
    /// The scheme, host and prefix the nearest proxy added (the last item of each list).
    pub fn nearest(&self, family: ForwardedHeaders) -> Forwarded<'a> {
        match family {
            ForwardedHeaders::XForwarded => Forwarded {
                proto: self.forwarded_proto.and_then(last_item),
                host: self.forwarded_host.and_then(last_item),
                prefix: self.forwarded_prefix.and_then(last_item),
            },
            ForwardedHeaders::Forwarded => {
                let last = self.forwarded.and_then(|value| elements(value).last());
                Forwarded {
                    proto: last.and_then(|element| parameter(element, "proto")),
                    host: last.and_then(|element| parameter(element, "host")),
                    prefix: None,
                }
            }
        }
    }

    /// The addresses the proxies recorded, nearest last (`for=` / `X-Forwarded-For`); an entry
    /// that is not an address (`unknown`, an obfuscated `_name`, garbage) is `None`.
    pub fn client_chain(&self, family: ForwardedHeaders) -> Vec<Option<IpAddr>> {
        match family {
            ForwardedHeaders::XForwarded => self
                .forwarded_for
                .map(|value| {
                    value
                        .split(',')
                        .map(|item| node_address(item.trim()))
                        .collect()
                })
                .unwrap_or_default(),
            ForwardedHeaders::Forwarded => self
                .forwarded
                .map(|value| {
                    elements(value)
                        .map(|element| parameter(element, "for").and_then(node_address))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The client's address: walking the recorded chain from the right, the first address that is
/// not a trusted proxy. `peer` itself must be trusted for the chain to be read at all (the
/// caller checks); an unreadable entry stops the walk (what is left of it cannot be believed),
/// and so does an empty chain: then the client is the last trusted hop seen.
pub fn client_address(
    peer: IpAddr,
    chain: &[Option<IpAddr>],
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(address) => {
                client = *address;
                if !is_trusted(*address) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The last non-empty item of a comma-separated list.
fn last_item(value: &str) -> Option<&str> {
    value
        .rsplit(',')
        .map(str::trim)
        .find(|item| !item.is_empty())
}

/// The elements of a `Forwarded` value: split on commas outside quoted strings.
fn elements(value: &str) -> impl Iterator<Item = &str> {
    split_outside_quotes(value, b',')
        .map(str::trim)
        .filter(|element| !element.is_empty())
}

/// The value of `name` in one `Forwarded` element (`for=…;proto=…`), unquoted.
fn parameter<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    split_outside_quotes(element, b';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let value = value.trim();
        // A quoted-string; escapes (`\"`) do not occur in addresses, hosts or schemes.
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

fn split_outside_quotes(value: &str, separator: u8) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let bytes = value.as_bytes();
    let mut index = 0;
    std::iter::from_fn(move || {
        if start > bytes.len() {
            return None;
        }
        while index < bytes.len() {
            let byte = bytes[index];
            index += 1;
            if byte == b'"' {
                quoted = !quoted;
            } else if byte == separator && !quoted {
                let item = &value[start..index - 1];
                start = index;
                return Some(item);
            }
        }
        let item = &value[start..];
        start = bytes.len() + 1;
        Some(item)
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_last_x_forwarded_item_is_the_nearest_proxys() {
        let headers = ProxyHeaders {
            forwarded_proto: Some("http, https"),
            forwarded_host: Some("evil.example, images.example.org"),
            forwarded_prefix: Some("/evil,/media"),
            ..Default::default()
        };
        assert_eq!(
            headers.nearest(ForwardedHeaders::XForwarded),
            Forwarded {
                proto: Some("https"),
                host: Some("images.example.org"),
                prefix: Some("/media"),
            }
        );
    }

    #[test]
    fn the_last_forwarded_element_is_the_nearest_proxys() {
        let headers = ProxyHeaders {
            forwarded: Some(
                r#"for=192.0.2.9;host=evil.example;proto=http, for="[2001:db8::17]:4711";proto=HTTPS;host="images.example.org""#,
            ),
            // Ignored in this mode, whatever they say.
            forwarded_host: Some("other.example"),
            forwarded_prefix: Some("/x"),
            ..Default::default()
        };
        assert_eq!(
            headers.nearest(ForwardedHeaders::Forwarded),
            Forwarded {
                proto: Some("HTTPS"),
                host: Some("images.example.org"),
                prefix: None,
            }
        );
        assert_eq!(
            headers.client_chain(ForwardedHeaders::Forwarded),
            vec![Some(ip("192.0.2.9")), Some(ip("2001:db8::17"))]
        );
    }

    #[test]
    fn forwarded_parameters_are_case_insensitive_and_quotes_protect_separators() {
        let headers = ProxyHeaders {
            forwarded: Some(r#"For="_hidden,x";HOST="a.example;b""#),
            ..Default::default()
        };
        assert_eq!(
            headers.nearest(ForwardedHeaders::Forwarded).host,
            Some("a.example;b")
        );
        assert_eq!(
            headers.client_chain(ForwardedHeaders::Forwarded),
            vec![None]
        );
    }

    #[test]
    fn node_addresses_in_every_spelling() {
        for (node, address) in [
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:4711", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
        ] {
            assert_eq!(node_address(node), Some(ip(address)), "{node}");
        }
        for node in ["unknown", "_gazonk", "", "1.2.3", "[::1", "example.org"] {
            assert_eq!(node_address(node), None, "{node}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted = |a: IpAddr| a.to_string().starts_with("10.");
        let proxy = ip("10.0.0.2");
        // client 198.51.100.7 → CloudFront-like 10.9.9.9 → nginx 10.0.0.2 → gateway; the
        // client also tried to plant 203.0.113.1 at the left.
        let chain = [
            Some(ip("203.0.113.1")),
            Some(ip("198.51.100.7")),
            Some(ip("10.9.9.9")),
        ];
        assert_eq!(client_address(proxy, &chain, trusted), ip("198.51.100.7"));
        // Nothing recorded: the proxy itself.
        assert_eq!(client_address(proxy, &[], trusted), proxy);
        // Garbage stops the walk at the last believable hop.
        let chain = [Some(ip("198.51.100.7")), None, Some(ip("10.9.9.9"))];
        assert_eq!(client_address(proxy, &chain, trusted), ip("10.9.9.9"));
    }

    #[test]
    fn x_forwarded_for_chains() {
        let headers = ProxyHeaders {
            forwarded_for: Some("203.0.113.1, 198.51.100.7 ,unknown"),
            ..Default::default()
        };
        assert_eq!(
            headers.client_chain(ForwardedHeaders::XForwarded),
            vec![Some(ip("203.0.113.1")), Some(ip("198.51.100.7")), None]
        );
    }

    #[test]
    fn splitting_never_loses_or_invents_text() {
        let parts: Vec<&str> = split_outside_quotes(r#"a,"b,c",,d"#, b',').collect();
        assert_eq!(parts, vec!["a", r#""b,c""#, "", "d"]);
        let parts: Vec<&str> = split_outside_quotes("", b',').collect();
        assert_eq!(parts, vec![""]);
        // An unterminated quote swallows the rest.
        let parts: Vec<&str> = split_outside_quotes(r#"a,"b,c"#, b',').collect();
        assert_eq!(parts, vec!["a", r#""b,c"#]);
    }
}
