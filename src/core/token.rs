//! Token claims, issuing and verifying. Validation is fixed when the gate starts: one algorithm,
//! required claims, `nbf` checked, explicit leeway. Claim names are Flask-JWT-Extended's.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::core::assertion::AssertionCache;
use crate::core::keys;
use crate::core::verified::VerifiedTokens;

/// The names of `keys`, for `Debug` output that must never show a key.
pub fn key_names(keys: &[SigningKey]) -> Vec<&str> {
    keys.iter()
        .map(|k| k.kid.as_deref().unwrap_or("-"))
        .collect()
}

/// One signing key.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: Option<String>,
    /// The HMAC secret, or for an asymmetric algorithm the private key's PKCS#8 PEM (checked by
    /// `keys::encoding_key` when the configuration was loaded).
    pub secret: Vec<u8>,
}

#[derive(Clone)]
pub struct TokenConfig {
    /// The first signs; every one verifies tokens whose `kid` names it.
    pub keys: Vec<SigningKey>,
    pub algorithm: jsonwebtoken::Algorithm,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub issuer: String,
    pub leeway: Duration,
    /// Whether tokens carry a `csrf` claim (tokens may come in cookies, with CSRF protection on),
    /// as Flask-JWT-Extended writes it.
    pub csrf_claim: bool,
}

/// How far apart the replicas' clocks may be, for the revocation window: each replica checks
/// `exp` on its own clock against a token another one issued.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

impl TokenConfig {
    /// How long after a session is revoked one of its access tokens may still be presented: the
    /// longest an access token lives, its leeway, and the replicas' clock skew. No access token
    /// is issued for a revoked session (the store refuses its refresh), so a revocation held in
    /// memory this long covers every token it must.
    pub fn revocation_window(&self) -> Duration {
        self.access_ttl + self.leeway + CLOCK_SKEW
    }
}

impl std::fmt::Debug for TokenConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("keys", &key_names(&self.keys))
            .field("algorithm", &self.algorithm)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Revoked,
    BadSignature,
    /// An access token where a refresh token is needed.
    RefreshRequired,
    /// A refresh token where an access token is needed.
    AccessRequired,
    /// Malformed, wrong algorithm, wrong issuer, not yet valid, missing claims: the text says which.
    Invalid(&'static str),
}

impl TokenError {
    pub fn message(&self) -> &'static str {
        match self {
            TokenError::Expired => "Token has expired",
            TokenError::Revoked => "Token has been revoked",
            TokenError::BadSignature => "Signature verification failed",
            TokenError::RefreshRequired => "Only refresh tokens are allowed",
            TokenError::AccessRequired => "Only non-refresh tokens are allowed",
            TokenError::Invalid(msg) => msg,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's stable id.
    pub sub: String,
    pub username: String,
    /// This token's own id.
    pub jti: String,
    /// The login session: logout revokes it, and with it every token it produced.
    pub sid: String,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    /// True only on access tokens straight from /login.
    pub fresh: bool,
    /// The double-submit CSRF value, when tokens may come in cookies (Flask-JWT-Extended's
    /// `csrf` claim); the two tokens of a pair share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
    /// The user's roles when the token was issued: on access tokens only, since a refresh reads
    /// them from the store again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub iss: String,
    /// `sid` as the revocation cache keys it: worked out at a token's first check, then kept
    /// with its claims in the verified-token cache, so that a request parses no UUID.
    #[serde(skip)]
    pub revocation_key: OnceLock<u128>,
    /// `roles` as the app's header carries them, comma-separated: joined at a token's first
    /// forward, then kept with its claims like `revocation_key`.
    #[serde(skip)]
    pub roles_header: OnceLock<String>,
    /// The signed identity the app gets for this token, when assertions are on.
    #[serde(skip)]
    pub assertion: AssertionCache,
}

impl Claims {
    /// The roles the token carries; none on a refresh token.
    pub fn roles(&self) -> &[String] {
        self.roles.as_deref().unwrap_or_default()
    }

    /// The roles, comma-separated, for the app's header; `None` when there are none.
    pub fn roles_header(&self) -> Option<&str> {
        let roles = self.roles();
        (!roles.is_empty()).then(|| {
            self.roles_header
                .get_or_init(|| crate::core::roles::join_roles(roles))
                .as_str()
        })
    }
}

/// Who a token is for, as the issuer needs it.
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub sid: &'a str,
    /// Signed into access tokens.
    pub roles: &'a [String],
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

pub struct TokenService {
    header: Header,
    /// The first configured key, which signs every new token.
    encoding: EncodingKey,
    /// Every configured key by `kid`; a token is verified only with the key its header names.
    decoding: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
    access_ttl: u64,
    refresh_ttl: u64,
    issuer: String,
    leeway: u64,
    csrf_claim: bool,
    /// Tokens that passed full verification: their time claims are checked against the clock
    /// again on every use; revocation is the caller's, every time.
    verified: VerifiedTokens,
}

impl TokenService {
    pub fn new(config: &TokenConfig) -> TokenService {
        let mut validation = Validation::new(config.algorithm);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = config.leeway.as_secs();
        let signing = &config.keys[0];
        let mut header = Header::new(config.algorithm);
        header.kid = signing.kid.clone();
        let algorithm = config.algorithm;
        TokenService {
            header,
            encoding: keys::encoding_key(algorithm, &signing.secret)
                .expect("keys are checked when the configuration is loaded"),
            decoding: config
                .keys
                .iter()
                .map(|k| {
                    let key = keys::decoding_key(algorithm, &k.secret)
                        .expect("keys are checked when the configuration is loaded");
                    (k.kid.clone(), key)
                })
                .collect(),
            validation,
            access_ttl: config.access_ttl.as_secs(),
            refresh_ttl: config.refresh_ttl.as_secs(),
            issuer: config.issuer.clone(),
            leeway: config.leeway.as_secs(),
            csrf_claim: config.csrf_claim,
            verified: VerifiedTokens::default(),
        }
    }

    pub fn access_ttl(&self) -> u64 {
        self.access_ttl
    }

    pub fn refresh_ttl(&self) -> u64 {
        self.refresh_ttl
    }

    /// Signs a new token of `kind` for `subject`, valid from `now`, with a `csrf` claim of its own
    /// when tokens carry one.
    pub fn issue(
        &self,
        subject: &Subject<'_>,
        kind: TokenKind,
        fresh: bool,
        now: u64,
    ) -> (String, Claims) {
        let csrf = self.csrf_claim.then(|| uuid::Uuid::new_v4().to_string());
        self.issue_with_csrf(subject, kind, fresh, now, csrf)
    }

    /// A new `csrf` value, for the two tokens of a pair; `None` when tokens carry none.
    pub fn new_csrf(&self) -> Option<String> {
        self.csrf_claim.then(|| uuid::Uuid::new_v4().to_string())
    }

    /// `issue`, with the `csrf` claim given.
    pub fn issue_with_csrf(
        &self,
        subject: &Subject<'_>,
        kind: TokenKind,
        fresh: bool,
        now: u64,
        csrf: Option<String>,
    ) -> (String, Claims) {
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: subject.user_id.to_string(),
            username: subject.username.to_string(),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: subject.sid.to_string(),
            kind,
            fresh: fresh && kind == TokenKind::Access,
            csrf,
            roles: (kind == TokenKind::Access).then(|| subject.roles.to_vec()),
            iat: now,
            nbf: now,
            exp: now + ttl,
            iss: self.issuer.clone(),
            revocation_key: OnceLock::new(),
            roles_header: OnceLock::new(),
            assertion: AssertionCache::default(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .expect("signing with a key checked at start-up cannot fail");
        (token, claims)
    }

    /// Checks signature, algorithm, issuer, `nbf` and `exp` (a token whose `exp` is now is expired).
    /// Revocation is checked by the caller, after this.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Claims>, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            self.check_times(&claims, now)?;
            return Ok(claims);
        }
        let key = self.key_for(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ImmatureSignature => {
                    TokenError::Invalid("The token is not yet valid (nbf)")
                }
                ErrorKind::InvalidIssuer => TokenError::Invalid("Invalid issuer"),
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm => {
                    TokenError::Invalid("The specified alg value is not allowed")
                }
                // The header fails to parse when it names an algorithm jsonwebtoken lacks ("none").
                ErrorKind::Json(_) if !self.header_names_our_algorithm(token) => {
                    TokenError::Invalid("The specified alg value is not allowed")
                }
                ErrorKind::MissingRequiredClaim(_)
                | ErrorKind::InvalidClaimFormat(_)
                | ErrorKind::Json(_) => TokenError::Invalid("Invalid token claims"),
                _ => TokenError::Invalid("Invalid token"),
            }
        })?;
        // An assertion is made for the app, never to be presented back as a token.
        if data.header.typ.as_deref() == Some(crate::core::assertion::ASSERTION_TYPE) {
            return Err(TokenError::Invalid("Invalid token"));
        }
        // A role reaches the app in a comma-separated header: one that could be split there, or
        // read as another, is refused whoever signed it; and so are more roles than a user may
        // hold, which would only make that header long.
        let roles = data.claims.roles();
        if roles.len() > crate::core::roles::MAX_ROLES
            || roles
                .iter()
                .any(|role| crate::core::roles::validate_role(role).is_err())
        {
            return Err(TokenError::Invalid("Invalid token claims"));
        }
        let claims = Arc::new(data.claims);
        self.check_times(&claims, now)?;
        self.verified.insert(token, claims.clone());
        Ok(claims)
    }

    /// `exp` and `nbf` against `now`, with the configured leeway; a token whose `exp` is now is
    /// expired.
    fn check_times(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(self.leeway) {
            return Err(TokenError::Invalid("The token is not yet valid (nbf)"));
        }
        Ok(())
    }

    /// The key that must have signed `token`: with one key, that key (the header is not even read);
    /// with several, the one its `kid` names. The `kid` is only ever compared with configured
    /// names, never used to find a key anywhere else.
    fn key_for(&self, token: &str) -> Result<&DecodingKey, TokenError> {
        if let [(_, only)] = self.decoding.as_slice() {
            return Ok(only);
        }
        let kid = match jsonwebtoken::decode_header(token) {
            Ok(header) => header.kid,
            Err(_) if !self.header_names_our_algorithm(token) => {
                return Err(TokenError::Invalid(
                    "The specified alg value is not allowed",
                ));
            }
            Err(_) => return Err(TokenError::Invalid("Invalid token")),
        };
        self.decoding
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(TokenError::Invalid("Unknown signing key"))
    }

    /// Whether the token's header is JSON whose `alg` is the configured algorithm. Only used to word
    /// an error, never to accept a token.
    fn header_names_our_algorithm(&self, token: &str) -> bool {
        use base64::Engine;
        let Some(header) = token.split('.').next() else {
            return false;
        };
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
            return false;
        };
        let expected = format!("{:?}", self.header.alg);
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|h| h.get("alg").and_then(|a| a.as_str()) == Some(expected.as_str()))
    }

    /// `verify`, then insists on the kind of token the caller needs.
    pub fn verify_kind(
        &self,
        token: &str,
        kind: TokenKind,
        now: u64,
    ) -> Result<Arc<Claims>, TokenError> {
        let claims = self.verify(token, now)?;
        match (kind, claims.kind) {
            (TokenKind::Access, TokenKind::Refresh) => Err(TokenError::AccessRequired),
            (TokenKind::Refresh, TokenKind::Access) => Err(TokenError::RefreshRequired),
            _ => Ok(claims),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    const SECRET: &[u8] = b"unit-test-secret-0123456789-abcdefghijklmnop";

    fn service(leeway: u64) -> TokenService {
        TokenService::new(&TokenConfig {
            keys: vec![SigningKey {
                kid: None,
                secret: SECRET.to_vec(),
            }],
            algorithm: jsonwebtoken::Algorithm::HS256,
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(86400),
            issuer: "authgate".into(),
            leeway: Duration::from_secs(leeway),
            csrf_claim: false,
        })
    }

    const SUBJECT: Subject<'static> = Subject {
        user_id: "u-1",
        username: "alice",
        sid: "s-1",
        roles: &[],
    };

    fn sign_raw(header: &str, payload: &serde_json::Value) -> String {
        use hmac::Mac;
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload.to_string()));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            B64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn issued_tokens_carry_flask_jwt_extended_claims() {
        let s = service(0);
        let now = unix_now();
        let (token, claims) = s.issue(&SUBJECT, TokenKind::Access, true, now);
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        for key in [
            "sub", "username", "jti", "sid", "type", "fresh", "iat", "nbf", "exp", "iss",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert_eq!(json["type"], "access");
        assert_eq!(json["sub"], "u-1");
        assert_eq!(claims.exp, now + 900);
        assert_eq!(*s.verify(&token, now).unwrap(), claims);
        let (_, refresh) = s.issue(&SUBJECT, TokenKind::Refresh, true, now);
        assert!(!refresh.fresh, "refresh tokens are never fresh");
    }

    #[test]
    fn access_tokens_carry_the_roles_and_refresh_tokens_none() {
        let s = service(0);
        let now = unix_now();
        let roles = ["admin".to_string(), "billing".to_string()];
        let subject = Subject {
            roles: &roles,
            ..SUBJECT
        };
        let (access, _) = s.issue(&subject, TokenKind::Access, false, now);
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode(access.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(json["roles"], serde_json::json!(["admin", "billing"]));
        let claims = s.verify(&access, now).unwrap();
        assert_eq!(claims.roles(), roles);
        assert_eq!(claims.roles_header(), Some("admin,billing"));
        let (refresh, _) = s.issue(&subject, TokenKind::Refresh, false, now);
        assert!(payload_of(&refresh).get("roles").is_none());
        let (none, _) = s.issue(&SUBJECT, TokenKind::Access, false, now);
        assert_eq!(payload_of(&none)["roles"], serde_json::json!([]));
        assert_eq!(s.verify(&none, now).unwrap().roles_header(), None);
    }

    fn payload_of(token: &str) -> serde_json::Value {
        serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    /// Whoever signed it, a role that an app could split, trim or fold into another is refused.
    #[test]
    fn a_token_with_a_role_the_app_could_misread_is_refused() {
        let s = service(0);
        let now = unix_now();
        for roles in [
            serde_json::json!(["admin,billing"]),
            serde_json::json!([" admin"]),
            serde_json::json!(["Admin"]),
            serde_json::json!([""]),
            serde_json::json!(["admin\r\nX-Auth-User-Id: 1"]),
            serde_json::json!([["admin"]]),
            serde_json::json!([1]),
            serde_json::json!("admin"),
        ] {
            let mut p = valid_payload();
            p["roles"] = roles.clone();
            let token = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &p);
            assert_eq!(
                s.verify(&token, now),
                Err(TokenError::Invalid("Invalid token claims")),
                "{roles}"
            );
        }
        let mut p = valid_payload();
        p["roles"] = serde_json::json!(["admin", "team:ops"]);
        let token = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &p);
        assert_eq!(
            s.verify(&token, now).unwrap().roles(),
            ["admin", "team:ops"]
        );
    }

    #[test]
    fn a_token_whose_exp_is_now_is_expired() {
        let s = service(0);
        let (token, claims) = s.issue(&SUBJECT, TokenKind::Access, false, unix_now());
        assert_eq!(s.verify(&token, claims.exp), Err(TokenError::Expired));
        assert!(s.verify(&token, claims.exp - 1).is_ok());
        // With leeway the same token lives `leeway` seconds longer, and no more.
        let lenient = service(5);
        assert!(lenient.verify(&token, claims.exp + 4).is_ok());
        assert_eq!(
            lenient.verify(&token, claims.exp + 5),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_remembered_token_is_still_checked_against_the_clock() {
        let s = service(0);
        let now = unix_now();
        let (token, claims) = s.issue(&SUBJECT, TokenKind::Access, false, now);
        assert!(
            s.verify(&token, now).is_ok(),
            "verified, and now remembered"
        );
        assert!(s.verified.get(&token).is_some());
        assert_eq!(s.verify(&token, claims.exp), Err(TokenError::Expired));
        assert_eq!(
            s.verify(&token, claims.nbf - 1),
            Err(TokenError::Invalid("The token is not yet valid (nbf)"))
        );
        let mut tampered = token.clone();
        tampered.insert(token.len() - 5, 'x');
        assert!(
            s.verify(&tampered, now).is_err(),
            "only the exact text is remembered"
        );
    }

    #[test]
    fn kinds_are_enforced() {
        let s = service(0);
        let now = unix_now();
        let (access, _) = s.issue(&SUBJECT, TokenKind::Access, false, now);
        let (refresh, _) = s.issue(&SUBJECT, TokenKind::Refresh, false, now);
        assert_eq!(
            s.verify_kind(&refresh, TokenKind::Access, now),
            Err(TokenError::AccessRequired)
        );
        assert_eq!(
            s.verify_kind(&access, TokenKind::Refresh, now),
            Err(TokenError::RefreshRequired)
        );
    }

    fn valid_payload() -> serde_json::Value {
        let now = unix_now();
        serde_json::json!({"sub":"u-1","username":"a","jti":"j","sid":"s","type":"access","fresh":false,
            "iat":now,"nbf":now,"exp":now+60,"iss":"authgate"})
    }

    /// Whatever its claims, a JWT typed as an assertion is something authgate made for an app,
    /// never a token to be let in with.
    #[test]
    fn an_assertion_is_never_a_token() {
        let header = format!(
            r#"{{"alg":"HS256","typ":"{}"}}"#,
            crate::core::assertion::ASSERTION_TYPE
        );
        let token = sign_raw(&header, &valid_payload());
        assert_eq!(
            service(0).verify(&token, unix_now()),
            Err(TokenError::Invalid("Invalid token"))
        );
    }

    #[test]
    fn hand_signed_tokens_with_the_right_key_verify() {
        // Guards the helper below: the refusals that follow are about the claims, not the signing.
        let token = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &valid_payload());
        assert!(service(0).verify(&token, unix_now()).is_ok());
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let s = service(0);
        let now = unix_now();
        let mut cases: Vec<(String, serde_json::Value)> = Vec::new();
        let mut p = valid_payload();
        p["exp"] = serde_json::json!("9999999999");
        cases.push(("exp as a string".into(), p));
        let mut p = valid_payload();
        p.as_object_mut().unwrap().remove("exp");
        cases.push(("no exp".into(), p));
        let mut p = valid_payload();
        p["sub"] = serde_json::json!(42);
        cases.push(("numeric sub".into(), p));
        let mut p = valid_payload();
        p["type"] = serde_json::json!("admin");
        cases.push(("unknown type".into(), p));
        let mut p = valid_payload();
        p["nbf"] = serde_json::json!(now + 3600);
        cases.push(("nbf in the future".into(), p));
        let mut p = valid_payload();
        p["iss"] = serde_json::json!("someone-else");
        cases.push(("wrong issuer".into(), p));
        for (what, payload) in cases {
            let token = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload);
            assert!(
                matches!(s.verify(&token, now), Err(TokenError::Invalid(_))),
                "{what}"
            );
        }

        let unsigned = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(valid_payload().to_string())
        );
        assert!(s.verify(&unsigned, now).is_err(), "alg none");
        let hs512 = sign_raw(r#"{"alg":"HS512","typ":"JWT"}"#, &valid_payload());
        assert!(s.verify(&hs512, now).is_err(), "wrong algorithm");
        let (good, _) = s.issue(&SUBJECT, TokenKind::Access, false, now);
        // Change a character well inside the signature: the last one also carries padding bits.
        let mut tampered = good.clone().into_bytes();
        let i = tampered.len() - 10;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(s.verify(&tampered, now), Err(TokenError::BadSignature));
        for junk in ["", "abc", "a.b", "a.b.c.d", "!!!.???.***"] {
            assert!(s.verify(junk, now).is_err(), "{junk}");
        }
    }
}

#[cfg(test)]
mod key_rotation_tests {
    use super::*;

    fn key(kid: Option<&str>, secret: &str) -> SigningKey {
        SigningKey {
            kid: kid.map(str::to_string),
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn service(keys: Vec<SigningKey>) -> TokenService {
        TokenService::new(&TokenConfig {
            keys,
            algorithm: jsonwebtoken::Algorithm::HS256,
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(86400),
            issuer: "authgate".into(),
            leeway: Duration::ZERO,
            csrf_claim: false,
        })
    }

    const OLD: &str = "the-old-secret-0123456789-abcdefghijklmnop";
    const NEW: &str = "the-new-secret-0123456789-abcdefghijklmnop";
    const SUBJECT: Subject<'static> = Subject {
        user_id: "u",
        username: "a",
        sid: "s",
        roles: &[],
    };

    #[test]
    fn old_keys_verify_until_removed_and_the_first_key_signs() {
        let now = unix_now();
        let before = service(vec![key(None, OLD)]);
        let (old_token, _) = before.issue(&SUBJECT, TokenKind::Access, false, now);

        let rotating = service(vec![key(Some("2026-11"), NEW), key(None, OLD)]);
        assert!(
            rotating.verify(&old_token, now).is_ok(),
            "tokens from before the rotation still verify"
        );
        let (new_token, _) = rotating.issue(&SUBJECT, TokenKind::Access, false, now);
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some("2026-11")
        );
        assert!(rotating.verify(&new_token, now).is_ok());

        let rotated = service(vec![key(Some("2026-11"), NEW)]);
        assert_eq!(
            rotated.verify(&old_token, now),
            Err(TokenError::BadSignature),
            "the old key is gone"
        );
        assert!(rotated.verify(&new_token, now).is_ok());
    }

    #[test]
    fn a_kid_selects_only_a_configured_key() {
        let now = unix_now();
        let keys = service(vec![key(Some("a"), NEW), key(Some("b"), OLD)]);
        // Signed with key b's secret but claiming to be key a: a's key refuses it.
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("a".into());
        let (_, claims) = keys.issue(&SUBJECT, TokenKind::Access, false, now);
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(OLD.as_bytes()))
                .unwrap();
        assert_eq!(keys.verify(&forged, now), Err(TokenError::BadSignature));
        for kid in ["c", "../../etc/passwd", "http://evil.example/key"] {
            header.kid = Some(kid.into());
            let token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(NEW.as_bytes()))
                    .unwrap();
            assert_eq!(
                keys.verify(&token, now),
                Err(TokenError::Invalid("Unknown signing key")),
                "{kid}"
            );
        }
    }
}
