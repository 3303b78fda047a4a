//! `authgate keygen`: a new private key, PKCS#8 PEM, for asymmetric tokens or identity
//! assertions. Made with the crates jsonwebtoken signs with, from the system's randomness.

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use rsa::pkcs8::LineEnding;
use rsa::rand_core::{OsRng, RngCore};

/// A new private key for `algorithm` (`EdDSA`, `ES256` or `RS256`), as PKCS#8 PEM.
pub fn private_key_pem(algorithm: &str) -> Result<String, String> {
    let pem = match algorithm {
        "EdDSA" => {
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            // Without the public key (PKCS#8 v1), as `openssl genpkey` writes it and as
            // jsonwebtoken reads it.
            let pair = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: seed,
                public_key: None,
            };
            pair.to_pkcs8_pem(LineEnding::LF)
        }
        "ES256" => p256::SecretKey::random(&mut OsRng).to_pkcs8_pem(LineEnding::LF),
        "RS256" => rsa::RsaPrivateKey::new(&mut OsRng, 3072)
            .map_err(|e| format!("cannot make an RSA key: {e}"))?
            .to_pkcs8_pem(LineEnding::LF),
        other => {
            return Err(format!(
                "--algorithm {other:?}: use {}",
                crate::core::keys::ASYMMETRIC_NAMES
            ));
        }
    };
    pem.map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode the key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::{algorithm_named, encoding_key};

    /// What keygen makes, the configuration accepts as a key of that algorithm, and no other.
    #[test]
    fn a_new_key_signs_for_its_algorithm_and_each_is_new() {
        for name in ["EdDSA", "ES256"] {
            let pem = private_key_pem(name).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
            let algorithm = algorithm_named(name).unwrap();
            assert!(encoding_key(algorithm, pem.as_bytes()).is_ok(), "{name}");
            assert_ne!(private_key_pem(name).unwrap(), pem);
            let other = if name == "EdDSA" { "ES256" } else { "EdDSA" };
            let other = algorithm_named(other).unwrap();
            assert!(encoding_key(other, pem.as_bytes()).is_err(), "{name}");
        }
        assert!(private_key_pem("HS256").unwrap_err().contains("EdDSA"));
    }
}
