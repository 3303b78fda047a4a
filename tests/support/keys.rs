//! Keys and configuration for the tests of asymmetric tokens and the signed identity.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{SECRET, get};

/// An RSA 2048 key made once with openssl: a debug build takes seconds to make one.
pub const RS256_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rs256.pem");

/// A new private key for `algorithm` in `dir`, made by `authgate keygen`'s code (RSA: the key
/// above).
pub fn key_file(dir: &Path, algorithm: &str, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let pem = match algorithm {
        "RS256" => std::fs::read_to_string(RS256_PEM).unwrap(),
        _ => authgate::keygen::private_key_pem(algorithm).unwrap(),
    };
    std::fs::write(&path, pem).unwrap();
    path
}

/// `[identity]` with assertions for audience `the-app`, signed by `keys` (kid, file), the first
/// signing.
pub fn assertions(algorithm: &str, keys: &[(&str, &Path)]) -> String {
    let mut text = format!(
        "[identity]\nassertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"the-app\"\n\
         assertion_algorithm = \"{algorithm}\"\n"
    );
    for (kid, file) in keys {
        text.push_str(&format!(
            "[[identity.assertion_keys]]\nkid = \"{kid}\"\nprivate_key_file = \"{}\"\n",
            file.display()
        ));
    }
    text
}

/// A configuration edit: tokens signed with `algorithm` and the key in `file` instead of the test
/// secret.
pub fn asymmetric_tokens(algorithm: &str, file: &Path) -> impl FnOnce(String) -> String {
    let line = format!(
        "algorithm = \"{algorithm}\"\nprivate_key_file = \"{}\"",
        file.display()
    );
    move |config| config.replace(&format!("secret = \"{SECRET}\""), &line)
}

/// The JWKS the gate at `addr` publishes.
pub async fn jwks(addr: SocketAddr) -> JwkSet {
    jwks_at(addr, "/.well-known/jwks.json").await
}

/// The JWKS the gate at `addr` publishes at `path`.
pub async fn jwks_at(addr: SocketAddr, path: &str) -> JwkSet {
    let r = get(addr, path, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
    serde_json::from_slice(&r.body).unwrap()
}

/// Verifies `jwt` as an app would: the key its header names, from `set`, for `algorithm`.
pub fn verify(
    set: &JwkSet,
    jwt: &str,
    algorithm: Algorithm,
    audience: Option<&str>,
) -> Result<Value, String> {
    let kid = jsonwebtoken::decode_header(jwt)
        .map_err(|e| e.to_string())?
        .kid
        .ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or(format!("no key {kid} in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&["authgate"]);
    match audience {
        // As the README says an app checks an assertion: its type, and an `aud` it must have.
        Some(aud) => {
            let typ = jsonwebtoken::decode_header(jwt)
                .map_err(|e| e.to_string())?
                .typ;
            if typ.as_deref() != Some("authgate-assertion+jwt") {
                return Err(format!("not an assertion: typ {typ:?}"));
            }
            validation.set_audience(&[aud]);
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        }
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}
