//! Where the public URLs of this service start, as a client should see them.
//!
//! Every id in an info.json, every `Location` and every `Link` must name the service as the
//! client reached it (`https://images.example.org/iiif/3/…`), not as the gateway was reached on
//! its socket. The safe source is configuration (`public_base_url`). Without it, the `Host` and
//! `X-Forwarded-Proto/Host/Prefix` headers are believed only from configured trusted proxies:
//! taking them from anyone would let a client plant its own host in cached info.json bodies.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The request headers that may name the public origin.
#[derive(Debug, Default, Clone, Copy)]
pub struct OriginHeaders<'a> {
    pub host: Option<&'a str>,
    pub forwarded_proto: Option<&'a str>,
    pub forwarded_host: Option<&'a str>,
    pub forwarded_prefix: Option<&'a str>,
}

/// How the public origin is decided.
#[derive(Debug, Clone)]
pub struct PublicOrigin {
    configured: Option<String>,
    trusted_proxies: Vec<IpNet>,
    listen: SocketAddr,
}

impl PublicOrigin {
    pub fn new(
        configured: Option<String>,
        trusted_proxies: Vec<IpNet>,
        listen: SocketAddr,
    ) -> Self {
        PublicOrigin {
            configured,
            trusted_proxies,
            listen,
        }
    }

    /// The public `scheme://host[:port][/prefix]` for one request, without a trailing slash.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: OriginHeaders<'_>) -> String {
        if let Some(configured) = &self.configured {
            return configured.clone();
        }
        let trusted =
            peer.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)));
        if trusted {
            let host = headers
                .forwarded_host
                .and_then(first_list_item)
                .or(headers.host)
                .filter(|host| is_plausible_host(host));
            if let Some(host) = host {
                let scheme = match headers.forwarded_proto.and_then(first_list_item) {
                    Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
                    _ => "http",
                };
                let prefix = headers
                    .forwarded_prefix
                    .map(|p| p.trim_end_matches('/'))
                    .filter(|p| is_plausible_prefix(p))
                    .unwrap_or("");
                return format!("{scheme}://{host}{prefix}");
            }
        }
        format!("http://{}", self.listen)
    }
}

/// Proxies append to `X-Forwarded-*` lists; the first entry is the client-facing one.
fn first_list_item(value: &str) -> Option<&str> {
    value
        .split(',')
        .map(str::trim)
        .find(|item| !item.is_empty())
}

/// A host header value that can be placed in a URL as is: a name or address with an optional port.
fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn is_plausible_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || (prefix.starts_with('/')
            && prefix.len() <= 200
            && prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~')
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(configured: Option<&str>) -> PublicOrigin {
        PublicOrigin::new(
            configured.map(str::to_owned),
            vec!["10.0.0.0/8".parse().unwrap()],
            "127.0.0.1:8080".parse().unwrap(),
        )
    }

    const PROXY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));
    const STRANGER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn configured_base_wins_over_any_header() {
        let headers = OriginHeaders {
            host: Some("evil.example"),
            forwarded_host: Some("evil.example"),
            ..Default::default()
        };
        assert_eq!(
            origin(Some("https://img.example.org")).resolve(PROXY, headers),
            "https://img.example.org"
        );
    }

    #[test]
    fn untrusted_peers_cannot_choose_the_host() {
        let headers = OriginHeaders {
            host: Some("evil.example"),
            forwarded_proto: Some("https"),
            forwarded_host: Some("evil.example"),
            forwarded_prefix: Some("/x"),
        };
        assert_eq!(
            origin(None).resolve(STRANGER, headers),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin(None).resolve(None, headers), "http://127.0.0.1:8080");
    }

    #[test]
    fn trusted_proxy_headers_build_the_origin() {
        let headers = OriginHeaders {
            host: Some("internal:8080"),
            forwarded_proto: Some("https, http"),
            forwarded_host: Some("images.example.org, internal"),
            forwarded_prefix: Some("/media/"),
        };
        assert_eq!(
            origin(None).resolve(PROXY, headers),
            "https://images.example.org/media"
        );
    }

    #[test]
    fn trusted_proxy_host_header_is_used_without_forwarded_host() {
        let headers = OriginHeaders {
            host: Some("images.example.org"),
            ..Default::default()
        };
        assert_eq!(
            origin(None).resolve(PROXY, headers),
            "http://images.example.org"
        );
    }

    #[test]
    fn malformed_hosts_and_prefixes_are_ignored() {
        let headers = OriginHeaders {
            host: Some("a\"b"),
            forwarded_prefix: Some("/x\"><script>"),
            ..Default::default()
        };
        assert_eq!(
            origin(None).resolve(PROXY, headers),
            "http://127.0.0.1:8080"
        );
        let headers = OriginHeaders {
            host: Some("ok.example"),
            forwarded_prefix: Some("/x\"><script>"),
            ..Default::default()
        };
        assert_eq!(origin(None).resolve(PROXY, headers), "http://ok.example");
    }
}
