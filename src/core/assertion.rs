//! The signed identity the app receives: a short-lived JWT naming the user and their roles,
//! signed with an asymmetric key whose public half is in the JWKS, so that the app can verify who
//! is calling instead of trusting the network. One assertion serves every request of an access
//! token until half its life is gone, so signing is not paid per request.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::core::keys;
use crate::core::token::{Claims, SigningKey, key_names};

/// The longest an assertion may live: it is a bearer credential inside the app's network.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// An assertion's `typ` (RFC 8725 §3.11, explicit typing): an app that checks it can never take
/// an access or refresh token (`JWT`, as Flask-JWT-Extended writes them) for an assertion, and
/// authgate never takes an assertion for a token.
pub const ASSERTION_TYPE: &str = "authgate-assertion+jwt";

/// What `[identity]` says of assertions.
#[derive(Clone)]
pub struct AssertionConfig {
    pub header: http::HeaderName,
    /// The `aud` claim: names the app, so an assertion made for one app is refused by another.
    pub audience: String,
    pub algorithm: Algorithm,
    pub ttl: Duration,
    /// The first signs; all are published.
    pub keys: Vec<SigningKey>,
}

impl std::fmt::Debug for AssertionConfig {
    /// Never prints a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionConfig")
            .field("header", &self.header)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .field("keys", &key_names(&self.keys))
            .finish()
    }
}

/// The claims of an assertion.
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    username: &'a str,
    roles: &'a [String],
    iat: u64,
    exp: u64,
    jti: String,
}

/// Signs assertions with the first configured key.
pub struct AssertionSigner {
    header: Header,
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl: u64,
}

impl AssertionSigner {
    pub fn new(config: &AssertionConfig, issuer: &str) -> AssertionSigner {
        let signing = &config.keys[0];
        let mut header = Header::new(config.algorithm);
        header.kid = signing.kid.clone();
        header.typ = Some(ASSERTION_TYPE.into());
        AssertionSigner {
            header,
            key: keys::encoding_key(config.algorithm, &signing.secret)
                .expect("keys are checked when the configuration is loaded"),
            issuer: issuer.to_string(),
            audience: config.audience.clone(),
            ttl: config.ttl.as_secs(),
        }
    }

    /// The assertion for the user of `claims` at `now`: the one made for this token earlier while
    /// it has at least half its life left, a new one otherwise. It never outlives the token.
    pub fn assertion(&self, claims: &Claims, now: u64) -> Arc<str> {
        if let Some(kept) = claims.assertion.fresh(now) {
            return kept;
        }
        let exp = (now + self.ttl).min(claims.exp.max(now + 1));
        let body = AssertionClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &claims.sub,
            username: &claims.username,
            roles: claims.roles(),
            iat: now,
            exp,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let signed: Arc<str> = jsonwebtoken::encode(&self.header, &body, &self.key)
            .expect("signing with a key checked at start-up cannot fail")
            .into();
        let renew_at = now + (exp - now).div_ceil(2);
        claims.assertion.keep(signed.clone(), renew_at);
        signed
    }
}

/// An access token's latest assertion and when to make a new one, kept with its claims in the
/// verified-token cache. Not part of what a token says: equal to any other, and empty in a copy.
#[derive(Default)]
pub struct AssertionCache(RwLock<Option<(Arc<str>, u64)>>);

impl AssertionCache {
    fn fresh(&self, now: u64) -> Option<Arc<str>> {
        let kept = self.0.read().unwrap_or_else(|e| e.into_inner());
        kept.as_ref()
            .filter(|(_, renew_at)| now < *renew_at)
            .map(|(signed, _)| signed.clone())
    }

    fn keep(&self, signed: Arc<str>, renew_at: u64) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some((signed, renew_at));
    }
}

impl Clone for AssertionCache {
    fn clone(&self) -> Self {
        AssertionCache::default()
    }
}

impl PartialEq for AssertionCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AssertionCache {}

impl std::fmt::Debug for AssertionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionCache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::tests::ED25519_PEM;
    use crate::core::token::{Subject, TokenConfig, TokenKind, TokenService, unix_now};

    fn signer(ttl: u64) -> AssertionSigner {
        AssertionSigner::new(
            &AssertionConfig {
                header: http::HeaderName::from_static("x-auth-assertion"),
                audience: "the-app".into(),
                algorithm: Algorithm::EdDSA,
                ttl: Duration::from_secs(ttl),
                keys: vec![SigningKey {
                    kid: Some("a1".into()),
                    secret: ED25519_PEM.as_bytes().to_vec(),
                }],
            },
            "authgate",
        )
    }

    fn claims(access_ttl: u64) -> Arc<Claims> {
        let tokens = TokenService::new(&TokenConfig {
            keys: vec![SigningKey {
                kid: None,
                secret: b"assertion-unit-test-secret-0123456789-abcdef".to_vec(),
            }],
            algorithm: Algorithm::HS256,
            access_ttl: Duration::from_secs(access_ttl),
            refresh_ttl: Duration::from_secs(86400),
            issuer: "authgate".into(),
            leeway: Duration::ZERO,
            csrf_claim: false,
        });
        let roles = ["admin".to_string()];
        let subject = Subject {
            user_id: "u-1",
            username: "alice",
            sid: "s-1",
            roles: &roles,
        };
        let (token, _) = tokens.issue(&subject, TokenKind::Access, false, unix_now());
        tokens.verify(&token, unix_now()).unwrap()
    }

    fn verified(assertion: &str) -> serde_json::Value {
        let public = keys::decoding_key(Algorithm::EdDSA, ED25519_PEM.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["the-app"]);
        validation.set_issuer(&["authgate"]);
        validation.validate_exp = false;
        let header = jsonwebtoken::decode_header(assertion).unwrap();
        assert_eq!(header.kid.as_deref(), Some("a1"));
        assert_eq!(header.typ.as_deref(), Some(ASSERTION_TYPE));
        jsonwebtoken::decode::<serde_json::Value>(assertion, &public, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn an_assertion_names_the_user_for_the_app_and_verifies_with_the_public_key() {
        let claims = claims(900);
        let now = unix_now();
        let body = verified(&signer(60).assertion(&claims, now));
        assert_eq!(body["sub"], "u-1");
        assert_eq!(body["username"], "alice");
        assert_eq!(body["roles"], serde_json::json!(["admin"]));
        assert_eq!(body["aud"], "the-app");
        assert_eq!(body["iss"], "authgate");
        assert_eq!(body["iat"], now);
        assert_eq!(body["exp"], now + 60);
        assert!(body["jti"].as_str().is_some());
    }

    #[test]
    fn one_assertion_serves_a_token_until_half_its_life_is_gone() {
        let claims = claims(900);
        let signer = signer(60);
        let now = unix_now();
        let first = signer.assertion(&claims, now);
        assert_eq!(signer.assertion(&claims, now + 29), first);
        let later = signer.assertion(&claims, now + 30);
        assert_ne!(later, first);
        assert_eq!(verified(&later)["exp"], now + 90);
    }

    #[test]
    fn an_assertion_never_outlives_its_token() {
        let claims = claims(10);
        let now = unix_now();
        let body = verified(&signer(60).assertion(&claims, now));
        assert_eq!(body["exp"], claims.exp);
    }
}
