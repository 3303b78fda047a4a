//! Forwarding to the upstream: header rewriting (hop-by-hop removal, identity headers that clients
//! can never forge, X-Forwarded-*), one pooled keep-alive client, streamed bodies both ways.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::authn::all_visible;
use crate::body::{self, Body, Outbound};
use crate::config::{IdentityConfig, UpstreamConfig};
use crate::error::{ApiError, TokenError};
use crate::forwarded::Relayed;
use crate::token::Claims;
use crate::upstream::{Outgoing, Upstream, UpstreamBody, UpstreamError};
use crate::websocket;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), and h2c's
/// `HTTP2-Settings` (RFC 7540 §3.2.1), which only an upgrade to HTTP/2 has any use for.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("http2-settings"),
];

/// Headers that frameworks read as a request's method or path instead of the request line's
/// (Rails, Express's `method-override`, Symfony and Laravel; IIS's URL rewriting): the route was
/// decided on the request line, so these never reach the app, in any spelling.
const OVERRIDES: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// The form in which two header names mean the same to the app: lower case, `_` as `-`, since
/// WSGI and CGI read `X_Auth_User_Id` and `X-Auth-User-Id` as one header.
pub fn header_key(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

/// Whether any header is hop-by-hop: one look at each name, without hashing, since most
/// messages carry none.
pub fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "http2-settings"
        )
    })
}

/// Removes `Connection` and every header it names, then the fixed hop-by-hop list.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !has_hop_by_hop(headers) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether `name` is `key` once its letters are lower-cased and its `_` read as `-`; compares
/// in place, since it runs for every header of every request.
fn same_header(name: &str, key: &str) -> bool {
    name.len() == key.len()
        && name.bytes().zip(key.bytes()).all(|(n, k)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            n == k
        })
}

/// Header names that only authgate may send (identity and forwarding headers, overrides), kept
/// in the form `header_key` gives. A client's copy is never passed on, whatever its case or
/// separators.
pub struct OwnedHeaders {
    keys: Vec<String>,
    /// Bit `n` is set when some key is `n` bytes long: most of a request's fields differ in
    /// length from every key, and are let through after one look at this.
    lengths: u64,
}

impl OwnedHeaders {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> OwnedHeaders {
        let keys: Vec<String> = names.into_iter().map(header_key).collect();
        let lengths = keys
            .iter()
            .filter(|key| key.len() < 64)
            .fold(0, |set, key| set | 1 << key.len());
        OwnedHeaders { keys, lengths }
    }

    /// Whether `name` is one of these, once its letters are lower-cased and its `_` read as `-`.
    pub fn contains(&self, name: &str) -> bool {
        let length = name.len();
        (length >= 64 || self.lengths >> length & 1 == 1)
            && self.keys.iter().any(|key| same_header(name, key))
    }
}

/// The client at the other end of a connection, shared by the connection's requests: its
/// `X-Forwarded-For` value, made once per connection rather than for every request, and its place
/// under `max_connections`, held until the connection and any tunnel opened on it have closed.
pub struct Peer {
    pub addr: SocketAddr,
    /// One of `server.trusted_proxies`, whose forwarding headers are believed.
    pub trusted: bool,
    forwarded_for: HeaderValue,
    _place: OwnedSemaphorePermit,
}

impl Peer {
    pub fn new(addr: SocketAddr, trusted: bool, place: OwnedSemaphorePermit) -> Peer {
        let forwarded_for = HeaderValue::from_str(&addr.ip().to_string())
            .expect("an IP address is a valid header value");
        Peer {
            addr,
            trusted,
            forwarded_for,
            _place: place,
        }
    }
}

/// Resolves when a tunnel must close: the token that opened it has expired or was revoked.
pub type TunnelEnd = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A client's WebSocket handshake, and what the tunnel that follows the app's 101 holds and obeys.
pub struct Upgrade {
    client: OnUpgrade,
    /// Keeps the connection's place under `max_connections` while the tunnel is open.
    peer: Arc<Peer>,
    /// `None` on a public route.
    ends: Option<TunnelEnd>,
}

impl Upgrade {
    pub fn new(client: OnUpgrade, peer: Arc<Peer>, ends: Option<TunnelEnd>) -> Upgrade {
        Upgrade { client, peer, ends }
    }
}

pub struct Forwarder {
    upstream: Upstream,
    /// `Host` for a request that came without one (HTTP/1.0).
    upstream_host: HeaderValue,
    identity: IdentityConfig,
    /// Headers only authgate may set: identity and forwarding headers; and overrides, which it
    /// never sends.
    owned: OwnedHeaders,
}

impl Forwarder {
    pub fn new(upstream: &UpstreamConfig, identity: &IdentityConfig) -> Forwarder {
        let authority = upstream
            .base
            .authority()
            .expect("the upstream URL is validated to have a host");
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let owned = OwnedHeaders::new(
            [
                identity.user_id_header.as_str(),
                identity.username_header.as_str(),
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-real-ip",
                "forwarded",
            ]
            .into_iter()
            .chain(OVERRIDES),
        );
        Forwarder {
            upstream: Upstream::new(
                address,
                upstream.connect_timeout,
                upstream.timeout,
                upstream.pool_idle_timeout,
            ),
            upstream_host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            identity: identity.clone(),
            owned,
        }
    }

    /// Closes the pool's idle connections that can no longer be used (see `Upstream::prune_idle`).
    pub fn prune_idle(&self) {
        self.upstream.prune_idle();
    }

    /// Sends a request `rewrite` made to the upstream. The answer streams back with its
    /// hop-by-hop headers removed.
    ///
    /// A WebSocket handshake keeps its `Upgrade` header; when the upstream completes it with a
    /// 101 (the upstream client accepts no other), the two connections are joined and bytes flow
    /// both ways until either side closes.
    pub async fn send(
        &self,
        outgoing: Outgoing,
        upgrade: Option<Upgrade>,
    ) -> Result<Response<Outbound>, ApiError> {
        let mut response = match self.upstream.send(outgoing).await {
            Ok(response) => response,
            Err(UpstreamError::Timeout) => return Err(ApiError::UpstreamTimeout),
            Err(e) => {
                tracing::warn!(error = %e, "upstream request failed");
                return Err(ApiError::UpstreamUnavailable);
            }
        };
        if let (Some(upgrade), StatusCode::SWITCHING_PROTOCOLS) = (upgrade, response.status()) {
            return Ok(join_upgraded(upgrade, response).map(Outbound::Boxed));
        }
        remove_hop_by_hop(response.headers_mut());
        Ok(response.map(Outbound::Upstream))
    }

    /// `request` as the upstream gets it, at `path_and_query` (already normalised) and as
    /// `identity` when the route needed a token, encoded; and the client's side of an upgrade
    /// when it is a WebSocket handshake. Any other request to switch protocols (`h2c`, say) is
    /// forwarded without its `Upgrade`, as a plain request. The client's head is dropped here
    /// (see `dispatch::handle`).
    pub fn rewrite(
        &self,
        mut request: Request<Incoming>,
        path_and_query: &str,
        identity: Option<&Claims>,
        peer: &Peer,
        relayed: Option<&Relayed>,
    ) -> Result<(Outgoing, Option<OnUpgrade>), ApiError> {
        // An upgrade needs a Connection header, which is hop-by-hop: most requests skip both.
        let hop_by_hop = has_hop_by_hop(request.headers());
        let websocket = hop_by_hop
            .then(|| {
                websocket::handshake_accept(request.method(), request.version(), request.headers())
            })
            .flatten();
        let client_upgrade = websocket
            .is_some()
            .then(|| hyper::upgrade::on(&mut request));
        let (mut parts, incoming) = request.into_parts();
        if hop_by_hop {
            remove_hop_by_hop(&mut parts.headers);
        }
        if parts.version == Version::HTTP_2 {
            join_cookies(&mut parts.headers);
        }

        // A look at each name rather than a hashed lookup: cheaper for a head's few fields.
        let sent_host = parts
            .headers
            .iter()
            .find(|&(name, _)| name == header::HOST)
            .map(|(_, value)| value.as_bytes());
        // An absolute-form target names the host itself (an authority is a valid header value);
        // HTTP/1.0 may name none.
        let host = sent_host.or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()));
        // Written after the client's own headers, none of which has any of these names now:
        // added this way rather than into the map, which would grow and rehash for them.
        let mut extra = Extra::default();
        if sent_host.is_none() {
            // The upstream gets HTTP/1.1, which needs a Host.
            extra.push("host", host.unwrap_or(self.upstream_host.as_bytes()));
        }
        if let Some(host) = host {
            extra.push("x-forwarded-host", host);
        }
        let (client, proto) = match relayed {
            Some(relayed) => (relayed.forwarded_for.as_bytes(), relayed.proto.as_bytes()),
            None => (peer.forwarded_for.as_bytes(), &b"http"[..]),
        };
        extra.push("x-forwarded-for", client);
        extra.push("x-forwarded-proto", proto);
        // Apps behind nginx often believe `X-Real-IP`: it names the same one client.
        extra.push("x-real-ip", client);
        if websocket.is_some() {
            extra.push("upgrade", b"websocket");
            extra.push("connection", b"upgrade");
        }
        if let Some(claims) = identity {
            // Names are sent as UTF-8; one that cannot be a header value at all (a control
            // character in a token signed elsewhere) is refused rather than forwarded without it.
            for (name, value) in [
                (&self.identity.user_id_header, &claims.sub),
                (&self.identity.username_header, &claims.username),
            ] {
                if !is_field_value(value.as_bytes()) {
                    return Err(ApiError::Token(TokenError::Invalid("Invalid token claims")));
                }
                extra.push(name.as_str(), value.as_bytes());
            }
        }

        // Origin form, since the connection already goes to the upstream. Made of a normalised
        // path and a query hyper parsed, it holds no blank or control character to end the
        // request line early; checked anyway, as it is written out verbatim.
        if !all_visible(path_and_query.as_bytes()) {
            return Err(ApiError::BadRequest("Bad request target".into()));
        }
        // A bodiless request (most) is not boxed at all.
        let body = (!incoming.is_end_stream()).then(|| body::stream(incoming));
        let mut outgoing = Outgoing::new(&parts, path_and_query, body, extra.fields(), |name| {
            self.owned.contains(name)
        });
        if let Some(accept) = websocket {
            outgoing.expect_switch(accept);
        }
        Ok((outgoing, client_upgrade))
    }
}

/// Headers authgate adds to a request, at most ten.
#[derive(Default)]
struct Extra<'a> {
    fields: [(&'a str, &'a [u8]); 10],
    count: usize,
}

impl<'a> Extra<'a> {
    fn push(&mut self, name: &'a str, value: &'a [u8]) {
        self.fields[self.count] = (name, value);
        self.count += 1;
    }

    fn fields(&self) -> &[(&'a str, &'a [u8])] {
        &self.fields[..self.count]
    }
}

/// Whether `bytes` reach the app unchanged as a header field's value (RFC 9110 §5.5): visible
/// characters, spaces and tabs, no control characters, so nothing can end the field early; and
/// no space or tab at either end, which every HTTP parser trims (`" admin "` would arrive as
/// `admin`).
fn is_field_value(bytes: &[u8]) -> bool {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    !bytes.first().is_some_and(blank)
        && !bytes.last().is_some_and(blank)
        && bytes
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Joins the `cookie` fields of an HTTP/2 request into one, with `; `, as RFC 9113 §8.2.3 asks
/// before a request goes on over HTTP/1.1, where apps read only one `Cookie` line.
fn join_cookies(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    let joined = HeaderValue::from_bytes(&joined).expect("joined field values stay valid");
    headers.insert(header::COOKIE, joined);
}

/// Answers the client with the upstream's 101 and, once the client has switched too, copies bytes
/// between the two connections until either side closes, or until the token that opened the
/// tunnel is no longer valid: then both connections are closed.
fn join_upgraded(upgrade: Upgrade, response: Response<UpstreamBody>) -> Response<Body> {
    let (parts, upstream) = response.into_parts();
    if let Some((mut upstream, sent_early)) = upstream.into_upgraded() {
        tokio::spawn(async move {
            let Upgrade { client, peer, ends } = upgrade;
            let client = match client.await {
                Ok(client) => client,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            if client.write_all(&sent_early).await.is_err() {
                return;
            }
            let tunnel = tokio::io::copy_bidirectional(&mut client, &mut upstream);
            match ends {
                None => drop(tunnel.await),
                Some(ends) => tokio::select! {
                    _ = tunnel => {}
                    () = ends => tracing::debug!("tunnel closed: its token expired or was revoked"),
                },
            }
            drop(peer);
        });
    }
    // The 101's Connection and Upgrade headers are the handshake itself: they stay.
    Response::from_parts(parts, body::full(bytes::Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// RFC 9110 §7.6.1: `Connection` and the headers it names go, with the fixed hop-by-hop set.
    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("x-secret-hop", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    /// The quick check and the list that is removed name the same headers.
    #[test]
    fn the_hop_by_hop_check_knows_every_hop_by_hop_header() {
        for name in &HOP_BY_HOP {
            assert!(
                has_hop_by_hop(&map(&[("accept", "*/*"), (name.as_str(), "x")])),
                "{name}"
            );
        }
        let ordinary = map(&[
            ("host", "a"),
            ("authorization", "b"),
            ("te-x", "c"),
            ("x-upgrade", "d"),
        ]);
        assert!(!has_hop_by_hop(&ordinary));
    }

    #[test]
    fn field_values_may_hold_anything_but_control_characters_or_blank_ends() {
        assert!(is_field_value(b"J\xc3\xbcrgen O'Brien\t(admin)"));
        assert!(is_field_value(b""));
        for bad in [
            &b"a\r\nx-auth-user-id: 1"[..],
            b"a\nb",
            b"nul\0",
            b"del\x7f",
            b" admin",
            b"admin ",
            b"admin\t",
        ] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }

    /// RFC 9113 §8.2.3: one `Cookie` line for HTTP/1.1, its pairs in the order they came.
    #[test]
    fn http2_cookie_fields_are_joined_in_order() {
        let mut h = map(&[
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2; c=3"),
            ("cookie", "d=4"),
        ]);
        join_cookies(&mut h);
        assert_eq!(values(&h, "cookie"), ["a=1; b=2; c=3; d=4"]);
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(values(&one, "cookie"), ["a=1; b=2"]);
        let mut none = map(&[("accept", "*/*")]);
        join_cookies(&mut none);
        assert!(none.get("cookie").is_none());
    }

    fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn owned_headers_go_in_any_case_and_with_underscores() {
        let long = "X-A-Header-Name-Longer-Than-Sixty-Four-Bytes-Which-Some-Deployments-Use";
        let owned = OwnedHeaders::new(["X-Auth-User-Id", long]);
        assert!(owned.contains(&long.to_ascii_lowercase().replace('-', "_")));
        assert!(!owned.contains(&format!("{long}x")));
        let h = map(&[
            ("x-auth-user-id", "1"),
            ("X_Auth_User_Id", "2"),
            ("x_auth-user_id", "3"),
            ("x-auth-user-idx", "kept"),
        ]);
        let left: Vec<&str> = h
            .keys()
            .map(|k| k.as_str())
            .filter(|name| !owned.contains(name))
            .collect();
        assert_eq!(left, ["x-auth-user-idx"]);
    }
}
