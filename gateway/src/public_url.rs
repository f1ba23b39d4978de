//! Where the public URLs of this service start, as a client should see them, and who the client
//! is.
//!
//! Every id in an info.json, every `Location` and every `Link` must name the service as the
//! client reached it (`https://images.example.org/iiif/3/…`), not as the gateway was reached on
//! its socket. The safe source is configuration (`public_base_url`). Without it, the `Host` header
//! and what the nearest proxy added to the forwarded headers ([`crate::forwarded`]) are believed
//! only from configured trusted proxies: taking them from anyone would let a client plant its own
//! host in cached info.json bodies.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::forwarded::{self, ForwardedHeaders, ProxyHeaders};

/// The request headers that may name the public origin or the client.
#[derive(Debug, Default, Clone, Copy)]
pub struct OriginHeaders<'a> {
    pub host: Option<&'a str>,
    pub proxy: ProxyHeaders<'a>,
}

/// The proxies whose headers are believed, and which header family they set.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    pub networks: Vec<IpNet>,
    pub headers: ForwardedHeaders,
}

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer itself, or behind trusted proxies the address they
    /// recorded (see [`forwarded::client_address`]).
    pub fn client_address(&self, peer: IpAddr, headers: &ProxyHeaders<'_>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let chain = headers.client_chain(self.headers);
        forwarded::client_address(peer, &chain, |ip| self.contains(ip))
    }
}

/// How the public origin is decided.
#[derive(Debug, Clone)]
pub struct PublicOrigin {
    configured: Option<String>,
    proxies: TrustedProxies,
    listen: SocketAddr,
}

impl PublicOrigin {
    pub fn new(configured: Option<String>, proxies: TrustedProxies, listen: SocketAddr) -> Self {
        PublicOrigin {
            configured,
            proxies,
            listen,
        }
    }

    /// The public `scheme://host[:port][/prefix]` for one request, without a trailing slash.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: OriginHeaders<'_>) -> String {
        if let Some(configured) = &self.configured {
            return configured.clone();
        }
        if peer.is_some_and(|ip| self.proxies.contains(ip)) {
            let nearest = headers.proxy.nearest(self.proxies.headers);
            let host = nearest
                .host
                .or(headers.host)
                .filter(|host| is_plausible_host(host));
            if let Some(host) = host {
                let scheme = match nearest.proto {
                    Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
                    _ => "http",
                };
                let prefix = nearest
                    .prefix
                    .map(|p| p.trim_end_matches('/'))
                    .filter(|p| is_plausible_prefix(p))
                    .unwrap_or("");
                return format!("{scheme}://{host}{prefix}");
            }
        }
        format!("http://{}", self.listen)
    }
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

    fn proxies(headers: ForwardedHeaders) -> TrustedProxies {
        TrustedProxies {
            networks: vec!["10.0.0.0/8".parse().unwrap()],
            headers,
        }
    }

    fn origin(configured: Option<&str>) -> PublicOrigin {
        PublicOrigin::new(
            configured.map(str::to_owned),
            proxies(ForwardedHeaders::XForwarded),
            "127.0.0.1:8080".parse().unwrap(),
        )
    }

    fn forwarded(
        proto: Option<&'static str>,
        host: Option<&'static str>,
        prefix: Option<&'static str>,
    ) -> ProxyHeaders<'static> {
        ProxyHeaders {
            forwarded_proto: proto,
            forwarded_host: host,
            forwarded_prefix: prefix,
            ..Default::default()
        }
    }

    const PROXY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));
    const STRANGER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn configured_base_wins_over_any_header() {
        let headers = OriginHeaders {
            host: Some("evil.example"),
            proxy: forwarded(None, Some("evil.example"), None),
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
            proxy: forwarded(Some("https"), Some("evil.example"), Some("/x")),
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
            proxy: forwarded(Some("https"), Some("images.example.org"), Some("/media/")),
        };
        assert_eq!(
            origin(None).resolve(PROXY, headers),
            "https://images.example.org/media"
        );
    }

    #[test]
    fn what_a_client_put_before_the_proxys_value_is_ignored() {
        // nginx with `proxy_set_header X-Forwarded-Host "$http_x_forwarded_host, $host"`.
        let headers = OriginHeaders {
            host: Some("internal:8080"),
            proxy: forwarded(
                Some("http, https"),
                Some("evil.example, images.example.org"),
                Some("/evil, /media"),
            ),
        };
        assert_eq!(
            origin(None).resolve(PROXY, headers),
            "https://images.example.org/media"
        );
    }

    #[test]
    fn rfc_7239_forwarded_when_configured() {
        let origin = PublicOrigin::new(
            None,
            proxies(ForwardedHeaders::Forwarded),
            "127.0.0.1:8080".parse().unwrap(),
        );
        let headers = OriginHeaders {
            host: Some("internal:8080"),
            proxy: ProxyHeaders {
                forwarded: Some("host=evil.example, for=192.0.2.1;proto=https;host=img.example"),
                forwarded_host: Some("ignored.example"),
                ..Default::default()
            },
        };
        assert_eq!(origin.resolve(PROXY, headers), "https://img.example");
    }

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        let trusted = proxies(ForwardedHeaders::XForwarded);
        let headers = ProxyHeaders {
            forwarded_for: Some("203.0.113.1, 198.51.100.7"),
            ..Default::default()
        };
        let stranger = STRANGER.unwrap();
        assert_eq!(trusted.client_address(stranger, &headers), stranger);
        assert_eq!(
            trusted.client_address(PROXY.unwrap(), &headers),
            "198.51.100.7".parse::<IpAddr>().unwrap()
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
            proxy: forwarded(None, None, Some("/x\"><script>")),
        };
        assert_eq!(
            origin(None).resolve(PROXY, headers),
            "http://127.0.0.1:8080"
        );
        let headers = OriginHeaders {
            host: Some("ok.example"),
            proxy: forwarded(None, None, Some("/x\"><script>")),
        };
        assert_eq!(origin(None).resolve(PROXY, headers), "http://ok.example");
    }
}
