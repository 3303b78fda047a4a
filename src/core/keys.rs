//! Signing keys: HMAC secrets, and asymmetric private keys (Ed25519, P-256, RSA) read from PKCS#8
//! PEM, with the public half of the latter as a JWK for the JWKS that apps and other services
//! verify with. A secret never becomes a JWK: only asymmetric keys are ever published.

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// What `tokens.algorithm` and `identity.assertion_algorithm` may name besides HMAC.
pub const ASYMMETRIC_NAMES: &str = "\"EdDSA\" (Ed25519), \"ES256\" (P-256) or \"RS256\"";

/// The smallest RSA modulus accepted, in bytes: 2048 bits.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Whether `algorithm` signs with a private key and verifies with a public one.
pub fn is_asymmetric(algorithm: Algorithm) -> bool {
    !matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

/// The algorithm a configuration names, of those authgate signs with.
pub fn algorithm_named(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        _ => return None,
    })
}

/// The key that signs for `algorithm`: `material` is the secret for HMAC, and a private key's
/// PEM otherwise.
pub fn encoding_key(algorithm: Algorithm, material: &[u8]) -> Result<EncodingKey, String> {
    let kind = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return Ok(EncodingKey::from_secret(material));
        }
        Algorithm::EdDSA => "an Ed25519",
        Algorithm::ES256 => "a P-256 (prime256v1) EC",
        Algorithm::RS256 => "an RSA",
        other => return Err(format!("{other:?} is not supported")),
    };
    let key = match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(material),
        Algorithm::ES256 => EncodingKey::from_ec_pem(material),
        _ => EncodingKey::from_rsa_pem(material),
    };
    let key = key.map_err(|_| format!("is not {kind} private key in PEM (PKCS#8)"))?;
    // The public half must come out of it, and a signature made with it must verify: a P-384
    // key read as P-256, say, is refused here rather than at the first login.
    let public = public_jwk(algorithm, None, &key)
        .map_err(|_| format!("is not {kind} private key in PEM (PKCS#8)"))?;
    if let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &public.algorithm {
        let modulus = base64_len(&rsa.n);
        if modulus < MIN_RSA_MODULUS_BYTES {
            return Err(format!(
                "is an RSA key of {} bits: use 2048 bits or more",
                modulus * 8
            ));
        }
    }
    let decoding = DecodingKey::from_jwk(&public).map_err(|e| e.to_string())?;
    let probe = jsonwebtoken::encode(&Header::new(algorithm), &serde_json::json!({}), &key)
        .map_err(|_| format!("is not {kind} private key in PEM (PKCS#8)"))?;
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(&probe, &decoding, &validation)
        .map_err(|_| format!("is not {kind} private key in PEM (PKCS#8)"))?;
    Ok(key)
}

/// The key that verifies what `encoding` signs: the secret itself for HMAC, the public half
/// otherwise.
pub fn decoding_key(algorithm: Algorithm, material: &[u8]) -> Result<DecodingKey, String> {
    if !is_asymmetric(algorithm) {
        return Ok(DecodingKey::from_secret(material));
    }
    let encoding = encoding_key(algorithm, material)?;
    let public = public_jwk(algorithm, None, &encoding)?;
    DecodingKey::from_jwk(&public).map_err(|e| e.to_string())
}

/// The public half of an asymmetric key as a JWK, named `kid`, for signatures. Refuses HMAC:
/// its "public" half is the secret.
pub fn public_jwk(
    algorithm: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
) -> Result<Jwk, String> {
    if !is_asymmetric(algorithm) {
        return Err("an HMAC secret has no public half".into());
    }
    let mut jwk = Jwk::from_encoding_key(key, algorithm).map_err(|e| e.to_string())?;
    jwk.common.key_id = kid.map(str::to_string);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}

/// A name for an asymmetric key that has none: its RFC 7638 thumbprint, the same on every
/// replica that reads the same key.
pub fn thumbprint(algorithm: Algorithm, key: &EncodingKey) -> Result<String, String> {
    public_jwk(algorithm, None, key)?
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .map_err(|e| e.to_string())
}

/// The JWKS document (RFC 7517) of the asymmetric keys among `keys`, each `(algorithm, kid,
/// material)`, in order; secrets are left out.
pub fn jwks<'a>(keys: impl IntoIterator<Item = (Algorithm, Option<&'a str>, &'a [u8])>) -> String {
    let keys = keys
        .into_iter()
        .filter(|(algorithm, _, _)| is_asymmetric(*algorithm))
        .filter_map(|(algorithm, kid, material)| {
            let key = encoding_key(algorithm, material).ok()?;
            public_jwk(algorithm, kid, &key).ok()
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).expect("a JWK set serialises")
}

/// How many bytes an unpadded base64url text decodes to.
fn base64_len(text: &str) -> usize {
    text.len() * 3 / 4
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key for tests only, made with `openssl genpkey -algorithm ed25519`.
    pub(crate) const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIE+6MUon6fVKSNqd+siwmJ6qLTZkqWhOLNoHcuMR8Vsv
-----END PRIVATE KEY-----
";

    #[test]
    fn an_ed25519_key_signs_and_its_public_half_verifies() {
        let key = encoding_key(Algorithm::EdDSA, ED25519_PEM.as_bytes()).unwrap();
        let jwk = public_jwk(Algorithm::EdDSA, Some("k1"), &key).unwrap();
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["kty"], "OKP");
        assert_eq!(json["crv"], "Ed25519");
        assert_eq!(json["kid"], "k1");
        assert_eq!(json["use"], "sig");
        assert_eq!(json["alg"], "EdDSA");
        assert!(json.get("d").is_none(), "no private part: {json}");
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &serde_json::json!({"sub": "u"}),
            &key,
        )
        .unwrap();
        let decoding = decoding_key(Algorithm::EdDSA, ED25519_PEM.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok());
    }

    #[test]
    fn a_key_of_another_kind_or_no_key_is_refused_with_what_was_expected() {
        for algorithm in [Algorithm::ES256, Algorithm::RS256] {
            let e = encoding_key(algorithm, ED25519_PEM.as_bytes()).unwrap_err();
            assert!(e.contains("private key in PEM"), "{e}");
        }
        let e = encoding_key(Algorithm::EdDSA, b"not a pem").unwrap_err();
        assert!(e.contains("is not an Ed25519 private key"), "{e}");
    }

    #[test]
    fn a_secret_is_never_published() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let key = encoding_key(Algorithm::HS256, secret).unwrap();
        assert!(public_jwk(Algorithm::HS256, None, &key).is_err());
        let set: serde_json::Value = serde_json::from_str(&jwks([
            (Algorithm::HS256, Some("h"), &secret[..]),
            (Algorithm::EdDSA, Some("e"), ED25519_PEM.as_bytes()),
        ]))
        .unwrap();
        assert_eq!(set["keys"].as_array().unwrap().len(), 1);
        assert_eq!(set["keys"][0]["kid"], "e");
        assert!(set["keys"][0].get("k").is_none() && set["keys"][0].get("d").is_none());
    }
}
