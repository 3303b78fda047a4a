//! Who the client is when proxies that authgate trusts (`server.trusted_proxies`: an ingress, a
//! load balancer) stand in front of it. Each proxy appends the address it was reached from to
//! `X-Forwarded-For`, so the list is read from the right: the first address that is not a trusted
//! proxy is the client's. Whatever a client wrote further left is never believed, and nothing is
//! believed from a peer that is not trusted.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::HeaderName;
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether `addr` is one of the trusted proxies (an IPv4 address mapped into IPv6, as a
/// dual-stack listener reports it, counts as the IPv4 address).
pub(crate) fn is_trusted(addr: IpAddr, trusted: &[IpNet]) -> bool {
    let addr = addr.to_canonical();
    trusted.iter().any(|network| network.contains(&addr))
}

/// What a trusted proxy says of the client it relays a request for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relayed {
    /// The client's address: for the per-address login throttle, and for the app.
    pub(crate) client: IpAddr,
    /// `client` as the app's `X-Forwarded-For`: the one address, so an app that believes the last
    /// entry of the list (as behind one proxy) gets the client, not the proxy.
    pub(crate) forwarded_for: String,
    /// The scheme the client used, as the proxy says (`https` where it ended TLS).
    pub(crate) proto: &'static str,
}

impl Relayed {
    /// Reads the forwarding headers of a request from `peer`, which is a trusted proxy.
    #[cold]
    pub(crate) fn read(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Relayed {
        let client = client_address(peer, headers, trusted);
        Relayed {
            client,
            forwarded_for: client.to_string(),
            proto: forwarded_proto(headers),
        }
    }
}

/// Walks `X-Forwarded-For` from the right while the address in hand is a trusted proxy. An
/// entry that is not an address ends the walk at the last proxy: nothing left of it can be
/// placed.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // Last field first, each from its end. A field that is not text is one entry that is not an
    // address.
    let entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or("?").rsplit(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    let mut client = peer.to_canonical();
    for entry in entries {
        if !is_trusted(client, trusted) {
            break;
        }
        match address(entry) {
            Some(address) => client = address,
            None => break,
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, or an address with a port as some balancers write it.
fn address(entry: &str) -> Option<IpAddr> {
    let addr = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(addr.to_canonical())
}

/// The last proxy's `X-Forwarded-Proto`, when it is `http` or `https`; `http` otherwise.
fn forwarded_proto(headers: &HeaderMap) -> &'static str {
    let last = headers
        .get_all(&X_FORWARDED_PROTO)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|list| list.rsplit(',').next())
        .map(str::trim);
    match last {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn client(peer: &str, forwarded_for: &[&str], trusted: &[&str]) -> String {
        let h = headers("x-forwarded-for", forwarded_for);
        client_address(peer.parse().unwrap(), &h, &nets(trusted)).to_string()
    }

    #[test]
    fn the_first_untrusted_address_from_the_right_is_the_client() {
        let ingress = ["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.5", &["203.0.113.7"], &ingress),
            "203.0.113.7"
        );
        // What the client wrote itself, left of what the ingress appended, is not believed.
        assert_eq!(
            client("10.0.0.5", &["1.1.1.1, 203.0.113.7"], &ingress),
            "203.0.113.7"
        );
        // Two trusted hops, and the list spread over two fields.
        assert_eq!(
            client("10.0.0.5", &["198.51.100.2, 1.1.1.1", "10.9.9.9"], &ingress),
            "1.1.1.1"
        );
        // Every hop trusted: the leftmost.
        assert_eq!(client("10.0.0.5", &["10.1.1.1"], &ingress), "10.1.1.1");
    }

    #[test]
    fn without_a_usable_list_the_proxy_itself_is_the_client() {
        let ingress = ["10.0.0.0/8"];
        assert_eq!(client("10.0.0.5", &[], &ingress), "10.0.0.5");
        assert_eq!(client("10.0.0.5", &["unknown"], &ingress), "10.0.0.5");
        // Garbage ends the walk at the last trusted hop, whatever lies left of it.
        assert_eq!(
            client("10.0.0.5", &["203.0.113.7, junk, 10.2.2.2"], &ingress),
            "10.2.2.2"
        );
    }

    #[test]
    fn ports_ipv6_and_mapped_addresses_are_understood() {
        let ingress = ["10.0.0.0/8", "fd00::/8"];
        assert_eq!(
            client("fd00::1", &["[2001:db8::7]:4711"], &ingress),
            "2001:db8::7"
        );
        assert_eq!(
            client("::ffff:10.0.0.5", &["203.0.113.7:80"], &ingress),
            "203.0.113.7"
        );
        assert!(is_trusted(
            "::ffff:10.0.0.5".parse().unwrap(),
            &nets(&ingress)
        ));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &nets(&ingress)));
    }

    #[test]
    fn the_scheme_is_the_last_proxys_and_only_http_or_https() {
        let proto = |values: &[&str]| forwarded_proto(&headers("x-forwarded-proto", values));
        assert_eq!(proto(&["https"]), "https");
        assert_eq!(proto(&["HTTPS"]), "https");
        assert_eq!(proto(&["https, http"]), "http");
        assert_eq!(proto(&["http", "https"]), "https");
        assert_eq!(proto(&["javascript"]), "http");
        assert_eq!(proto(&[]), "http");
    }
}
