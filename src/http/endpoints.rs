//! The endpoints authgate answers itself: /register, /login, /refresh, /logout, /logout-all and
//! /password. Each reads what the request says (a bounded JSON body, a token from a header or a
//! cookie), asks the sessions service, and writes the JSON answer (with cookies for browsers);
//! the rules are the service's. Forms from the sign-in pages go to `pages`.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::config::{Config, TokenLocation};
use crate::core::endpoint::Endpoint;
use crate::core::form_fields::form_fields;
use crate::core::json_fields::string_fields;
use crate::core::token::{Claims, TokenError, TokenKind};
use crate::http::auth_body::{BodyKind, body_kind, read_body, read_json};
use crate::http::authn::{Source, authenticate, check_csrf, csrf_needed, csrf_value, presented};
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::{ApiError, json_response};
use crate::http::gate::Gate;
use crate::http::pages::{self, Posted};
use crate::services::sessions::{AuthError, TokenPair};

pub(crate) async fn answer(
    gate: &Gate,
    endpoint: Endpoint,
    request: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<Body>, ApiError> {
    if gate.config.cookies_enabled() && body_kind(request.headers()) == Some(BodyKind::Form) {
        return Ok(form(gate, endpoint, request, client).await);
    }
    match endpoint {
        Endpoint::Register => register(gate, request).await,
        Endpoint::Login => login(gate, request, client).await,
        Endpoint::Refresh => refresh(gate, &request).await,
        Endpoint::Logout => logout(gate, &request).await,
        Endpoint::LogoutAll => logout_all(gate, &request).await,
        Endpoint::Password => change_password(gate, request).await,
    }
}

/// A form from the sign-in pages: answered with a page or a `303`, never JSON.
async fn form(
    gate: &Gate,
    endpoint: Endpoint,
    request: Request<Incoming>,
    client: IpAddr,
) -> Response<Body> {
    let config = &gate.config;
    let (method, headers) = (request.method().clone(), request.headers().clone());
    let body = read_body(
        request,
        config.max_auth_body,
        config.body_read_timeout,
        true,
    )
    .await;
    let body = match body {
        Ok((_, body)) => body,
        Err(e) => return pages::error_page(config, "Sign in", &e.message(), e.status()),
    };
    match endpoint {
        Endpoint::Login => {
            pages::sign_in(gate, Posted::read(config, &headers, &body), client).await
        }
        Endpoint::Register => pages::sign_up(gate, Posted::read(config, &headers, &body)).await,
        Endpoint::Logout => {
            let [csrf] = form_fields(&body, ["csrf_token"]);
            match authenticate(gate, &method, &headers, None, csrf.as_deref()) {
                Ok(claims) => match gate.sessions.logout(&claims).await {
                    // Revoked already: signed out all the same.
                    Ok(()) | Err(AuthError::Token(_)) => pages::signed_out(config),
                    Err(e) => {
                        let e = ApiError::from(e);
                        pages::error_page(config, "Sign out", &e.message(), e.status())
                    }
                },
                // No session to end: the cookies go anyway.
                Err(ApiError::NoToken(_) | ApiError::Token(_)) => pages::signed_out(config),
                Err(e) => pages::error_page(config, "Sign out", &e.message(), e.status()),
            }
        }
        _ => pages::error_page(
            config,
            "Not a form",
            "This endpoint takes JSON.",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    }
}

/// Reads the named string fields from a JSON body of bounded size.
async fn fields<const N: usize>(
    gate: &Gate,
    request: Request<Incoming>,
    names: [&str; N],
) -> Result<[String; N], ApiError> {
    let body = read_json(
        request,
        gate.config.max_auth_body,
        gate.config.body_read_timeout,
    )
    .await?;
    Ok(string_fields(&body, names)?)
}

async fn register(gate: &Gate, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if !gate.config.allow_registration {
        return Err(ApiError::RegistrationClosed);
    }
    let [username, password] = fields(gate, request, ["username", "password"]).await?;
    let user = gate
        .sessions
        .register(username, password, Vec::new())
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "id": user.id, "username": user.username }),
    ))
}

async fn login(
    gate: &Gate,
    request: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<Body>, ApiError> {
    gate.sessions.admit_login(client)?;
    let [username, password] = fields(gate, request, ["username", "password"]).await?;
    let pair = gate.sessions.login(&username, password).await?;
    Ok(tokens_answer(&gate.config, pair))
}

/// A new pair: in the body for clients that send headers, in cookies for browsers, or both, as
/// `tokens.location` says.
fn tokens_answer(config: &Config, pair: TokenPair) -> Response<Body> {
    let body = if config.token_locations.contains(&TokenLocation::Headers) {
        let mut body = json!({
            "access_token": pair.access,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
        });
        // Within the refresh grace there is no new refresh token: the client keeps its own.
        if let Some(refresh) = &pair.refresh {
            body["refresh_token"] = json!(refresh);
        }
        body
    } else {
        json!({ "msg": "Signed in", "expires_in": pair.expires_in })
    };
    let mut response = json_response(StatusCode::OK, &body);
    if config.cookies_enabled() {
        cookies::attach(&mut response, cookies::for_pair(config, &pair));
    }
    response
}

async fn refresh(gate: &Gate, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    // Not ready is said before anything about the token, as for every request that needs one.
    if !gate.authenticator.is_ready() {
        return Err(ApiError::NotReady);
    }
    let headers = request.headers();
    let (token, source) = presented(&gate.config, headers, TokenKind::Refresh)?;
    if csrf_needed(&gate.config, request.method(), source) {
        let sent = csrf_value(headers, None).ok_or(ApiError::MissingCsrf)?;
        let claims = gate.authenticator.admit(token, Some(TokenKind::Refresh))?;
        check_csrf(&claims, sent)?;
    }
    let pair = gate.sessions.refresh(token).await?;
    Ok(tokens_answer(&gate.config, pair))
}

async fn logout(gate: &Gate, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (method, headers) = (request.method(), request.headers());
    let ended = match authenticate(gate, method, headers, None, None) {
        Ok(claims) => gate.sessions.logout(&claims).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match ended {
        Ok(()) => Ok(signed_out(
            gate,
            json!({ "msg": "Successfully logged out" }),
        )),
        // A browser keeps no cookies of a session that is over: the refusal clears them, so
        // that its pages stop sending them.
        Err(e @ ApiError::Token(TokenError::Revoked)) if session_by_cookie(gate, headers) => {
            let mut refusal = e.into_response();
            cookies::attach(&mut refusal, cookies::cleared(&gate.config));
            Ok(refusal)
        }
        Err(e) => Err(e),
    }
}

/// Whether the request's session token (access, else refresh) came in a cookie.
fn session_by_cookie(gate: &Gate, headers: &http::HeaderMap) -> bool {
    let config = &gate.config;
    config.cookies_enabled()
        && matches!(
            presented(config, headers, TokenKind::Access).or_else(|_| presented(
                config,
                headers,
                TokenKind::Refresh
            )),
            Ok((_, Source::Cookie))
        )
}

async fn logout_all(gate: &Gate, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let claims = access_claims(gate, request)?;
    let revoked = gate.sessions.logout_all(&claims).await?;
    Ok(signed_out(
        gate,
        json!({ "msg": "Successfully logged out everywhere", "sessions_revoked": revoked }),
    ))
}

/// The claims of the request's valid access token (`/logout-all`, `/password`).
fn access_claims(gate: &Gate, request: &Request<Incoming>) -> Result<Arc<Claims>, ApiError> {
    let (method, headers) = (request.method(), request.headers());
    authenticate(gate, method, headers, Some(TokenKind::Access), None)
}

/// A logout's answer: `body`, and for browsers the cookies cleared.
fn signed_out(gate: &Gate, body: serde_json::Value) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &body);
    if gate.config.cookies_enabled() {
        cookies::attach(&mut response, cookies::cleared(&gate.config));
    }
    response
}

async fn change_password(
    gate: &Gate,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let claims = access_claims(gate, &request)?;
    gate.sessions.admit_password_change(&claims)?;
    let [old_password, new_password] =
        fields(gate, request, ["old_password", "new_password"]).await?;
    let revoked = gate
        .sessions
        .change_password(&claims, old_password, new_password)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "msg": "Password changed", "sessions_revoked": revoked }),
    ))
}
