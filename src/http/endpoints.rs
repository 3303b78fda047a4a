//! The endpoints authgate answers itself: /register, /login, /refresh, /logout.

use std::net::IpAddr;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::core::accounts;
use crate::core::endpoint::Endpoint;
use crate::core::revocation::{Revocation, RevocationKind};
use crate::core::token::TokenError;
use crate::core::token::{Claims, Subject, TokenKind, unix_now};
use crate::http::auth_body::{read_json, string_fields};
use crate::http::authn::authenticate;
use crate::http::body::Body;
use crate::http::error::{ApiError, json_response};
use crate::http::gate::Gate;
use crate::store::{StoreError, User};

pub async fn answer(
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

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "store failed");
    ApiError::StoreUnavailable
}

/// Reads `{"username": …, "password": …}` from a JSON body of bounded size.
async fn credentials(
    gate: &Gate,
    request: Request<Incoming>,
) -> Result<(String, String), ApiError> {
    let body = read_json(
        request,
        gate.config.max_auth_body,
        gate.config.body_read_timeout,
    )
    .await?;
    let [username, password] = string_fields(&body, ["username", "password"])?;
    Ok((username, password))
}

async fn register(gate: &Gate, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (username, password) = credentials(gate, request).await?;
    accounts::validate_username(&username).map_err(|m| ApiError::BadRequest(m.into()))?;
    accounts::validate_password(&password).map_err(|m| ApiError::BadRequest(m.into()))?;
    let key = accounts::username_key(&username);
    // A cheap early answer for a taken name; the unique index still decides under races.
    if gate
        .store
        .find_user(&key)
        .await
        .map_err(store_error)?
        .is_some()
    {
        return Err(ApiError::UsernameTaken);
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username,
        password_hash: gate
            .passwords
            .hash(password)
            .await
            .map_err(|_| ApiError::Busy)?,
    };
    match gate.store.create_user(&user, &key, unix_now()).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::UsernameTaken),
        Err(e) => return Err(store_error(e)),
    }
    gate.metrics.registered();
    tracing::info!(user_id = %user.id, "user registered");
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
    // Every attempt counts against the address; only failures count against the username, so a
    // user who knows their password is not locked out by someone else's guesses for long.
    let address = client.to_string();
    if let Some(throttle) = &gate.login_throttle.per_address {
        throttle
            .check(&address)
            .map_err(ApiError::TooManyAttempts)?;
        throttle.charge(&address);
    }
    let (username, password) = credentials(gate, request).await?;
    let username_key = accounts::username_key(&username);
    // Keyed by name here and by id on /password: prefixed, so one can never spend the other's.
    let throttle_key = format!("name:{username_key}");
    if let Some(throttle) = &gate.login_throttle.per_user {
        throttle
            .check(&throttle_key)
            .map_err(ApiError::TooManyAttempts)?;
    }
    // Over-long input is simply a failed login: the same answer as any other.
    let plausible = password.len() <= accounts::MAX_PASSWORD_BYTES;
    let user = if plausible && accounts::validate_username(&username).is_ok() {
        gate.store
            .find_user(&username_key)
            .await
            .map_err(store_error)?
    } else {
        None
    };
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = if plausible { password } else { String::new() };
    let verified = gate
        .passwords
        .verify(password, stored_hash)
        .await
        .map_err(|_| ApiError::Busy)?;
    gate.metrics.login(verified);
    if !verified {
        if let Some(throttle) = &gate.login_throttle.per_user {
            throttle.charge(&throttle_key);
        }
        return Err(ApiError::BadCredentials);
    }
    let user = user.expect("verify succeeds only against a real user");
    let sid = uuid::Uuid::new_v4().to_string();
    let pair = issue_pair(gate, &user.id, &user.username, &sid, true);
    let created = gate
        .store
        .create_session(
            &sid,
            &user.id,
            &user.password_hash,
            &pair.refresh_claims.jti,
            pair.refresh_claims.exp,
        )
        .await
        .map_err(store_error)?;
    if !created {
        // The password changed while this one was being checked: it is no longer the user's.
        return Err(ApiError::BadCredentials);
    }
    Ok(pair.into_response(gate))
}

/// An access and a refresh token of one session.
struct TokenPair {
    access: String,
    refresh: String,
    refresh_claims: Claims,
}

impl TokenPair {
    fn into_response(self, gate: &Gate) -> Response<Body> {
        json_response(
            StatusCode::OK,
            &json!({
                "access_token": self.access,
                "refresh_token": self.refresh,
                "token_type": "Bearer",
                "expires_in": gate.tokens.access_ttl(),
            }),
        )
    }
}

fn issue_pair(gate: &Gate, user_id: &str, username: &str, sid: &str, fresh: bool) -> TokenPair {
    let now = unix_now();
    let subject = Subject {
        user_id,
        username,
        sid,
    };
    let (access, _) = gate.tokens.issue(&subject, TokenKind::Access, fresh, now);
    let (refresh, refresh_claims) = gate.tokens.issue(&subject, TokenKind::Refresh, false, now);
    TokenPair {
        access,
        refresh,
        refresh_claims,
    }
}

/// Rotates the refresh token. A refresh token that was already rotated is a stolen one: the whole
/// session is revoked.
async fn refresh(gate: &Gate, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, headers, Some(TokenKind::Refresh));
    let claims = match claims {
        // A revoked refresh token of a live session can only be a rotated one presented again.
        Err(ApiError::Token(TokenError::Revoked)) => {
            reuse_detected(gate, headers).await?;
            return Err(ApiError::Token(TokenError::Revoked));
        }
        other => other?,
    };
    let old = Revocation {
        kind: RevocationKind::Token,
        key: claims.jti.clone(),
        expires_at: claims.exp,
    };
    let pair = issue_pair(gate, &claims.sub, &claims.username, &claims.sid, false);
    let rotated = gate
        .store
        .rotate_refresh(
            &claims.sid,
            &old,
            &pair.refresh_claims.jti,
            pair.refresh_claims.exp,
        )
        .await
        .map_err(store_error)?;
    if !rotated {
        revoke_session(gate, &claims).await?;
        tracing::warn!(user_id = %claims.sub, "refresh token reused: session revoked");
        return Err(ApiError::Token(TokenError::Revoked));
    }
    gate.revocations.insert(old);
    gate.metrics.refreshed();
    Ok(pair.into_response(gate))
}

/// Revokes the session of a refresh token that was presented after rotation, if it is still live.
async fn reuse_detected(gate: &Gate, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = crate::http::authn::bearer_token(headers, gate.config.max_authorization_header)?;
    let Ok(claims) = gate.tokens.verify(token, unix_now()) else {
        return Ok(());
    };
    if !gate.revocations.is_session_revoked(&claims.sid) {
        revoke_session(gate, &claims).await?;
        tracing::warn!(user_id = %claims.sub, "rotated refresh token reused: session revoked");
    }
    Ok(())
}

/// Writes the session's revocation to the store, then to the cache: durable before it is answered.
async fn revoke_session(gate: &Gate, claims: &Claims) -> Result<(), ApiError> {
    let revocation = gate
        .store
        .revoke_session(&claims.sid, claims.exp)
        .await
        .map_err(store_error)?;
    gate.revocations.insert(revocation);
    gate.metrics.revoked();
    Ok(())
}

async fn logout(gate: &Gate, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, headers, None)?;
    revoke_session(gate, &claims).await?;
    tracing::info!(user_id = %claims.sub, "logged out");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "msg": "Successfully logged out" }),
    ))
}

/// Revokes every session of the user, this one included: "log out everywhere".
async fn logout_all(gate: &Gate, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, headers, Some(TokenKind::Access))?;
    let revoked = revoke_user_sessions(gate, &claims.sub, None, None).await?;
    tracing::info!(user_id = %claims.sub, sessions = revoked, "logged out everywhere");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "msg": "Successfully logged out everywhere", "sessions_revoked": revoked }),
    ))
}

/// `{"old_password", "new_password"}` with an access token: sets the new password and revokes
/// every other session of the user. The session asking keeps working.
async fn change_password(
    gate: &Gate,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(gate, request.headers(), Some(TokenKind::Access))?;
    let throttle_key = format!("id:{}", claims.sub);
    if let Some(throttle) = &gate.login_throttle.per_user {
        throttle
            .check(&throttle_key)
            .map_err(ApiError::TooManyAttempts)?;
    }
    let body = read_json(
        request,
        gate.config.max_auth_body,
        gate.config.body_read_timeout,
    )
    .await?;
    let [old_password, new_password] = string_fields(&body, ["old_password", "new_password"])?;
    accounts::validate_password(&new_password).map_err(|m| ApiError::BadRequest(m.into()))?;
    let user = gate
        .store
        .find_user_by_id(&claims.sub)
        .await
        .map_err(store_error)?;
    let stored_hash = user.map(|u| u.password_hash);
    let old_ok = old_password.len() <= accounts::MAX_PASSWORD_BYTES
        && gate
            .passwords
            .verify(old_password, stored_hash)
            .await
            .map_err(|_| ApiError::Busy)?;
    if !old_ok {
        if let Some(throttle) = &gate.login_throttle.per_user {
            throttle.charge(&throttle_key);
        }
        return Err(ApiError::WrongPassword);
    }
    let new_hash = gate
        .passwords
        .hash(new_password)
        .await
        .map_err(|_| ApiError::Busy)?;
    let revoked =
        revoke_user_sessions(gate, &claims.sub, Some(&claims.sid), Some(&new_hash)).await?;
    tracing::info!(user_id = %claims.sub, sessions = revoked, "password changed");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "msg": "Password changed", "sessions_revoked": revoked }),
    ))
}

/// Store first, then cache: the answer is sent only once the revocations are durable.
async fn revoke_user_sessions(
    gate: &Gate,
    user_id: &str,
    keep_sid: Option<&str>,
    new_password_hash: Option<&str>,
) -> Result<usize, ApiError> {
    let revocations = gate
        .store
        .revoke_user_sessions(user_id, keep_sid, new_password_hash, unix_now())
        .await
        .map_err(store_error)?;
    let count = revocations.len();
    for revocation in revocations {
        gate.revocations.insert(revocation);
        gate.metrics.revoked();
    }
    Ok(count)
}
