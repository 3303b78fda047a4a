//! Token verification on arbitrary bytes: `verify` must answer (almost always a refusal) and never
//! panic, with one key (the header is not read) and with rotating keys (the header is parsed to
//! find the `kid`).
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use authgate::internals::token::{SigningKey, TokenConfig, TokenService, unix_now};
use libfuzzer_sys::fuzz_target;

/// The secret the seed tokens in corpus/token_verify were signed with.
const SECRET: &[u8] = b"fuzz-token-secret-0123456789-abcdefghijklmnop";
const KEY_NEW: &[u8] = b"fuzz-rotation-new-0123456789-abcdefghijklmnop";

fn service(keys: Vec<SigningKey>) -> TokenService {
    TokenService::new(&TokenConfig {
        keys,
        algorithm: jsonwebtoken::Algorithm::HS256,
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(86_400),
        issuer: "authgate".into(),
        leeway: Duration::from_secs(5),
        csrf_claim: false,
    })
}

static SINGLE: LazyLock<TokenService> = LazyLock::new(|| {
    service(vec![SigningKey {
        kid: None,
        secret: SECRET.to_vec(),
    }])
});

static ROTATING: LazyLock<TokenService> = LazyLock::new(|| {
    service(vec![
        SigningKey {
            kid: Some("k-new".into()),
            secret: KEY_NEW.to_vec(),
        },
        SigningKey {
            kid: None,
            secret: SECRET.to_vec(),
        },
    ])
});

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let now = unix_now();
    for service in [&*SINGLE, &*ROTATING] {
        // Only a seed signed with SECRET can verify; whatever verifies carries our issuer and
        // has not expired.
        if let Ok(claims) = service.verify(&token, now) {
            assert_eq!(claims.iss, "authgate");
            assert!(claims.exp.saturating_add(5) > now);
        }
    }
    // Odd `now` values too: the expiry arithmetic must not overflow.
    let _ = SINGLE.verify(&token, u64::MAX);
    let _ = SINGLE.verify(&token, 0);
});
