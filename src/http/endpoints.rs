//! The endpoints authgate answers itself: /register, /login, /refresh, /logout, /logout-all and
//! /password. Each reads what the request says (a bounded JSON body, a bearer token), asks the
//! sessions service, and writes the JSON answer; the rules are the service's.

use std::net::IpAddr;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::core::endpoint::Endpoint;
use crate::core::json_fields::string_fields;
use crate::core::token::TokenKind;
use crate::http::auth_body::read_json;
use crate::http::authn::{authenticate, bearer_token};
use crate::http::body::Body;
use crate::http::error::{ApiError, json_response};
use crate::http::gate::Gate;
use crate::services::sessions::TokenPair;

pub(crate) async fn answer(
    gate: &Gate,
    endpoint: Endpoint,
    request: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<Body>, ApiError> {
    match endpoint {
        Endpoint::Register => register(gate, request).await,
        Endpoint::Login => login(gate, request, client).await,
        Endpoint::Refresh => refresh(gate, request.headers()).await,
        Endpoint::Logout => logout(gate, request.headers()).await,
        Endpoint::LogoutAll => logout_all(gate, request.headers()).await,
        Endpoint::Password => change_password(gate, request).await,
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
    let [username, password] = fields(gate, request, ["username", "password"]).await?;
    let user = gate.sessions.register(username, password).await?;
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
    Ok(tokens_answer(pair))
}

fn tokens_answer(pair: TokenPair) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": pair.access,
            "refresh_token": pair.refresh,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
        }),
    )
}

async fn refresh(gate: &Gate, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    // Not ready is said before anything about the token, as for every request that needs one.
    if !gate.authenticator.is_ready() {
        return Err(ApiError::NotReady);
    }
    let token = bearer_token(headers, gate.config.max_authorization_header)?;
    let pair = gate.sessions.refresh(token).await?;
    Ok(tokens_answer(pair))
}

async fn logout(gate: &Gate, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, headers, None)?;
    gate.sessions.logout(&claims).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "msg": "Successfully logged out" }),
    ))
}

async fn logout_all(gate: &Gate, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, headers, Some(TokenKind::Access))?;
    let revoked = gate.sessions.logout_all(&claims).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "msg": "Successfully logged out everywhere", "sessions_revoked": revoked }),
    ))
}

async fn change_password(
    gate: &Gate,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, request.headers(), Some(TokenKind::Access))?;
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
