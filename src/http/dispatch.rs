//! One request's path through authgate: classify → authenticate → authorise → forward (or answer
//! an auth endpoint). `classify` is pure, so `authgate explain` shows exactly what a request meets.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use serde_json::json;

use crate::config::Config;
use crate::core::browser::prefers_html;
use crate::core::classify::{Class, JWKS_PATH, classify as core_classify, normalise_method};
use crate::core::cookies::{self, REFRESH_COOKIE};
use crate::core::endpoint::Endpoint;
use crate::core::form_fields::encode;
use crate::core::forwarded::Relayed;
use crate::core::routes::{Access, Decision, normalise_path};
use crate::core::token::{Claims, TokenError, TokenKind};
use crate::http::authn::{Source, authenticate, check_csrf, csrf_needed, csrf_value, presented};
use crate::http::body::{Body, Outbound};
use crate::http::cookies::{self as session_cookies, AppAccess};
use crate::http::error::{ApiError, json_response};
use crate::http::gate::Gate;
use crate::http::idle::{InFlight, Tracked};
use crate::http::proxy::{Forwarder, Peer, TunnelEnd, Upgrade};
use crate::http::{endpoints, pages};
use crate::services::sessions::TokenPair;
use crate::upstream::{Outgoing, only_chunked};

/// Classifies a request (see `core::classify`), with the refusal as an answer: what the
/// property tests, the fuzz targets and `explain` call.
pub fn classify(config: &Config, method: &Method, uri: &Uri) -> Result<Class, ApiError> {
    core_classify(&config.layout(), method, uri).map_err(ApiError::from)
}

/// Refuses what hyper lets through but a proxy must not: headers too large in total, more than
/// one `Host` or none on HTTP/1.1 (RFC 9112 §3.2), and a transfer coding other than `chunked`
/// (hyper reads `gzip, chunked` as chunked, and the `gzip` would be lost on the way: 501, as RFC
/// 9112 §6.1 allows). (Framing is hyper's: with both `Content-Length` and `Transfer-Encoding` it
/// reads the chunked body, drops the length and closes the connection afterwards, as RFC 9112
/// §6.1 asks; and authgate re-frames what it forwards.)
pub fn vet_message<B>(request: &Request<B>, max_header_bytes: usize) -> Result<(), ApiError> {
    // One pass for all of it, rather than a pass and hashed lookups.
    let (mut total, mut hosts, mut host, mut coded) = (0, 0, None, false);
    for (name, value) in request.headers() {
        total += name.as_str().len() + value.len() + 4;
        if name == http::header::HOST {
            hosts += 1;
            host = Some(value.as_bytes());
        }
        coded |= name == http::header::TRANSFER_ENCODING;
    }
    if total > max_header_bytes {
        return Err(ApiError::HeadersTooLarge);
    }
    if hosts > 1 || (hosts == 0 && request.version() == http::Version::HTTP_11) {
        return Err(ApiError::BadHost);
    }
    // User information has no place in a Host (RFC 9110 §7.2), and an app that builds links from
    // it would send people to `user@evil`.
    let authority = request.uri().authority().map(|a| a.as_str().as_bytes());
    if host.into_iter().chain(authority).any(|h| h.contains(&b'@')) {
        return Err(ApiError::BadRequest(
            "Host must name a host, without user information".into(),
        ));
    }
    // HTTP/2 names the host in `:authority`: a `host` field that names another is a malformed
    // request (RFC 9113 §8.3.1), not a second opinion.
    if request.version() == http::Version::HTTP_2
        && authority.is_some()
        && host.is_some()
        && host != authority
    {
        return Err(ApiError::BadRequest("Host must be the :authority".into()));
    }
    if coded && !only_chunked(request.headers()) {
        return Err(ApiError::UnsupportedTransferCoding);
    }
    Ok(())
}

/// The JWKS: public, and for caches to keep a while (keys rotate by being listed before they
/// sign, so a copy five minutes old still holds every key in use).
fn jwks_response(body: bytes::Bytes) -> Response<Body> {
    let mut response = Response::new(crate::http::body::full(body));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/jwk-set+json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// What a request's log line says besides method, status and latency. Only the normalised path is
/// logged: the raw target and the query may carry anything, tokens included.
#[derive(Default)]
struct LogFields {
    path: String,
    /// The token's claims, held rather than copied: most requests are never logged.
    user: Option<Arc<Claims>>,
}

/// Serves one request; every failure becomes a JSON answer, never a dropped connection.
///
/// What to do is decided before the returned future is first polled, in `decide`: hyper checks
/// the connection for its next request as soon as it has handed this one over, and the request's
/// head (which shares hyper's read buffer) must be gone by then, or hyper replaces the buffer
/// with a fresh 8 KiB one for every request. Only waiting is left to the future: for the
/// upstream, the store, or a password hash.
pub(crate) fn handle(
    gate: Arc<Gate>,
    forwarder: Arc<Forwarder>,
    request: Request<Incoming>,
    peer: Arc<Peer>,
    in_flight: InFlight,
) -> impl Future<Output = Result<Response<Tracked>, Infallible>> + Send + 'static {
    let start = Instant::now();
    let method = request.method().clone();
    let mut log = LogFields::default();
    let next = decide(&gate, &forwarder, request, &peer, &mut log);
    async move {
        // A silent refresh ends in an ordinary forward, so that there is one call of `send`
        // (which the compiler then inlines into the proxied path).
        // When the request is handed to the app: a clock reading less for most requests (which
        // is slow in some VMs, BENCHMARKS.md); a refresh first waits for the store.
        let (ready, sent_at) = match next {
            Ok(Next::Ready(ready)) => (Ok(ready), start),
            Ok(Next::Refresh(pending)) => {
                let renewed = Box::pin(renew(&gate, &forwarder, &peer, *pending)).await;
                (renewed, Instant::now())
            }
            Err(e) => (Err(e), start),
        };
        let answered = match ready {
            Ok(Ready::Forward(outgoing, extras)) => {
                let (upgrade, set_cookies) = match extras {
                    None => (None, None),
                    Some(extras) => {
                        let Extras {
                            switch,
                            set_cookies,
                        } = *extras;
                        (switch.map(|s| tunnel(&gate, &peer, s)), set_cookies)
                    }
                };
                forwarder
                    .send(outgoing, upgrade, sent_at)
                    .await
                    .map(|mut response| {
                        if let Some(set) = set_cookies {
                            session_cookies::attach_to_app_answer(&mut response, set);
                            return ("refreshed", response);
                        }
                        ("forwarded", response)
                    })
            }
            // Boxed: the state of the rare paths (hashing, store calls) would otherwise be copied
            // with every proxied request's future.
            Ok(Ready::Local(local)) => Box::pin(answer_locally(&gate, *local)).await,
            Err(e) => Err(e),
        };
        let (outcome, response) = match answered {
            Ok(answered) => answered,
            Err(e) => (e.outcome(), e.into_response().map(Outbound::Boxed)),
        };
        let elapsed = start.elapsed();
        gate.metrics.request(outcome, elapsed.as_secs_f64());
        // The request stays in progress, for the header read timeout, until its body is written.
        let response = response.map(|body| Tracked::new(body, in_flight));
        if tracing::enabled!(tracing::Level::INFO) {
            log_request(&method, &log, response.status(), outcome, elapsed);
        }
        Ok(response)
    }
}

/// The request's log line. Out of line and cold: under load the level is usually above `info`,
/// and the formatting code would otherwise sit in the middle of every request's path, where the
/// processor's instruction cache has no room to spare (BENCHMARKS.md, issue 18).
#[cold]
#[inline(never)]
fn log_request(
    method: &Method,
    log: &LogFields,
    status: StatusCode,
    outcome: &'static str,
    elapsed: std::time::Duration,
) {
    tracing::info!(
        method = %method,
        path = %log.path,
        status = status.as_u16(),
        outcome,
        user_id = log.user.as_ref().map_or("-", |claims| claims.sub.as_str()),
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
}

/// What a request leads to, once everything that needs no waiting is done.
enum Next {
    Ready(Ready),
    /// A browser's request whose access cookie is missing or expired, but whose refresh cookie
    /// may renew the session: refreshed, then forwarded (silent refresh). Renewing gives a
    /// `Ready`, so a request is refreshed at most once, by its type.
    Refresh(Box<Pending>),
}

/// A request for authgate itself to answer.
fn local(answer: Local) -> Result<Next, ApiError> {
    Ok(Next::Ready(Ready::Local(Box::new(answer))))
}

/// A request ready to be answered.
enum Ready {
    /// Allowed through: the request as the upstream gets it, and what little else some requests
    /// bring (a switch of protocols, a renewed session's cookies).
    Forward(Outgoing, Option<Box<Extras>>),
    /// For authgate itself to answer. Boxed, so that every proxied request's future (which holds
    /// a `Ready`, and is moved into place whole) is a quarter of the size.
    Local(Box<Local>),
}

/// A request waiting for its session to be refreshed, and where it goes then.
struct Pending {
    request: Request<Incoming>,
    path_and_query: String,
    /// The rules it met, whose roles the renewed token must hold.
    decision: Decision,
}

/// What the rare forwarded request brings besides itself.
struct Extras {
    switch: Option<Switch>,
    /// A silent refresh's new cookies, for the app's answer.
    set_cookies: Option<Vec<String>>,
}

/// A client's request to switch protocols (WebSocket), with the claims of the token it came with.
struct Switch {
    client: OnUpgrade,
    claims: Option<Arc<Claims>>,
}

/// The tunnel a switch opens if the app agrees: it keeps the connection's place under
/// `max_connections` and, on a guarded route, lasts no longer than its token is valid.
fn tunnel(gate: &Arc<Gate>, peer: &Arc<Peer>, switch: Switch) -> Upgrade {
    let ends = switch.claims.map(|claims| {
        let gate = gate.clone();
        Box::pin(async move { gate.authenticator.until_invalid(claims).await }) as TunnelEnd
    });
    Upgrade::new(switch.client, peer.clone(), ends)
}

/// A request authgate answers itself.
enum Local {
    /// Answered already: a liveness probe.
    Answer(&'static str, Response<Body>),
    /// A readiness probe, which asks the store.
    Ready,
    /// An auth endpoint, which reads the body and hashes or asks the store; with the client's
    /// address, for the login throttle.
    Endpoint(Endpoint, Request<Incoming>, IpAddr),
    /// A sign-in page, for a browser.
    Page(Endpoint, Request<Incoming>),
}

/// classify → authenticate → authorise → rewrite for the upstream, all without waiting.
fn decide(
    gate: &Gate,
    forwarder: &Forwarder,
    mut request: Request<Incoming>,
    peer: &Peer,
    log: &mut LogFields,
) -> Result<Next, ApiError> {
    vet_message(&request, gate.config.max_header_bytes)?;
    normalise_method(request.method_mut());
    match classify(&gate.config, request.method(), request.uri())? {
        Class::Health => {
            log.path = gate.config.health_path.clone();
            let response = json_response(StatusCode::OK, &json!({ "status": "ok" }));
            local(Local::Answer("health", response))
        }
        Class::Ready => {
            log.path = gate.config.ready_path.clone();
            local(Local::Ready)
        }
        Class::Jwks => {
            log.path = format!("{}{JWKS_PATH}", gate.config.auth_prefix);
            let body = gate.jwks.clone().unwrap_or_default();
            local(Local::Answer("jwks", jwks_response(body)))
        }
        Class::Page(endpoint) => {
            log.path = format!("{}{}", gate.config.auth_prefix, endpoint.path());
            local(Local::Page(endpoint, request))
        }
        Class::Endpoint(endpoint) => {
            log.path = format!("{}{}", gate.config.auth_prefix, endpoint.path());
            let client = relayed(gate, peer, &request).map_or(peer.addr.ip(), |r| r.client);
            local(Local::Endpoint(endpoint, request, client))
        }
        Class::Proxy {
            path_and_query,
            decision,
        } => {
            let claims = match decision.access {
                Access::Deny => {
                    record(log, path_and_query, None);
                    return Err(ApiError::Forbidden);
                }
                Access::Public => None,
                Access::Authenticated => {
                    let (method, headers) = (request.method(), request.headers());
                    match authenticate(gate, method, headers, Some(TokenKind::Access), None) {
                        Ok(claims) if gate.config.routes.permits(&decision, claims.roles()) => {
                            Some(claims)
                        }
                        Ok(claims) => {
                            record(log, path_and_query, Some(claims));
                            return Err(ApiError::Forbidden);
                        }
                        Err(e) if may_refresh(gate, headers, &e) => {
                            log.path = path_and_query.clone();
                            let pending = Pending {
                                request,
                                path_and_query,
                                decision,
                            };
                            return Ok(Next::Refresh(Box::new(pending)));
                        }
                        Err(e) => {
                            let e = sign_in_first(gate, method, headers, &path_and_query, e);
                            record(log, path_and_query, None);
                            return Err(e);
                        }
                    }
                }
            };
            if gate.config.cookies_enabled() {
                forward_cookies(gate, &mut request, claims.is_some());
            }
            let relayed = relayed(gate, peer, &request);
            let rewritten = forwarder.rewrite(
                request,
                &path_and_query,
                claims.as_deref(),
                peer,
                relayed.as_ref(),
            );
            let (outgoing, client) = match rewritten {
                Ok(rewritten) => rewritten,
                Err(e) => {
                    record(log, path_and_query, claims);
                    return Err(e);
                }
            };
            // An upgrade keeps the claims: its tunnel checks them until it closes.
            let extras = client.map(|client| {
                let claims = claims.clone();
                Box::new(Extras {
                    switch: Some(Switch { client, claims }),
                    set_cookies: None,
                })
            });
            record(log, path_and_query, claims);
            Ok(Next::Ready(Ready::Forward(outgoing, extras)))
        }
    }
}

/// The `Cookie` a forwarded request carries (see `session_cookies::for_app`): on a guarded
/// route, the access cookie only if it is what authenticated the request.
fn forward_cookies(gate: &Gate, request: &mut Request<Incoming>, guarded: bool) {
    let headers = request.headers_mut();
    if !guarded {
        session_cookies::for_app(headers, AppAccess::AsSent);
        return;
    }
    let by_cookie = match presented(&gate.config, headers, TokenKind::Access) {
        Ok((token, Source::Cookie)) => Some(token.to_string()),
        _ => None,
    };
    let access = by_cookie
        .as_deref()
        .map_or(AppAccess::None, AppAccess::Only);
    session_cookies::for_app(headers, access);
}

/// Whether a request refused for `refusal` may have its session renewed by its refresh cookie:
/// the access cookie is missing or has expired (not a header's token: the header came first and
/// decides), and a refresh cookie came.
fn may_refresh(gate: &Gate, headers: &HeaderMap, refusal: &ApiError) -> bool {
    if !gate.config.cookies_enabled()
        || !matches!(
            refusal,
            ApiError::NoToken(_) | ApiError::Token(TokenError::Expired)
        )
        || cookies::find(headers, REFRESH_COOKIE).is_none()
    {
        return false;
    }
    matches!(
        presented(&gate.config, headers, TokenKind::Access),
        Err(ApiError::NoToken(_)) | Ok((_, Source::Cookie))
    )
}

/// Silent refresh: the refresh cookie rotated (with the CSRF check a state-changing request
/// needs), and the request made ready to forward as the session's user with the new access token
/// in its `Cookie`, the new cookies to be set on the app's answer. A refresh that fails is
/// answered as the missing session would have been: a browser is sent to sign in.
async fn renew(
    gate: &Gate,
    forwarder: &Forwarder,
    peer: &Peer,
    pending: Pending,
) -> Result<Ready, ApiError> {
    let Pending {
        mut request,
        path_and_query,
        decision,
    } = pending;
    let refreshed = refresh_by_cookie(gate, request.method(), request.headers()).await;
    let (pair, claims) = match refreshed {
        Ok(refreshed) => refreshed,
        Err(e) => {
            let (method, headers) = (request.method(), request.headers());
            return Err(sign_in_first(gate, method, headers, &path_and_query, e));
        }
    };
    // The session is renewed whatever the roles say, so the refusal carries the new cookies:
    // without them, the browser would present the token just rotated, a reuse once the grace
    // is over.
    if !gate.config.routes.permits(&decision, claims.roles()) {
        let mut refusal = ApiError::Forbidden.into_response();
        session_cookies::attach(&mut refusal, session_cookies::for_pair(&gate.config, &pair));
        return Ok(Ready::Local(Box::new(Local::Answer(
            ApiError::Forbidden.outcome(),
            refusal,
        ))));
    }
    session_cookies::for_app(request.headers_mut(), AppAccess::Only(&pair.access));
    let relayed = relayed(gate, peer, &request);
    let (outgoing, client) = forwarder.rewrite(
        request,
        &path_and_query,
        Some(&claims),
        peer,
        relayed.as_ref(),
    )?;
    let switch = client.map(|client| Switch {
        client,
        claims: Some(claims),
    });
    let extras = Extras {
        switch,
        set_cookies: Some(session_cookies::for_pair(&gate.config, &pair)),
    };
    Ok(Ready::Forward(outgoing, Some(Box::new(extras))))
}

/// Rotates the request's refresh cookie: the new pair and its access token's claims.
async fn refresh_by_cookie(
    gate: &Gate,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(TokenPair, Arc<Claims>), ApiError> {
    let token = cookies::find(headers, REFRESH_COOKIE)
        .ok_or_else(|| ApiError::NoToken(format!("Missing cookie \"{REFRESH_COOKIE}\"")))?;
    if csrf_needed(&gate.config, method, Source::Cookie) {
        let sent = csrf_value(headers, None).ok_or(ApiError::MissingCsrf)?;
        let claims = gate.authenticator.admit(token, Some(TokenKind::Refresh))?;
        check_csrf(&claims, sent)?;
    }
    let pair = gate.sessions.refresh(token).await?;
    let claims = gate
        .authenticator
        .admit(&pair.access, Some(TokenKind::Access))?;
    Ok((pair, claims))
}

/// A browser asking for a page without a valid session is sent to sign in, and from there back
/// to `path_and_query`; API clients (and anything but `GET` and `HEAD`) get the refusal itself.
fn sign_in_first(
    gate: &Gate,
    method: &Method,
    headers: &HeaderMap,
    path_and_query: &str,
    refusal: ApiError,
) -> ApiError {
    let needs_session = matches!(
        refusal,
        ApiError::NoToken(_)
            | ApiError::MissingAuthHeader
            | ApiError::MissingBearer
            | ApiError::BadAuthHeader
            | ApiError::Token(_)
    );
    if needs_session
        && gate.config.cookies_enabled()
        && matches!(*method, Method::GET | Method::HEAD)
        && prefers_html(headers)
    {
        return ApiError::SignIn(format!(
            "{}/login?next={}",
            gate.config.auth_prefix,
            encode(path_and_query)
        ));
    }
    refusal
}

/// What a trusted proxy says of the client it relays `request` for; `None` from anyone else.
fn relayed(gate: &Gate, peer: &Peer, request: &Request<Incoming>) -> Option<Relayed> {
    let trusted = &gate.config.trusted_proxies;
    peer.trusted
        .then(|| Relayed::read(peer.addr.ip(), request.headers(), trusted))
}

/// Answers a request for authgate itself: waits for the store, or for an endpoint's work.
async fn answer_locally(
    gate: &Gate,
    local: Local,
) -> Result<(&'static str, Response<Outbound>), ApiError> {
    let (outcome, response) = match local {
        Local::Answer(outcome, response) => (outcome, response),
        Local::Ready => {
            let loaded = gate.authenticator.is_ready();
            let reachable = Box::pin(gate.store.ping()).await;
            let status = if loaded && reachable {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = json!({
                "status": if status == StatusCode::OK { "ready" } else { "not ready" },
                "revocations_loaded": loaded,
                "store_reachable": reachable,
            });
            ("ready", json_response(status, &body))
        }
        Local::Page(endpoint, request) => {
            let query = request.uri().query().unwrap_or_default();
            (
                "page",
                pages::page(gate, endpoint, request.headers(), query),
            )
        }
        Local::Endpoint(endpoint, request, client) => (
            "answered",
            endpoints::answer(gate, endpoint, request, client).await?,
        ),
    };
    Ok((outcome, response.map(Outbound::Boxed)))
}

/// Hands the log line the path (without its query) and the user id once the request no longer
/// needs them, so a proxied request copies neither.
fn record(log: &mut LogFields, mut path_and_query: String, claims: Option<Arc<Claims>>) {
    let path_end = path_and_query.bytes().position(|b| b == b'?');
    path_and_query.truncate(path_end.unwrap_or(path_and_query.len()));
    log.path = path_and_query;
    log.user = claims;
}

/// What `authgate explain` prints for `method target`.
pub fn explain(config: &Config, method: &str, target: &str) -> String {
    let method = match Method::from_bytes(method.as_bytes()) {
        Ok(mut m) => {
            normalise_method(&mut m);
            m
        }
        Err(_) => {
            return format!(
                "{method:?} is not an HTTP method\ndecision: 400 (refused by the HTTP parser)"
            );
        }
    };
    let uri: Uri = match target.parse() {
        Ok(u) => u,
        Err(_) => {
            return format!(
                "target {target:?} is not a valid request target\ndecision: 400 (refused by the HTTP parser)"
            );
        }
    };
    let normalised = normalise_path(uri.path());
    let mut out = match &normalised {
        Ok(p) => format!("normalised path: {p}\n"),
        Err(e) => format!("normalised path: none ({e})\n"),
    };
    let line = match classify(config, &method, &uri) {
        Err(e) => format!(
            "decision: {} {} ({})",
            e.status().as_u16(),
            e.message(),
            e.outcome()
        ),
        Ok(Class::Health) => "rule: liveness probe\ndecision: answered by authgate (200)".into(),
        Ok(Class::Ready) => {
            "rule: readiness probe\ndecision: answered by authgate (200 once revocations are loaded, else 503)".into()
        }
        Ok(Class::Jwks) => {
            "rule: public keys\ndecision: answered by authgate (the JWKS, to anyone)".into()
        }
        Ok(Class::Page(e)) => format!(
            "rule: sign-in page {}{}\ndecision: answered by authgate (a page for browsers)",
            config.auth_prefix,
            e.path()
        ),
        Ok(Class::Endpoint(e)) => format!(
            "rule: auth endpoint {}{}\ndecision: answered by authgate",
            config.auth_prefix,
            e.path()
        ),
        Ok(Class::Proxy {
            path_and_query,
            decision,
        }) => {
            let rule = match decision.rule {
                Some(i) => {
                    let r = &config.routes.rules()[i];
                    let methods = r
                        .methods
                        .as_ref()
                        .map_or("any method".to_string(), |m| m.join(", "));
                    let roles = match r.roles.is_empty() {
                        true => String::new(),
                        false => format!(" roles = {:?}", r.roles),
                    };
                    format!(
                        "rule: routes[{i}] path = {:?} ({methods}) access = {}{roles}",
                        r.pattern, r.access
                    )
                }
                None => "rule: none matches; the default applies (authenticated)".into(),
            };
            // Every rule met through a method override adds its roles.
            let needed = config.routes.roles_needed(&decision);
            let roles = match needed.is_empty() {
                true => String::new(),
                false => {
                    let lists: Vec<String> = needed.iter().map(|r| r.join(" or ")).collect();
                    format!(
                        " and a user with the role {} (otherwise 403)",
                        lists.join(", and ")
                    )
                }
            };
            let verdict = match decision.access {
                Access::Public => {
                    format!("forward to the upstream as {path_and_query}, no token needed")
                }
                Access::Authenticated => {
                    format!(
                        "forward to the upstream as {path_and_query} with a valid access token{roles}; otherwise 401"
                    )
                }
                Access::Deny => "403 Access denied, never forwarded".into(),
            };
            format!("{rule}\ndecision: {verdict}")
        }
    };
    out.push_str(&line);
    out
}
