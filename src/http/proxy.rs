//! Forwarding to the upstream: header rewriting (hop-by-hop removal, identity headers that clients
//! can never forge, X-Forwarded-*), one pooled keep-alive client, streamed bodies both ways.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::config::{IdentityConfig, UpstreamConfig};
use crate::core::assertion::AssertionSigner;
use crate::core::forwarded::Relayed;
use crate::core::headers::{
    CLIENT_ADDRESSES, OVERRIDES, OwnedHeaders, has_hop_by_hop, is_field_value, is_forwarded_detail,
    join_cookies, remove_hop_by_hop,
};
use crate::core::token::TokenError;
use crate::core::token::{Claims, unix_now};
use crate::core::websocket;
use crate::http::authn::all_visible;
use crate::http::body::{self, Body, Outbound};
use crate::http::error::ApiError;
use crate::upstream::{Outgoing, Upstream, UpstreamBody};

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
    /// Signs the identity the app gets, when `identity.assertion_header` is set.
    assertions: Option<AssertionSigner>,
    /// Headers only authgate may set: identity and forwarding headers; and overrides, which it
    /// never sends.
    owned: OwnedHeaders,
}

impl Forwarder {
    /// `issuer`: the `iss` of assertions, `tokens.issuer`.
    pub fn new(upstream: &UpstreamConfig, identity: &IdentityConfig, issuer: &str) -> Forwarder {
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
                identity.roles_header.as_str(),
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-real-ip",
                "forwarded",
            ]
            .into_iter()
            // A client's assertion never reaches the app, even with assertions off (a replica
            // not yet configured for them): an app that verifies them would believe it.
            .chain([identity
                .assertion
                .as_ref()
                .map_or("x-auth-assertion", |a| a.header.as_str())])
            .chain(OVERRIDES)
            .chain(CLIENT_ADDRESSES),
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
            assertions: identity
                .assertion
                .as_ref()
                .map(|config| AssertionSigner::new(config, issuer)),
            owned,
        }
    }

    /// Closes the pool's idle connections that can no longer be used (see `Upstream::prune_idle`).
    pub fn prune_idle(&self) {
        self.upstream.prune_idle();
    }

    /// Sends a request `rewrite` made to the upstream at `now`. The answer streams back with its
    /// hop-by-hop headers removed.
    ///
    /// A WebSocket handshake keeps its `Upgrade` header; when the upstream completes it with a
    /// 101 (the upstream client accepts no other), the two connections are joined and bytes flow
    /// both ways until either side closes.
    pub async fn send(
        &self,
        outgoing: Outgoing,
        upgrade: Option<Upgrade>,
        now: Instant,
    ) -> Result<Response<Outbound>, ApiError> {
        let mut response = self.upstream.send(outgoing, now).await?;
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
        // Made before the headers that borrow it.
        let assertion = self
            .assertions
            .as_ref()
            .zip(identity)
            .map(|(signer, claims)| signer.assertion(claims, unix_now()));
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
            // Role names are checked when a token is first verified: nothing to split or trim.
            if let Some(roles) = claims.roles_header() {
                extra.push(self.identity.roles_header.as_str(), roles.as_bytes());
            }
        }
        if let (Some(config), Some(assertion)) = (&self.identity.assertion, &assertion) {
            extra.push(config.header.as_str(), assertion.as_bytes());
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
            self.owned.contains(name) || (relayed.is_none() && is_forwarded_detail(name))
        });
        if let Some(accept) = websocket {
            outgoing.expect_switch(accept);
        }
        Ok((outgoing, client_upgrade))
    }
}

/// Headers authgate adds to a request, at most twelve.
#[derive(Default)]
struct Extra<'a> {
    fields: [(&'a str, &'a [u8]); 12],
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
