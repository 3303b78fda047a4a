//! Authentication of a request: the token from `Authorization` or a cookie, as `tokens.location`
//! says, handed to the authenticator, which verifies it in memory and checks it against the
//! revocation cache; and, for a cookie on a state-changing request, its CSRF token.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};

use crate::config::{Config, TokenLocation};
use crate::core::cookies;
use crate::core::token::{Claims, TokenError, TokenKind};
use crate::http::error::ApiError;
use crate::http::gate::Gate;

/// The header a page's script copies `csrf_access_token` into (Flask-JWT-Extended's name).
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Extracts the JWT from `Authorization: Bearer <JWT>`, with Flask-JWT-Extended's messages: the
/// value must be visible ASCII, the scheme `Bearer` in any case (RFC 9110 §11.1), then one token.
/// It works on bytes in passes that vectorise, since it runs on every protected request.
pub(crate) fn bearer_token(headers: &HeaderMap, max_len: usize) -> Result<&str, ApiError> {
    // A look at each name rather than a hashed lookup: cheaper for a head's few fields.
    let mut values = headers
        .iter()
        .filter(|&(name, _)| name == AUTHORIZATION)
        .map(|(_, value)| value);
    let value = values.next().ok_or(ApiError::MissingAuthHeader)?;
    if values.next().is_some() {
        return Err(ApiError::BadAuthHeader);
    }
    if value.len() > max_len {
        return Err(ApiError::AuthHeaderTooLarge);
    }
    let bytes = value.as_bytes().trim_ascii();
    let scheme_end = bytes
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(bytes.len());
    let (scheme, rest) = bytes.split_at(scheme_end);
    if !all_visible(scheme) {
        return Err(ApiError::BadAuthHeader);
    }
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError::MissingBearer);
    }
    // One pass over the token: blanks inside it, control characters and non-ASCII all fail it.
    let token = rest.trim_ascii_start();
    if token.is_empty() || !all_visible(token) {
        return Err(ApiError::BadAuthHeader);
    }
    // SAFETY: every byte of `token` was just checked to be visible ASCII, which is valid UTF-8.
    Ok(unsafe { std::str::from_utf8_unchecked(token) })
}

/// Whether every byte is visible ASCII, `!` to `~`. Eight bytes at a time in a `u64`, with no
/// early exit: a token is checked in about one instruction per byte. (Left to the vectoriser, a
/// fold over 32-byte chunks became 24 KiB of code that gathered bytes one by one, 4.5 per byte.)
pub(crate) fn all_visible(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Sets the high bit of the word's lanes (and maybe of lanes above them) when a byte is
    // below `!` (its subtraction borrows) or above `~` (0x7f plus one, or the high bit already
    // set). A carry or borrow only starts at a byte that is itself outside, so the answer holds.
    let outside = |word: u64| {
        (word.wrapping_sub(ONES * u64::from(b'!')) & !word) | word.wrapping_add(ONES) | word
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        found |= outside(u64::from_ne_bytes(
            chunk.try_into().expect("chunks of eight"),
        ));
    }
    let mut last = [b'!'; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    found |= outside(u64::from_ne_bytes(last));
    found & HIGH == 0
}

/// Where a request's token came from: a cookie-borne token on a state-changing request needs
/// its CSRF token too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Header,
    Cookie,
}

/// The token a request presents for `kind`, from the first of `tokens.location` that holds one
/// (as Flask-JWT-Extended looks). `kind` picks the cookie: the refresh cookie for a refresh.
pub(crate) fn presented<'a>(
    config: &Config,
    headers: &'a HeaderMap,
    kind: TokenKind,
) -> Result<(&'a str, Source), ApiError> {
    let mut missing = Vec::new();
    for location in &config.token_locations {
        match location {
            TokenLocation::Headers => {
                match bearer_token(headers, config.max_authorization_header) {
                    Ok(token) => return Ok((token, Source::Header)),
                    // An oversized header is refused whatever else the request holds.
                    Err(ApiError::AuthHeaderTooLarge) => return Err(ApiError::AuthHeaderTooLarge),
                    Err(e) if config.token_locations.len() == 1 => return Err(e),
                    Err(e) => missing.push(e.message()),
                }
            }
            TokenLocation::Cookies => {
                let name = match kind {
                    TokenKind::Access => cookies::ACCESS_COOKIE,
                    TokenKind::Refresh => cookies::REFRESH_COOKIE,
                };
                match cookies::find(headers, name) {
                    Some(token) => return Ok((token, Source::Cookie)),
                    None => missing.push(format!("Missing cookie \"{name}\"")),
                }
            }
        }
    }
    let places: Vec<&str> = config
        .token_locations
        .iter()
        .map(|l| match l {
            TokenLocation::Headers => "headers",
            TokenLocation::Cookies => "cookies",
        })
        .collect();
    Err(ApiError::NoToken(match places.split_last() {
        Some((last, first)) if !first.is_empty() => format!(
            "Missing JWT in {} or {last} ({})",
            first.join(", "),
            missing.join("; ")
        ),
        _ => missing.join("; "),
    }))
}

/// Whether the request must carry a CSRF token: authenticated by cookie, with
/// `cookies.csrf_protect` on, and any method but `GET`, `HEAD` and `OPTIONS`. That is
/// Flask-JWT-Extended's `POST`, `PUT`, `PATCH` and `DELETE`, and WebDAV's `PROPPATCH`, `MOVE`
/// and the rest too: a method an app may change state on is never let through on a cookie alone.
pub(crate) fn csrf_needed(config: &Config, method: &Method, source: Source) -> bool {
    source == Source::Cookie
        && config.cookies.csrf_protect
        && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `X-CSRF-TOKEN`, or the form's `csrf_token` field for authgate's own forms.
pub(crate) fn csrf_value<'a>(
    headers: &'a HeaderMap,
    form_field: Option<&'a str>,
) -> Option<&'a str> {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .or(form_field.filter(|v| !v.is_empty()))
}

/// Whether `sent` is the token's `csrf` claim, compared in constant time.
pub(crate) fn check_csrf(claims: &Claims, sent: &str) -> Result<(), ApiError> {
    let Some(expected) = claims.csrf.as_deref() else {
        return Err(ApiError::Token(TokenError::Invalid("Missing claim: csrf")));
    };
    let (a, b) = (expected.as_bytes(), sent.as_bytes());
    let differs = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differs {
        return Err(ApiError::CsrfMismatch);
    }
    Ok(())
}

/// The claims of a valid, unrevoked token of `kind` (`None`: either kind) from the request, with
/// its CSRF token checked when a cookie carried it (`form_csrf`: the field of authgate's own
/// forms). Until every revocation is loaded no token is trusted: the answer is 503, never a
/// forward.
pub(crate) fn authenticate(
    gate: &Gate,
    method: &Method,
    headers: &HeaderMap,
    kind: Option<TokenKind>,
    form_csrf: Option<&str>,
) -> Result<Arc<Claims>, ApiError> {
    if !gate.authenticator.is_ready() {
        return Err(ApiError::NotReady);
    }
    if gate.config.token_locations == [TokenLocation::Headers] {
        let token = bearer_token(headers, gate.config.max_authorization_header)?;
        return Ok(gate.authenticator.admit(token, kind)?);
    }
    // A logout may come with either cookie: the access cookie first.
    let (token, source) = match presented(&gate.config, headers, kind.unwrap_or(TokenKind::Access))
    {
        Err(ApiError::NoToken(_)) if kind.is_none() => {
            presented(&gate.config, headers, TokenKind::Refresh)?
        }
        found => found?,
    };
    let sent = if csrf_needed(&gate.config, method, source) {
        Some(csrf_value(headers, form_csrf).ok_or(ApiError::MissingCsrf)?)
    } else {
        None
    };
    let claims = gate.authenticator.admit(token, kind)?;
    if let Some(sent) = sent {
        check_csrf(&claims, sent)?;
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Every byte value at every position of strings of every length up to 24, against the
    /// plain definition.
    #[test]
    fn all_visible_agrees_with_the_byte_by_byte_definition() {
        for length in 1..24 {
            for position in 0..length {
                for byte in 0..=255u8 {
                    let mut text = vec![b'a'; length];
                    text[position] = byte;
                    let expected = (b'!'..=b'~').contains(&byte);
                    assert_eq!(
                        all_visible(&text),
                        expected,
                        "{byte:#x} at {position} of {length}"
                    );
                }
            }
        }
        assert!(all_visible(b""));
    }

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn authorization_header_forms() {
        assert_eq!(bearer_token(&with(&["Bearer abc"]), 100).unwrap(), "abc");
        assert_eq!(bearer_token(&with(&["bearer  abc "]), 100).unwrap(), "abc");
        assert!(matches!(
            bearer_token(&with(&[]), 100),
            Err(ApiError::MissingAuthHeader)
        ));
        assert!(matches!(
            bearer_token(&with(&["Basic abc"]), 100),
            Err(ApiError::MissingBearer)
        ));
        assert!(matches!(
            bearer_token(&with(&[""]), 100),
            Err(ApiError::MissingBearer)
        ));
        assert!(matches!(
            bearer_token(&with(&["Bearer"]), 100),
            Err(ApiError::BadAuthHeader)
        ));
        assert!(matches!(
            bearer_token(&with(&["Bearer a b"]), 100),
            Err(ApiError::BadAuthHeader)
        ));
        assert!(matches!(
            bearer_token(&with(&["Bearer a", "Bearer b"]), 100),
            Err(ApiError::BadAuthHeader)
        ));
        assert!(matches!(
            bearer_token(&with(&["Bearer\ta\t"]), 100),
            Ok("a")
        ));
        assert!(matches!(
            bearer_token(&with(&["Bearerabc"]), 100),
            Err(ApiError::MissingBearer)
        ));
        assert!(matches!(
            bearer_token(&with(&["Bearer a\tb"]), 100),
            Err(ApiError::BadAuthHeader)
        ));
        let not_ascii = HeaderValue::from_bytes("Bearer caf\u{e9}".as_bytes()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, not_ascii);
        assert!(matches!(
            bearer_token(&h, 100),
            Err(ApiError::BadAuthHeader)
        ));
        let long = format!("Bearer {}", "a".repeat(200));
        assert!(matches!(
            bearer_token(&with(&[&long]), 100),
            Err(ApiError::AuthHeaderTooLarge)
        ));
    }
}
