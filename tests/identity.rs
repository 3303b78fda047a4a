//! The signed identity and asymmetric tokens, on the real gate: the app verifies the assertion
//! it receives through the published JWKS with a real JWT library (jsonwebtoken here, PyJWT in
//! `a_python_app_verifies_the_assertion_with_pyjwt`), keys rotate, access tokens may be EdDSA,
//! ES256 or RS256, and neither an assertion nor a token can be forged with what is public.

mod support;

use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::keys::*;
use support::*;

/// A gate whose configuration is `config_text` with `extra`, and `edit` applied.
async fn gate(extra: &str, edit: impl FnOnce(String) -> String) -> Setup {
    Setup::with_config(extra, edit).await
}

fn assertion_seen(setup: &Setup) -> Option<String> {
    let seen = setup.upstream.seen().pop().unwrap();
    seen.headers
        .get("x-auth-assertion")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn the_app_verifies_the_assertion_through_the_published_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let setup = gate(&assertions("EdDSA", &[("a1", &key)]), |c| c).await;
    let (access, _) = setup.login("alice").await;
    let set = jwks(setup.addr()).await;

    let r = get_with_token(setup.addr(), "/api/x", &access).await;
    assert_eq!(r.status, StatusCode::OK);
    let assertion = assertion_seen(&setup).expect("an assertion on a guarded route");
    let claims = verify(&set, &assertion, Algorithm::EdDSA, Some("the-app")).unwrap();
    let token = payload(&access);
    assert_eq!(claims["sub"], token["sub"]);
    assert_eq!(claims["username"], "alice");
    assert_eq!(claims["roles"], json!([]));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime > 0 && lifetime <= 60, "{claims}");
    assert!(claims["jti"].as_str().is_some());
    assert!(
        verify(&set, &assertion, Algorithm::EdDSA, Some("another-app")).is_err(),
        "made for one app, refused by another"
    );

    // The next request of the same token gets the same assertion: signed once, not each time.
    get_with_token(setup.addr(), "/api/y", &access).await;
    assert_eq!(assertion_seen(&setup).as_deref(), Some(assertion.as_str()));

    // A public route carries none, and a client's own never reaches the app, in any spelling.
    for spelling in ["X-Auth-Assertion", "x-auth-assertion", "X_Auth_Assertion"] {
        let forged = [(spelling, assertion.as_str())];
        get(setup.addr(), "/public/x", &forged).await;
        assert_eq!(assertion_seen(&setup), None, "{spelling}");
        let bearer = format!("Bearer {access}");
        get(
            setup.addr(),
            "/api/x",
            &[(spelling, "forged"), ("authorization", &bearer)],
        )
        .await;
        let seen = setup.upstream.seen().pop().unwrap();
        let values: Vec<_> = seen
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().replace('_', "-") == "x-auth-assertion")
            .map(|(_, v)| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(values, std::slice::from_ref(&assertion), "{spelling}");
    }
}

/// Keys rotate like `[[tokens.keys]]`: the first signs, every listed one is published, so an
/// assertion made with the old key verifies while its key is listed, and not after.
#[tokio::test]
async fn es256_assertions_keep_verifying_while_their_key_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let old = key_file(dir.path(), "ES256", "old");
    let new = key_file(dir.path(), "ES256", "new");

    let before = gate(&assertions("ES256", &[("old", &old)]), |c| c).await;
    let (access, _) = before.login("alice").await;
    get_with_token(before.addr(), "/api/x", &access).await;
    let made_with_old = assertion_seen(&before).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&made_with_old).unwrap().alg,
        Algorithm::ES256
    );

    let rotating = gate(&assertions("ES256", &[("new", &new), ("old", &old)]), |c| c).await;
    let set = jwks(rotating.addr()).await;
    let kids: Vec<_> = set
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(kids, ["new", "old"]);
    assert!(verify(&set, &made_with_old, Algorithm::ES256, Some("the-app")).is_ok());
    let (access, _) = rotating.login("bob").await;
    get_with_token(rotating.addr(), "/api/x", &access).await;
    let made_with_new = assertion_seen(&rotating).unwrap();
    let header = jsonwebtoken::decode_header(&made_with_new).unwrap();
    assert_eq!(header.kid.as_deref(), Some("new"));
    assert!(verify(&set, &made_with_new, Algorithm::ES256, Some("the-app")).is_ok());

    let after = gate(&assertions("ES256", &[("new", &new)]), |c| c).await;
    let set = jwks(after.addr()).await;
    assert!(verify(&set, &made_with_old, Algorithm::ES256, Some("the-app")).is_err());
}

/// Access tokens signed with a private key: the whole flow works, and any service can verify a
/// token with the JWKS alone.
#[tokio::test]
async fn eddsa_es256_and_rs256_access_tokens_work_end_to_end() {
    for (name, algorithm) in [
        ("EdDSA", Algorithm::EdDSA),
        ("ES256", Algorithm::ES256),
        ("RS256", Algorithm::RS256),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), name, "tokens");
        let setup = gate("", asymmetric_tokens(name, &key)).await;
        let (access, refresh) = setup.login("alice").await;
        let header = jsonwebtoken::decode_header(&access).unwrap();
        assert_eq!(header.alg, algorithm, "{name}");
        let set = jwks(setup.addr()).await;
        assert_eq!(set.keys.len(), 1, "{name}");
        assert_eq!(
            set.keys[0].common.key_id, header.kid,
            "{name}: named by its thumbprint"
        );
        let claims = verify(&set, &access, algorithm, None).unwrap();
        assert_eq!(claims["type"], "access");

        let r = get_with_token(setup.addr(), "/api/x", &access).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        let r = post_with_token(setup.addr(), "/refresh", &refresh).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        let renewed = r.json()["access_token"].as_str().unwrap().to_string();
        assert!(verify(&set, &renewed, algorithm, None).is_ok());
        let r = post_with_token(setup.addr(), "/logout", &renewed).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        let r = get_with_token(setup.addr(), "/api/x", &renewed).await;
        assert_eq!(r.msg(), "Token has been revoked", "{name}");
    }
}

/// The classic confusion: a token whose header says HS256, signed with what is public (the
/// public key's PEM, its JWK, its raw bytes) as the HMAC secret. Only the configured algorithm
/// is accepted, so none of it is.
#[tokio::test]
async fn tokens_signed_with_the_public_key_as_an_hmac_secret_are_refused() {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    for name in ["RS256", "EdDSA"] {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), name, "tokens");
        let setup = gate("", asymmetric_tokens(name, &key)).await;
        let (access, _) = setup.login("alice").await;
        let mut claims = payload(&access);
        claims["roles"] = json!(["admin"]);
        let set = jwks(setup.addr()).await;
        let jwk_json = serde_json::to_string(&set.keys[0]).unwrap();
        let mut publics: Vec<Vec<u8>> = vec![jwk_json.into_bytes()];
        if name == "RS256" {
            let private =
                rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap())
                    .unwrap();
            let public = private.to_public_key();
            publics.push(
                public
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap()
                    .into_bytes(),
            );
            publics.push(public.to_public_key_der().unwrap().as_bytes().to_vec());
        } else {
            let x = serde_json::to_value(&set.keys[0]).unwrap()["x"]
                .as_str()
                .unwrap()
                .to_string();
            use base64::Engine;
            publics.push(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&x)
                    .unwrap(),
            );
            publics.push(x.into_bytes());
        }
        for secret in publics {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut header = Header::new(alg);
                header.kid = set.keys[0].common.key_id.clone();
                let forged =
                    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
                        .unwrap();
                let r = get_with_token(setup.addr(), "/api/x", &forged).await;
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} {alg:?}");
                assert_eq!(r.msg(), "The specified alg value is not allowed", "{name}");
            }
        }
        // And no signature at all.
        let unsigned = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&claims.to_string())
        );
        let r = get_with_token(setup.addr(), "/api/x", &unsigned).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} none");
    }
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The JWKS holds public keys only, whichever kind, is public and cacheable, and is authgate's
/// only when it has keys to publish: with HMAC tokens and no assertions the path is the app's.
#[tokio::test]
async fn the_jwks_is_public_holds_no_private_part_and_exists_only_with_keys() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = key_file(dir.path(), "RS256", "tokens");
    let ed = key_file(dir.path(), "EdDSA", "ed");
    let ec = key_file(dir.path(), "ES256", "ec");
    let setup = gate(
        &assertions("EdDSA", &[("ed", &ed)]),
        asymmetric_tokens("RS256", &tokens),
    )
    .await;
    let r = get(setup.addr(), "/.well-known/jwks.json", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("content-type"), Some("application/jwk-set+json"));
    let set: Value = serde_json::from_slice(&r.body).unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(key.get(private).is_none(), "{private} in {key}");
        }
        assert_eq!(key["use"], "sig");
    }
    assert_eq!(
        send(
            setup.addr(),
            request("POST", "/.well-known/jwks.json", &[], "")
        )
        .await
        .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        send(
            setup.addr(),
            request("HEAD", "/.well-known/jwks.json", &[], "")
        )
        .await
        .status,
        StatusCode::OK
    );

    let es = gate(&assertions("ES256", &[("ec", &ec)]), |c| c).await;
    let set: Value =
        serde_json::from_slice(&get(es.addr(), "/.well-known/jwks.json", &[]).await.body).unwrap();
    assert_eq!(set["keys"][0]["kty"], "EC");
    assert!(set["keys"][0].get("d").is_none());

    let plain = Setup::new().await;
    let r = get(plain.addr(), "/.well-known/jwks.json", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the default rule, as any path"
    );
}

/// The README's few lines of Python: PyJWT fetches the JWKS and verifies the assertion the app
/// received.
#[tokio::test]
#[cfg_attr(
    no_test_python,
    ignore = "needs Python with PyJWT and cryptography: set AUTHGATE_TEST_PYTHON"
)]
async fn a_python_app_verifies_the_assertion_with_pyjwt() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in ["EdDSA", "ES256"] {
        let key = key_file(dir.path(), algorithm, algorithm);
        let setup = gate(&assertions(algorithm, &[("k1", &key)]), |c| c).await;
        let (access, _) = setup.login("alice").await;
        get_with_token(setup.addr(), "/api/x", &access).await;
        let assertion = assertion_seen(&setup).unwrap();
        let python = std::env::var("AUTHGATE_TEST_PYTHON").expect("set by .ci/run");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/identity_verify.py");
        let jwks_url = format!("http://{}/.well-known/jwks.json", setup.addr());
        // The script fetches the JWKS from the gate, which runs on this runtime: wait apart.
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .args([script, &jwks_url, &assertion, "the-app", "authgate"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{algorithm}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["username"], "alice", "{algorithm}");
        assert_eq!(claims["sub"], payload(&access)["sub"], "{algorithm}");
    }
}
