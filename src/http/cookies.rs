//! The cookies authgate sets on answers: a session's four (with `tokens.location` naming
//! cookies), and the `Set-Cookie`s that clear them at logout.
//!
//! Every cookie has `Path=/`. The refresh cookie could be limited to the auth prefix, but silent
//! refresh reads it on whatever guarded path a browser asks for, so it must travel with every
//! request; the app never sees it (`for_app` takes it out of the `Cookie` it forwards).

use std::time::Duration;

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Response};

use crate::config::Config;
use crate::core::cookies::{
    self, ACCESS_COOKIE, ACCESS_CSRF_COOKIE, HOST_LOGIN_CSRF_COOKIE, LOGIN_CSRF_COOKIE,
    REFRESH_COOKIE, REFRESH_CSRF_COOKIE, Script,
};
use crate::services::sessions::TokenPair;

/// The `Set-Cookie` values that hand a browser `pair`.
pub(crate) fn for_pair(config: &Config, pair: &TokenPair) -> Vec<String> {
    let cookies = &config.cookies;
    let access_ttl = Duration::from_secs(pair.expires_in);
    let refresh_ttl = Duration::from_secs(pair.refresh_expires_in);
    let mut out = vec![cookies.set(ACCESS_COOKIE, &pair.access, "/", access_ttl, Script::Hidden)];
    if let Some(csrf) = &pair.csrf {
        out.push(cookies.set(ACCESS_CSRF_COOKIE, csrf, "/", access_ttl, Script::Readable));
    }
    // Within the refresh grace there is no new refresh token: the browser keeps the one the
    // tab that won the race was given.
    if let Some(refresh) = &pair.refresh {
        out.push(cookies.set(REFRESH_COOKIE, refresh, "/", refresh_ttl, Script::Hidden));
        if let Some(csrf) = &pair.csrf {
            out.push(cookies.set(
                REFRESH_CSRF_COOKIE,
                csrf,
                "/",
                refresh_ttl,
                Script::Readable,
            ));
        }
    }
    out
}

/// The `Set-Cookie` values that make a browser forget its session.
pub(crate) fn cleared(config: &Config) -> Vec<String> {
    let cookies = &config.cookies;
    vec![
        cookies.clear(ACCESS_COOKIE, "/", Script::Hidden),
        cookies.clear(REFRESH_COOKIE, "/", Script::Hidden),
        cookies.clear(ACCESS_CSRF_COOKIE, "/", Script::Readable),
        cookies.clear(REFRESH_CSRF_COOKIE, "/", Script::Readable),
    ]
}

/// Which access cookie the app gets.
pub(crate) enum AppAccess<'a> {
    /// A public route: the access cookie as the client sent it (authgate vouched for nothing).
    AsSent,
    /// A guarded route authenticated by this cookie (or renewed to it): this one alone.
    Only(&'a str),
    /// A guarded route authenticated by a header: none, so that the app and authgate cannot
    /// disagree on who is calling.
    None,
}

/// Rewrites the `Cookie` the app gets: never the refresh cookie or the sign-in form's (the app
/// needs neither, and its logs are no place for a refresh token), and the access cookie as
/// `access` says.
pub(crate) fn for_app(headers: &mut HeaderMap, access: AppAccess<'_>) {
    if !headers.contains_key(COOKIE) && !matches!(access, AppAccess::Only(_)) {
        return;
    }
    let mut removed = vec![REFRESH_COOKIE, LOGIN_CSRF_COOKIE, HOST_LOGIN_CSRF_COOKIE];
    let add = match access {
        AppAccess::AsSent => None,
        AppAccess::Only(token) => {
            removed.push(ACCESS_COOKIE);
            Some((ACCESS_COOKIE, token))
        }
        AppAccess::None => {
            removed.push(ACCESS_COOKIE);
            None
        }
    };
    match cookies::rebuilt(headers, &removed, add) {
        Some(value) => {
            headers.insert(COOKIE, value);
        }
        None => {
            headers.remove(COOKIE);
        }
    }
}

/// Adds `set_cookies` to `response`.
pub(crate) fn attach<B>(response: &mut Response<B>, set_cookies: Vec<String>) {
    for value in set_cookies {
        // Names, tokens, UUIDs and configured attributes: always a valid value.
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
}

/// Adds `set_cookies` to the app's `response`, which then must not be stored by a shared cache:
/// a cached answer would hand one user's session to the next.
pub(crate) fn attach_to_app_answer<B>(response: &mut Response<B>, set_cookies: Vec<String>) {
    attach(response, set_cookies);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
