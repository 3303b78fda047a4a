//! Attacks on the signed identity (commit a47dce0): assertions for someone else or with more
//! roles, forged or replayed assertions, assertions that outlive a logout, the JWKS path,
//! algorithm confusion on asymmetric access tokens, ECDSA/EdDSA/RSA signature tricks, assertions
//! and access tokens taken for one another, configuration mistakes, and key material in logs.
//! Each test asserts what the gate should do; the ones that failed at a47dce0 say so.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use support::keys::*;
use support::process::Process;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RSA1024_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa1024.pem");
const P384_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/p384.pem");
const JWKS: &str = "/.well-known/jwks.json";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A gate and its configuration text (for the admin library calls, which need the same store).
async fn setup_with_text(extra: &str, edit: impl FnOnce(String) -> String) -> (Setup, String) {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = edit(config_text(
        &upstream.url(),
        &dir.path().join("authgate.db"),
        extra,
    ));
    let gate = Gate::start(&text).await;
    (
        Setup {
            upstream,
            gate,
            dir,
        },
        text,
    )
}

/// Every value of a header the app would read as `X-Auth-Assertion`, in any spelling.
fn assertion_values(seen: &Seen) -> Vec<String> {
    header_values(seen, "x-auth-assertion")
}

fn last_seen(s: &Setup) -> Seen {
    s.upstream.seen().pop().expect("the app got a request")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text).unwrap()
}

/// A compact JWS of `header` and `payload` with `signature` as its third part, made by hand.
fn jws(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(payload.to_string()),
        b64(signature)
    )
}

/// `token` with its signature replaced by `signature`.
fn with_signature(token: &str, signature: &[u8]) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    format!("{signed}.{}", b64(signature))
}

fn signature_of(token: &str) -> Vec<u8> {
    unb64(token.rsplit_once('.').unwrap().1)
}

/// Signs `header` and `payload` (JSON) with `key` for `algorithm`, whatever the header says.
fn sign_raw(header: &Value, payload: &Value, key: &EncodingKey, algorithm: Algorithm) -> String {
    let signing_input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, algorithm).unwrap();
    format!("{signing_input}.{signature}")
}

fn encoding_key(algorithm: Algorithm, pem: &[u8]) -> EncodingKey {
    match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    }
}

fn algorithm(name: &str) -> Algorithm {
    match name {
        "EdDSA" => Algorithm::EdDSA,
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        other => panic!("{other}"),
    }
}

/// A key of `name`'s algorithm that the gate does not have.
fn attacker_pem(name: &str) -> Vec<u8> {
    match name {
        "RS256" => std::fs::read(RSA1024_PEM).unwrap(),
        _ => authgate::keygen::private_key_pem(name)
            .unwrap()
            .into_bytes(),
    }
}

/// Asserts the gate refused `token` on a guarded route and the app saw nothing of it.
async fn refused(s: &Setup, token: &str, what: &str) {
    let before = s.upstream.seen().len();
    let r = get_with_token(s.addr(), "/api/x", token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {r:?}");
    assert_eq!(s.upstream.seen().len(), before, "{what}: forwarded");
}

// ---------------------------------------------------------------------------------------------
// An assertion for someone else, or with more roles
// ---------------------------------------------------------------------------------------------

/// Three tokens (alice without roles, alice with `admin` from a later login, bob) used at once,
/// interleaved: every request's assertion names the holder of the token it came with, with that
/// token's roles, and no assertion is ever given for two tokens, not even two of one user.
#[tokio::test]
async fn each_assertion_names_only_its_tokens_holder_with_that_tokens_roles() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let (s, text) = setup_with_text(&assertions("EdDSA", &[("a1", &key)]), |c| c).await;
    let admin = authgate::Config::parse(&text).unwrap();
    let (alice_plain, _) = s.login("alice").await;
    authgate::admin::set_roles(&admin, "alice", &["admin".to_string()])
        .await
        .unwrap();
    let (alice_admin, _) = s.login("alice").await;
    let (bob, _) = s.login("bob").await;
    assert_eq!(payload(&alice_plain)["roles"], json!([]));
    assert_eq!(payload(&alice_admin)["roles"], json!(["admin"]));
    let set = jwks_at(s.addr(), JWKS).await;

    let tokens: HashMap<&str, &String> = [
        ("alice_plain", &alice_plain),
        ("alice_admin", &alice_admin),
        ("bob", &bob),
    ]
    .into_iter()
    .collect();
    let labels = ["alice_plain", "alice_admin", "bob"];
    let mut tasks = Vec::new();
    for i in 0..90 {
        let label = labels[i % 3];
        let token = tokens[label].clone();
        let addr = s.addr();
        tasks.push(tokio::spawn(async move {
            get_with_token(addr, &format!("/api/who?label={label}&i={i}"), &token).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().status, StatusCode::OK);
    }
    let mut by_label: HashMap<String, HashSet<String>> = HashMap::new();
    for seen in s.upstream.seen() {
        let Some(label) = seen
            .target
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("label="))
        else {
            continue;
        };
        let values = assertion_values(&seen);
        assert_eq!(values.len(), 1, "{}: {values:?}", seen.target);
        let claims = verify(&set, &values[0], Algorithm::EdDSA, Some("the-app")).unwrap();
        let token = payload(tokens[label]);
        assert_eq!(claims["sub"], token["sub"], "{}", seen.target);
        assert_eq!(claims["username"], token["username"], "{}", seen.target);
        assert_eq!(
            claims["roles"], token["roles"],
            "{}: more roles",
            seen.target
        );
        assert_eq!(
            seen.headers
                .get("x-auth-user-id")
                .unwrap()
                .to_str()
                .unwrap(),
            token["sub"].as_str().unwrap()
        );
        by_label
            .entry(label.to_string())
            .or_default()
            .insert(values[0].clone());
    }
    assert_eq!(by_label.len(), 3);
    let mut all = HashSet::new();
    for (label, set) in &by_label {
        for assertion in set {
            assert!(
                all.insert(assertion.clone()),
                "{label}: an assertion given for two tokens"
            );
        }
    }
    s.gate.stop().await;
}

/// authgate with cookies and assertions on, bob signed in by header and alice by cookies: bob's
/// access token and alice's cookies (the directory holds the assertion key).
async fn bob_by_header_alice_by_cookies()
-> (tempfile::TempDir, Setup, String, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let extra = format!(
        "[cookies]\nsecure = false\n{}",
        assertions("EdDSA", &[("a1", &key)])
    );
    let s = Setup::with_config(&extra, tokens_in_cookies_too).await;
    let (bob, _) = s.login("bob").await;
    let creds = json!({"username": "alice", "password": "a perfectly fine password"});
    post_json(s.addr(), "/register", &creds, &[]).await;
    let alice_jar = jar(&post_json(s.addr(), "/login", &creds, &[]).await);
    (dir, s, bob, alice_jar)
}

/// With a bearer token for bob and alice's cookies (or alice's token in a second Authorization
/// header), the assertion is only ever for the one token that authenticated the request.
#[tokio::test]
async fn mixing_two_users_credentials_never_yields_the_others_assertion() {
    let (_dir, s, bob, alice_jar) = bob_by_header_alice_by_cookies().await;
    let alice_access = value(&alice_jar, "access_token_cookie").to_string();
    let cookie = cookie_header(&alice_jar);
    let set = jwks_at(s.addr(), JWKS).await;

    let bearer = format!("Bearer {bob}");
    let r = get(
        s.addr(),
        "/api/x",
        &[("authorization", &bearer), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let seen = last_seen(&s);
    let values = assertion_values(&seen);
    assert_eq!(values.len(), 1);
    let claims = verify(&set, &values[0], Algorithm::EdDSA, Some("the-app")).unwrap();
    assert_eq!(claims["username"], "bob");
    let cookies_seen = values_of(&seen, "cookie").join("; ");
    assert!(
        !cookies_seen.contains(&alice_access),
        "alice's access cookie reached the app beside bob's assertion"
    );

    // Two Authorization headers: refused, never one user's assertion with the other's token.
    let alice_bearer = format!("Bearer {alice_access}");
    let before = s.upstream.seen().len();
    let r = get(
        s.addr(),
        "/api/x",
        &[("authorization", &bearer), ("authorization", &alice_bearer)],
    )
    .await;
    assert_ne!(r.status, StatusCode::OK);
    assert_eq!(s.upstream.seen().len(), before);
    s.gate.stop().await;
}

fn values_of(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A client's own assertion header
// ---------------------------------------------------------------------------------------------

const SPELLINGS: [&str; 10] = [
    "X-Auth-Assertion",
    "x-auth-assertion",
    "X-AUTH-ASSERTION",
    "X_Auth_Assertion",
    "x_auth_assertion",
    "x.auth.assertion",
    "X-Auth_Assertion",
    "X~Auth~Assertion",
    "x!auth!assertion",
    "x+auth+assertion",
];

/// Alice's real assertion (lifted from an app that echoes headers) replayed by bob in every
/// spelling, several at once, and with `Connection` naming the header: the app gets the gate's
/// assertion for bob only, and on a public route none at all.
#[tokio::test]
async fn a_replayed_assertion_never_reaches_the_app_in_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let s = Setup::with_extra(&assertions("EdDSA", &[("a1", &key)])).await;
    let (alice, _) = s.login("alice").await;
    let (bob, _) = s.login("bob").await;
    let set = jwks_at(s.addr(), JWKS).await;
    get_with_token(s.addr(), "/api/x", &alice).await;
    let stolen = assertion_values(&last_seen(&s)).pop().unwrap();
    let bearer = format!("Bearer {bob}");

    let only_bobs = |seen: &Seen, what: &str| {
        let values = assertion_values(seen);
        assert_eq!(values.len(), 1, "{what}: {values:?}");
        assert_ne!(values[0], stolen, "{what}");
        let claims = verify(&set, &values[0], Algorithm::EdDSA, Some("the-app")).unwrap();
        assert_eq!(claims["username"], "bob", "{what}");
    };

    for spelling in SPELLINGS {
        let r = get(
            s.addr(),
            "/api/x",
            &[(spelling, &stolen), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{spelling}");
        only_bobs(&last_seen(&s), spelling);
        let r = get(s.addr(), "/public/x", &[(spelling, &stolen)]).await;
        assert_eq!(r.status, StatusCode::OK, "{spelling}");
        assert!(assertion_values(&last_seen(&s)).is_empty(), "{spelling}");
    }

    // Every spelling, twice, on one request.
    let mut all: Vec<(&str, &str)> = SPELLINGS.iter().map(|n| (*n, stolen.as_str())).collect();
    all.extend(SPELLINGS.iter().map(|n| (*n, "second")));
    all.push(("authorization", &bearer));
    let r = get(s.addr(), "/api/x", &all).await;
    assert_eq!(r.status, StatusCode::OK);
    only_bobs(&last_seen(&s), "all spellings");
    let r = get(s.addr(), "/public/x", &all[..all.len() - 1]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(assertion_values(&last_seen(&s)).is_empty());

    // `Connection` naming the header: the client's copy goes, the gate's own stays.
    for connection in [
        "x-auth-assertion",
        "X_Auth_Assertion, x-auth-user-id",
        "close, X-Auth-Assertion",
    ] {
        let r = get(
            s.addr(),
            "/api/x",
            &[
                ("connection", connection),
                ("x-auth-assertion", &stolen),
                ("authorization", &bearer),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{connection}");
        let seen = last_seen(&s);
        only_bobs(&seen, connection);
        assert!(seen.headers.get("x-auth-user-id").is_some(), "{connection}");
    }
    s.gate.stop().await;
}

/// Header-line tricks a lenient parser might read as `X-Auth-Assertion`: refused, or the app gets
/// only the gate's assertion.
#[tokio::test]
async fn raw_header_line_tricks_never_carry_an_assertion_to_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let s = Setup::with_extra(&assertions("EdDSA", &[("a1", &key)])).await;
    let (bob, _) = s.login("bob").await;
    let cases = [
        "X-Auth-Assertion : forged\r\n",
        "X-Auth-Assertion\t: forged\r\n",
        "X-Auth-Assertion:forged\r\n",
        "X-Foo: a\r\n X-Auth-Assertion: forged\r\n",
        "X-Foo: a\r\n\tX-Auth-Assertion: forged\r\n",
        "X-Auth-Assertion: forged\r\n x-more: forged\r\n",
        "X-Auth-Assertion: forged\r\nX-Auth-Assertion: forged\r\n",
        "x_auth_assertion: forged\r\nX.AUTH.ASSERTION: forged\r\n",
        "X-Auth-Assertion\x00: forged\r\n",
        "X-Auth-Assertion: forged\rX-Other: forged\r\n",
        "X-Foo: a\nX-Auth-Assertion: forged\r\n",
    ];
    for target in ["/api/x", "/public/x"] {
        for extra in cases {
            let before = s.upstream.seen().len();
            let raw = format!(
                "GET {target} HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {bob}\r\n{extra}Connection: close\r\n\r\n"
            );
            let answer = send_raw(s.addr(), raw.as_bytes()).await;
            let seen = s.upstream.seen();
            if seen.len() > before {
                let seen = seen.last().unwrap();
                for (name, value) in &seen.headers {
                    let value = String::from_utf8_lossy(value.as_bytes());
                    assert!(
                        !(fold(name.as_str()).contains("assertion") && value.contains("forged")),
                        "{target} {extra:?}: the app got {name}: {value}"
                    );
                }
                let values = assertion_values(seen);
                let want = usize::from(target == "/api/x");
                assert_eq!(values.len(), want, "{target} {extra:?}: {values:?}");
            } else {
                assert_ne!(raw_status(&answer), 200, "{extra:?}");
            }
        }
    }
    s.gate.stop().await;
}

#[tokio::test]
async fn over_http2_a_clients_assertion_header_is_dropped_too() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let s = Setup::with_extra(&assertions("EdDSA", &[("a1", &key)])).await;
    let (bob, _) = s.login("bob").await;
    let auth = format!("Bearer {bob}");
    let mut sender = http2_sender(s.addr()).await;
    for path in ["/api/x", "/public/x"] {
        let mut builder = http::Request::builder()
            .uri(format!("http://gate.test{path}"))
            .header("authorization", &auth);
        for name in SPELLINGS {
            builder = builder.header(name.to_ascii_lowercase(), "forged");
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let _ = response.into_body().collect().await;
        let values = assertion_values(&last_seen(&s));
        assert!(!values.iter().any(|v| v == "forged"), "{path}: {values:?}");
        assert_eq!(values.len(), usize::from(path == "/api/x"), "{path}");
    }
    s.gate.stop().await;
}

/// A chunked body's trailer section naming the assertion header (and announced in `Trailer`):
/// trailers are never passed on, so the app cannot merge a forged one into the head.
#[tokio::test]
async fn a_trailer_cannot_carry_an_assertion_to_the_app() {
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let keep = captured.clone();
    let (port, _) = raw_upstream(move |mut stream, _| {
        let keep = keep.clone();
        async move {
            let (mut buf, mut all) = (vec![0u8; 8192], Vec::new());
            loop {
                match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
                {
                    Ok(Ok(n)) if n > 0 => all.extend_from_slice(&buf[..n]),
                    _ => break,
                }
                if all.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
            keep.lock().unwrap().extend_from_slice(&all);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let text = config_text(
        &format!("http://127.0.0.1:{port}"),
        &dir.path().join("gate.db"),
        &assertions("EdDSA", &[("a1", &key)]),
    );
    let gate = Gate::start(&text).await;
    let (bob, _) = Setup::login_at(gate.addr, "bob").await;
    for target in ["/api/upload", "/public/upload"] {
        captured.lock().unwrap().clear();
        let raw = format!(
            "POST {target} HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {bob}\r\n\
             Transfer-Encoding: chunked\r\nTrailer: X-Auth-Assertion, X-Auth-User-Id\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\nX-Auth-Assertion: forged-in-trailer\r\nX_Auth_Assertion: forged-in-trailer\r\n\
             X-Auth-User-Id: forged-in-trailer\r\n\r\n"
        );
        let answer = send_raw(gate.addr, raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), 200, "{target}: {answer}");
        let wire = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
        assert!(!wire.contains("forged-in-trailer"), "{target}: {wire}");
        let lines = wire
            .lines()
            .filter(|l| fold(l.split(':').next().unwrap_or_default()) == "x-auth-assertion")
            .count();
        assert_eq!(
            lines,
            usize::from(target == "/api/upload"),
            "{target}: {wire}"
        );
    }
    gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Assertions after logout, revocation, expiry
// ---------------------------------------------------------------------------------------------

/// The assertion cached for a token is never sent again once the token is revoked: by its own
/// logout, by `/logout-all` from another session, by a refresh token's reuse, or by disabling the
/// user. And the last one the app got lives at most 60 s.
#[tokio::test]
async fn a_revoked_token_gets_no_assertion_not_even_its_cached_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let (s, text) = setup_with_text(&assertions("EdDSA", &[("a1", &key)]), |c| {
        without_refresh_grace(c).replace("[store]\n", "[store]\ncatch_up_interval = \"1s\"\n")
    })
    .await;
    let set = jwks_at(s.addr(), JWKS).await;

    // A token whose assertion is cached, then logged out.
    let (access, _) = s.login("alice").await;
    get_with_token(s.addr(), "/api/x", &access).await;
    let cached = assertion_values(&last_seen(&s)).pop().unwrap();
    get_with_token(s.addr(), "/api/x", &access).await;
    assert_eq!(
        assertion_values(&last_seen(&s)),
        std::slice::from_ref(&cached),
        "cached"
    );
    let claims = verify(&set, &cached, Algorithm::EdDSA, Some("the-app")).unwrap();
    let life = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(life <= 60, "{claims}");
    assert!(claims["exp"].as_u64().unwrap() <= payload(&access)["exp"].as_u64().unwrap());
    let r = post_with_token(s.addr(), "/logout", &access).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    refused(&s, &access, "after its logout").await;

    // Logged out everywhere from another session.
    let (first, _) = s.login("alice").await;
    let (second, _) = s.login("alice").await;
    get_with_token(s.addr(), "/api/x", &first).await;
    let r = post_with_token(s.addr(), "/logout-all", &second).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    refused(&s, &first, "after logout-all").await;

    // A refresh token presented twice: the session ends, its access token with it.
    let (access, refresh) = s.login("alice").await;
    get_with_token(s.addr(), "/api/x", &access).await;
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "reuse");
    refused(&s, &access, "after refresh reuse").await;

    // A disabled user: within the catch-up interval, and then never again.
    let (access, _) = s.login("carol").await;
    get_with_token(s.addr(), "/api/x", &access).await;
    let admin = authgate::Config::parse(&text).unwrap();
    authgate::admin::disable_user(&admin, "carol")
        .await
        .unwrap();
    let mut refused_after = None;
    for i in 0..40 {
        let r = get_with_token(s.addr(), "/api/x", &access).await;
        if r.status == StatusCode::UNAUTHORIZED {
            refused_after = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused_after.is_some(),
        "a disabled user's token still works"
    );
    for _ in 0..3 {
        refused(&s, &access, "after disabling").await;
    }
    s.gate.stop().await;
}

/// An access token that lives 10 s gets assertions that end with it, not 60 s later.
#[tokio::test]
async fn an_assertion_never_outlives_its_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "ES256", "assertion");
    let s = Setup::with_config(&assertions("ES256", &[("a1", &key)]), |c| {
        c.replace("[tokens]\n", "[tokens]\naccess_ttl = \"10s\"\n")
    })
    .await;
    let set = jwks_at(s.addr(), JWKS).await;
    let (access, _) = s.login("alice").await;
    get_with_token(s.addr(), "/api/x", &access).await;
    let assertion = assertion_values(&last_seen(&s)).pop().unwrap();
    let claims = verify(&set, &assertion, Algorithm::ES256, Some("the-app")).unwrap();
    assert!(
        claims["exp"].as_u64().unwrap() <= payload(&access)["exp"].as_u64().unwrap(),
        "{claims}"
    );
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The JWKS path
// ---------------------------------------------------------------------------------------------

/// With `auth_prefix = "/auth"`, every spelling that normalises to the JWKS path gets the same
/// public document; the root `/.well-known/jwks.json` stays the app's (under its rules); other
/// methods are 405 and nothing reaches the app.
#[tokio::test]
async fn the_jwks_path_spellings_methods_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    let extra = format!(
        "[[routes]]\npath = \"/.well-known/**\"\naccess = \"public\"\n{}",
        assertions("EdDSA", &[("a1", &key)])
    );
    let s = Setup::with_config(&extra, |c| {
        c.replace("[server]\n", "[server]\nauth_prefix = \"/auth\"\n")
    })
    .await;
    let canonical = get(s.addr(), "/auth/.well-known/jwks.json", &[]).await;
    assert_eq!(canonical.status, StatusCode::OK);
    let document = canonical.body.clone();
    for target in [
        "/auth/.well-known/./jwks.json",
        "/auth/.well-known/%2e/jwks.json",
        "/auth/%2ewell-known/jwks.json",
        "/auth/.well-known/jwks%2ejson",
        "/auth//.well-known/jwks.json",
        "/auth/x/../.well-known/jwks.json",
        "/x/../auth/.well-known/jwks.json",
        "/auth/.well-known/jwks.json?x=1&_method=DELETE",
        "/auth/.well-known/jwks.json?access_token=x",
    ] {
        let before = s.upstream.seen().len();
        let r = get(s.addr(), target, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{target}: {r:?}");
        assert_eq!(r.body, document, "{target}");
        assert_eq!(s.upstream.seen().len(), before, "{target}: forwarded");
    }
    // Not the JWKS: the app's, under its rules (here public, so forwarded as normalised).
    for (target, forwarded_as) in [
        ("/.well-known/jwks.json", "/.well-known/jwks.json"),
        ("/.well-known/./jwks.json", "/.well-known/jwks.json"),
    ] {
        let r = get(s.addr(), target, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{target}");
        assert_eq!(last_seen(&s).target, forwarded_as, "{target}");
        assert!(assertion_values(&last_seen(&s)).is_empty());
    }
    for target in [
        "/auth/.well-known/jwks.json/",
        "/auth/.WELL-KNOWN/jwks.json",
        "/auth/.well-known/JWKS.json",
    ] {
        let r = get(s.addr(), target, &[]).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{target}: the default rule"
        );
    }
    // Methods.
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "post", "delete",
    ] {
        let before = s.upstream.seen().len();
        let r = send(
            s.addr(),
            request(method, "/auth/.well-known/jwks.json", &[], "x"),
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
        assert_eq!(s.upstream.seen().len(), before, "{method}");
    }
    let before = s.upstream.seen().len();
    for method in ["TRACE", "CONNECT"] {
        let raw = format!(
            "{method} /auth/.well-known/jwks.json HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n"
        );
        let status = raw_status(&send_raw(s.addr(), raw.as_bytes()).await);
        assert!(status == 405 || status == 400, "{method}: {status}");
    }
    assert_eq!(s.upstream.seen().len(), before);
    let head = send(
        s.addr(),
        request("HEAD", "/auth/.well-known/jwks.json", &[], ""),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    // Over HTTP/2 too.
    let mut sender = http2_sender(s.addr()).await;
    let response = sender
        .send_request(
            http::Request::builder()
                .uri("http://gate.test/auth/.well-known/%2e/jwks.json")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, document);
    s.gate.stop().await;
}

/// A shared cache may keep the JWKS for five minutes, so it must be the same for everyone and
/// carry nothing of the caller: no cookie set (not even a silent refresh), no user's data, no
/// secret, nothing private.
#[tokio::test]
async fn the_jwks_is_the_same_for_everyone_and_sets_nothing() {
    let (_dir, s, bob, alice_jar) = bob_by_header_alice_by_cookies().await;
    // An expired access cookie and a live refresh cookie: what triggers a silent refresh elsewhere.
    let mut expired = payload(value(&alice_jar, "access_token_cookie"));
    expired["exp"] = json!(now() - 100);
    expired["nbf"] = json!(now() - 200);
    let stale_jar: Vec<(String, String)> = alice_jar
        .iter()
        .map(|(n, v)| {
            let v = if n == "access_token_cookie" {
                sign(&expired)
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect();
    let bearer = format!("Bearer {bob}");
    let cookie = cookie_header(&alice_jar);
    let stale = cookie_header(&stale_jar);
    let callers: [Vec<(&str, &str)>; 5] = [
        vec![],
        vec![("authorization", &bearer)],
        vec![("cookie", &cookie)],
        vec![("cookie", &stale), ("accept", "text/html")],
        vec![("authorization", "Bearer garbage")],
    ];
    let mut bodies = HashSet::new();
    for headers in &callers {
        let r = get(s.addr(), JWKS, headers).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
        assert!(r.headers.get("set-cookie").is_none(), "{headers:?}: {r:?}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
        let text = String::from_utf8_lossy(&r.body).into_owned();
        for leak in ["alice", "bob", SECRET, "PRIVATE"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        let doc: Value = serde_json::from_str(&text).unwrap();
        for key in doc["keys"].as_array().unwrap() {
            for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(key.get(private).is_none(), "{private} in {key}");
            }
        }
        bodies.insert(r.body.clone());
    }
    assert_eq!(bodies.len(), 1, "the JWKS differs between callers");
    s.gate.stop().await;
}

/// Without any key to publish, `/.well-known/jwks.json` (and under a prefix) is the app's path:
/// authgate answers nothing there itself.
#[tokio::test]
async fn without_keys_the_jwks_path_is_the_apps() {
    let extra = "[[routes]]\npath = \"/.well-known/**\"\naccess = \"public\"\n[[routes]]\npath = \"/auth/.well-known/**\"\naccess = \"public\"\n";
    for prefix in ["", "/auth"] {
        let s = Setup::with_config(extra, |c| {
            c.replace(
                "[server]\n",
                &format!("[server]\nauth_prefix = \"{prefix}\"\n"),
            )
        })
        .await;
        let target = format!("{prefix}{JWKS}");
        let r = get(s.addr(), &target, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{target}");
        assert_eq!(last_seen(&s).target, target, "{target}: not the app's");
        let r = send(s.addr(), request("POST", &target, &[], "x")).await;
        assert_eq!(r.status, StatusCode::OK, "{target}: POST is the app's too");
        s.gate.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm confusion and key injection on asymmetric access tokens
// ---------------------------------------------------------------------------------------------

/// An ES256 gate: HS256/384/512 tokens signed with every form of its public key are refused.
#[tokio::test]
async fn an_es256_gate_refuses_hmac_tokens_signed_with_its_public_key() {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "ES256", "tokens");
    let s = Setup::with_config("", asymmetric_tokens("ES256", &key)).await;
    let (access, _) = s.login("alice").await;
    let mut claims = payload(&access);
    claims["roles"] = json!(["admin"]);
    let set = jwks_at(s.addr(), JWKS).await;
    let jwk = serde_json::to_value(&set.keys[0]).unwrap();
    let secret = p256::SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let public = secret.public_key();
    let publics: Vec<Vec<u8>> = vec![
        serde_json::to_vec(&set.keys[0]).unwrap(),
        public
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
            .into_bytes(),
        public.to_public_key_der().unwrap().as_bytes().to_vec(),
        public.to_encoded_point(false).as_bytes().to_vec(),
        public.to_encoded_point(true).as_bytes().to_vec(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
        unb64(jwk["x"].as_str().unwrap()),
    ];
    for (i, secret) in publics.iter().enumerate() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = set.keys[0].common.key_id.clone();
            let forged =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
            refused(&s, &forged, &format!("public form {i} {alg:?}")).await;
        }
    }
    s.gate.stop().await;
}

/// For each gate algorithm: tokens signed by an attacker's key, of that or another asymmetric
/// algorithm, with the gate's `kid`, the attacker's public key embedded (`jwk`, `x5c`), or pointed
/// at (`jku`, `x5u` to a server that counts its visitors), and `alg: none` in every case. None is
/// accepted, and the gate never fetches a key.
#[tokio::test]
async fn tokens_signed_by_keys_the_gate_does_not_hold_are_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key_server = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let fetched = Arc::new(AtomicUsize::new(0));
    let count = fetched.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    for gate_alg in ["EdDSA", "ES256", "RS256"] {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), gate_alg, "tokens");
        let s = Setup::with_config("", asymmetric_tokens(gate_alg, &key)).await;
        let (access, _) = s.login("alice").await;
        let gate_kid = jsonwebtoken::decode_header(&access).unwrap().kid;
        let mut claims = payload(&access);
        claims["roles"] = json!(["admin"]);
        claims["sub"] = json!("someone-else");
        for attacker_alg in ["EdDSA", "ES256", "RS256"] {
            let alg = algorithm(attacker_alg);
            let attacker = encoding_key(alg, &attacker_pem(attacker_alg));
            let jwk = Jwk::from_encoding_key(&attacker, alg).unwrap();
            let mut header = Header::new(alg);
            header.kid = gate_kid.clone();
            let what = format!("{gate_alg} gate, {attacker_alg} attacker");
            refused(
                &s,
                &jsonwebtoken::encode(&header, &claims, &attacker).unwrap(),
                &what,
            )
            .await;
            let mut embedded = header.clone();
            embedded.jwk = Some(jwk.clone());
            refused(
                &s,
                &jsonwebtoken::encode(&embedded, &claims, &attacker).unwrap(),
                &format!("{what}, jwk"),
            )
            .await;
            let mut pointed = header.clone();
            pointed.jku = Some(key_server.clone());
            pointed.x5u = Some(key_server.clone());
            pointed.x5c = Some(vec![b64("not a certificate")]);
            refused(
                &s,
                &jsonwebtoken::encode(&pointed, &claims, &attacker).unwrap(),
                &format!("{what}, jku/x5u/x5c"),
            )
            .await;
            // The gate's kid, but the header's alg switched: signed with the attacker's key.
            let mut switched = header.clone();
            switched.kid = None;
            refused(
                &s,
                &jsonwebtoken::encode(&switched, &claims, &attacker).unwrap(),
                &format!("{what}, no kid"),
            )
            .await;
        }
        // The real token's signature under another algorithm's name.
        for name in [
            "EdDSA", "ES256", "RS256", "PS256", "ES384", "ES256K", "HS256",
        ] {
            let header = json!({"alg": name, "typ": "JWT", "kid": gate_kid});
            let forged = jws(&header, &payload(&access), &signature_of(&access));
            if name != gate_alg {
                refused(&s, &forged, &format!("{gate_alg} gate, alg {name}")).await;
            }
        }
        for none in ["none", "None", "NONE", "nOnE"] {
            let header = json!({"alg": none, "typ": "JWT"});
            refused(&s, &jws(&header, &claims, b""), none).await;
            refused(&s, &jws(&header, &claims, b"junk"), none).await;
            let mut unsigned = jws(&header, &claims, b"");
            unsigned.pop();
            refused(&s, &unsigned, &format!("{none}, no final dot")).await;
        }
        // `crit` naming an extension the gate does not know (RFC 7515 §4.1.11 says refuse),
        // and `b64: false` (RFC 7797), signed with the attacker's key anyway.
        let alg = algorithm(gate_alg);
        let attacker = encoding_key(alg, &attacker_pem(gate_alg));
        let header = json!({"alg": gate_alg, "kid": gate_kid, "crit": ["b64"], "b64": false});
        refused(&s, &sign_raw(&header, &claims, &attacker, alg), "crit b64").await;
        s.gate.stop().await;
    }
    assert_eq!(fetched.load(Ordering::SeqCst), 0, "the gate fetched a key");
}

/// CVE-2022-21449 ("psychic signatures") and friends on an ES256 gate: r = s = 0, r = s = n,
/// a DER signature, a truncated or padded one, and the real signature on changed claims.
#[tokio::test]
async fn ecdsa_zero_out_of_range_and_misencoded_signatures_are_refused() {
    const N: [u8; 32] = p256_order();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "ES256", "tokens");
    let s = Setup::with_config("", asymmetric_tokens("ES256", &key)).await;
    let (access, _) = s.login("alice").await;
    let real = signature_of(&access);
    assert_eq!(real.len(), 64);
    let mut claims = payload(&access);
    claims["roles"] = json!(["admin"]);
    let header: Value = serde_json::from_slice(&unb64(access.split('.').next().unwrap())).unwrap();
    let changed = |sig: &[u8]| jws(&header, &claims, sig);
    let same = |sig: &[u8]| with_signature(&access, sig);
    let concat = |r: &[u8], s: &[u8]| [r, s].concat();
    let one = {
        let mut b = [0u8; 32];
        b[31] = 1;
        b
    };
    let der = p256::ecdsa::Signature::from_slice(&real)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0", vec![0u8; 64]),
        ("r = s = n", concat(&N, &N)),
        ("r = 0, s real", concat(&[0u8; 32], &real[32..])),
        ("r real, s = 0", concat(&real[..32], &[0u8; 32])),
        ("r = s = 1", concat(&one, &one)),
        ("r + n overflow", concat(&[0xff; 32], &real[32..])),
        ("DER encoding", der),
        ("truncated", real[..63].to_vec()),
        ("padded", [&[0u8][..], &real[..]].concat()),
        ("empty", vec![]),
    ];
    for (what, sig) in &cases {
        refused(&s, &changed(sig), &format!("changed claims, {what}")).await;
        refused(&s, &same(sig), &format!("real claims, {what}")).await;
    }
    refused(&s, &changed(&real), "the real signature on changed claims").await;
    s.gate.stop().await;
}

const fn p256_order() -> [u8; 32] {
    // n = FFFFFFFF 00000000 FFFFFFFF FFFFFFFF BCE6FAAD A7179E84 F3B9CAC2 FC632551
    [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ]
}

/// `a - b` for big-endian 32-byte numbers, a >= b.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

/// ECDSA signatures are malleable: (r, n - s) verifies as (r, s) does. Whether or not the gate
/// takes such a copy, it must be the same session: the copy names the same user, is revoked
/// with it, and a malleated copy of a rotated refresh token is a reuse, not a fresh token.
#[tokio::test]
async fn a_malleated_es256_token_is_the_same_session_and_dies_with_it() {
    let n = p256_order();
    let malleate = |token: &str| {
        let sig = signature_of(token);
        let flipped = [&sig[..32], &sub_be(&n, &sig[32..])[..]].concat();
        with_signature(token, &flipped)
    };
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "ES256", "tokens");
    let s = Setup::with_config("", |c| {
        without_refresh_grace(asymmetric_tokens("ES256", &key)(c))
    })
    .await;
    let (access, refresh) = s.login("alice").await;
    let copy = malleate(&access);
    assert_ne!(copy, access);
    let r = get_with_token(s.addr(), "/api/x", &copy).await;
    // Accepted (p256 verifies high-S signatures, as the JWS spec allows), and harmless: the copy
    // is the same session's. Pinned, so that a change of the verifier shows here.
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let seen = last_seen(&s);
    assert_eq!(
        seen.headers
            .get("x-auth-user-id")
            .unwrap()
            .to_str()
            .unwrap(),
        payload(&access)["sub"].as_str().unwrap()
    );
    // A malleated copy of a rotated refresh token: reuse, the session ends.
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    let renewed = r.json()["access_token"].as_str().unwrap().to_string();
    let r = post_with_token(s.addr(), "/refresh", &malleate(&refresh)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a malleated rotated refresh token: {r:?}"
    );
    refused(
        &s,
        &renewed,
        "the session of a reused (malleated) refresh token",
    )
    .await;
    refused(&s, &copy, "a malleated access token of a revoked session").await;

    // And a logout revokes both spellings of one access token.
    let (access, _) = s.login("bob").await;
    let copy = malleate(&access);
    assert_eq!(
        post_with_token(s.addr(), "/logout", &access).await.status,
        StatusCode::OK
    );
    refused(&s, &copy, "a malleated access token after logout").await;
    s.gate.stop().await;
}

/// Ed25519: S + L (non-canonical S) and a zero signature are refused; RS256: a signature one
/// byte longer (a leading zero) or shorter, or s + n, is refused.
#[tokio::test]
async fn non_canonical_eddsa_and_misframed_rsa_signatures_are_refused() {
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "tokens");
    let s = Setup::with_config("", asymmetric_tokens("EdDSA", &key)).await;
    let (access, _) = s.login("alice").await;
    let real = signature_of(&access);
    let mut s_plus_l = real.clone();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = s_plus_l[32 + i] as u16 + L[i] as u16 + carry;
        s_plus_l[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    refused(&s, &with_signature(&access, &s_plus_l), "EdDSA S + L").await;
    refused(&s, &with_signature(&access, &[0u8; 64]), "EdDSA zero").await;
    refused(&s, &with_signature(&access, &real[..63]), "EdDSA truncated").await;
    refused(
        &s,
        &with_signature(&access, &[&real[..], &[0u8][..]].concat()),
        "EdDSA padded",
    )
    .await;
    s.gate.stop().await;

    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = key_file(dir.path(), "RS256", "rsa");
    let s = Setup::with_config("", asymmetric_tokens("RS256", &key)).await;
    let (access, _) = s.login("alice").await;
    let real = signature_of(&access);
    let private =
        rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let n = private.n().clone();
    let plus_n = (rsa::BigUint::from_bytes_be(&real) + &n).to_bytes_be();
    for (what, sig) in [
        ("leading zero", [&[0u8][..], &real[..]].concat()),
        ("two leading zeros", [&[0u8, 0][..], &real[..]].concat()),
        ("truncated", real[1..].to_vec()),
        ("s + n", plus_n),
        ("zero", vec![0u8; real.len()]),
        ("one", {
            let mut v = vec![0u8; real.len()];
            *v.last_mut().unwrap() = 1;
            v
        }),
    ] {
        refused(&s, &with_signature(&access, &sig), &format!("RS256 {what}")).await;
    }
    s.gate.stop().await;
}

/// Several token keys, so the `kid` picks one: a kid naming the assertion key, a path, a URL,
/// a near-miss of a real kid: refused, whoever signed. And a token with every access claim,
/// signed by the assertion key under the assertion key's kid: refused.
#[tokio::test]
async fn a_kid_never_reaches_beyond_the_token_keys() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "EdDSA", "k1");
    let k2 = key_file(dir.path(), "EdDSA", "k2");
    let a1 = key_file(dir.path(), "EdDSA", "a1");
    let keys = format!(
        "algorithm = \"EdDSA\"\n[[tokens.keys]]\nkid = \"k1\"\nprivate_key_file = \"{}\"\n\
         [[tokens.keys]]\nkid = \"k2\"\nprivate_key_file = \"{}\"",
        k1.display(),
        k2.display()
    );
    let s = Setup::with_config(&assertions("EdDSA", &[("a1", &a1)]), |c| {
        c.replace(&format!("secret = \"{SECRET}\""), &keys)
    })
    .await;
    let (access, _) = s.login("alice").await;
    assert_eq!(
        jsonwebtoken::decode_header(&access).unwrap().kid.as_deref(),
        Some("k1")
    );
    let mut claims = payload(&access);
    claims["roles"] = json!(["admin"]);
    let assertion_key = encoding_key(Algorithm::EdDSA, &std::fs::read(&a1).unwrap());
    let attacker = encoding_key(Algorithm::EdDSA, &attacker_pem("EdDSA"));
    for kid in [
        "a1",
        "A1",
        "k1 ",
        " k1",
        "K1",
        "k1\u{0}",
        "",
        "../k1",
        "../../../../dev/null",
        "/proc/self/environ",
        "http://127.0.0.1:9/jwks.json",
        "k1' OR '1'='1",
    ] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        for (who, signer) in [("assertion key", &assertion_key), ("attacker", &attacker)] {
            let forged = jsonwebtoken::encode(&header, &claims, signer).unwrap();
            refused(&s, &forged, &format!("kid {kid:?}, {who}")).await;
        }
    }
    // The right kid, the wrong key.
    for kid in ["k1", "k2"] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let forged = jsonwebtoken::encode(&header, &claims, &assertion_key).unwrap();
        refused(&s, &forged, &format!("kid {kid}, assertion key")).await;
    }
    // The kid as a number, an array, null.
    for kid in [json!(1), json!(["k1"]), json!(null), json!({"kid": "k1"})] {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let forged = sign_raw(&header, &claims, &attacker, Algorithm::EdDSA);
        refused(&s, &forged, &format!("kid {kid}")).await;
    }
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Assertions and access tokens taken for one another
// ---------------------------------------------------------------------------------------------

/// An assertion (leaked by an app that echoes headers) presented to the gate as an access token
/// or a refresh token, with tokens and assertions of the same algorithm, on separate keys and on
/// one key: refused every time.
#[tokio::test]
async fn an_assertion_is_never_accepted_as_an_access_token() {
    for (alg, same_key) in [
        ("EdDSA", false),
        ("ES256", false),
        ("EdDSA", true),
        ("ES256", true),
        ("RS256", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tokens = key_file(dir.path(), alg, "tokens");
        let assertion_key = if same_key {
            tokens.clone()
        } else {
            key_file(dir.path(), alg, "assertion")
        };
        let config = assertions(alg, &[("a1", &assertion_key)]);
        let text = |c: String| asymmetric_tokens(alg, &tokens)(c);
        // The same key for both may be refused by the configuration (see
        // `the_same_key_cannot_sign_tokens_and_assertions`): then there is nothing to attack.
        let probe = config_text("http://127.0.0.1:9", &dir.path().join("p.db"), &config);
        if authgate::Config::parse(&text(probe)).is_err() {
            continue;
        }
        let s = Setup::with_config(&config, text).await;
        let (access, _) = s.login("alice").await;
        get_with_token(s.addr(), "/api/x", &access).await;
        let assertion = assertion_values(&last_seen(&s)).pop().unwrap();
        let what = format!("{alg}, same key: {same_key}");
        refused(&s, &assertion, &what).await;
        let r = post_with_token(s.addr(), "/refresh", &assertion).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{what}: as a refresh token"
        );
        let r = post_with_token(s.addr(), "/logout", &assertion).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: to log out");
        // The assertion's signature on the access token's claims.
        let forged = with_signature(&access, &signature_of(&assertion));
        refused(&s, &forged, &format!("{what}: the assertion's signature")).await;
        if !same_key {
            // Every access claim, signed with the assertion key under its own kid.
            let mut claims = payload(&access);
            claims["roles"] = json!(["admin"]);
            let a = encoding_key(algorithm(alg), &std::fs::read(&assertion_key).unwrap());
            for kid in [
                Some("a1".to_string()),
                jsonwebtoken::decode_header(&access).unwrap().kid,
            ] {
                let mut header = Header::new(algorithm(alg));
                header.kid = kid.clone();
                let forged = jsonwebtoken::encode(&header, &claims, &a).unwrap();
                refused(&s, &forged, &format!("{what}: assertion key, kid {kid:?}")).await;
            }
        }
        s.gate.stop().await;
    }
}

/// The README's recipe for a Rust app (jsonwebtoken: `Validation::new`, `set_audience`,
/// `set_issuer`, the key the JWKS names), verbatim.
fn readme_rust_identity(jwks: &JwkSet, assertion: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("authgate-assertion+jwt") {
        return Err("not an assertion".into());
    }
    let jwk = jwks
        .find(&header.kid.unwrap_or_default())
        .ok_or("no such key")?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["the-app"]);
    validation.set_issuer(&["authgate"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// Was a weakness at a47dce0: with asymmetric tokens and assertions, the JWKS holds the token keys beside the
/// assertion keys and both kinds of JWT have `iss = authgate`. An app that reaches past the gate
/// (the case assertions exist for) and verifies `X-Auth-Assertion` the way the README shows for
/// Rust accepts a user's ACCESS token (15 min, held by the client) or REFRESH token (30 days, no
/// `aud`, no `roles`) as the assertion, even after the gate has revoked it by a logout: jsonwebtoken
/// checks `aud` only when the token has one. (PyJWT, as in the README's Python, requires `aud`
/// once an audience is given, and refuses.) Sent directly to the app:
/// `GET /anything` with `X-Auth-Assertion: <alice's refresh token>`.
#[tokio::test]
async fn an_app_following_the_readme_refuses_an_access_or_refresh_token_as_its_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = key_file(dir.path(), "EdDSA", "tokens");
    let a1 = key_file(dir.path(), "EdDSA", "a1");
    let s = Setup::with_config(
        &assertions("EdDSA", &[("a1", &a1)]),
        asymmetric_tokens("EdDSA", &tokens),
    )
    .await;
    let (access, refresh) = s.login("alice").await;
    get_with_token(s.addr(), "/api/x", &access).await;
    let assertion = assertion_values(&last_seen(&s)).pop().unwrap();
    let set = jwks_at(s.addr(), JWKS).await;
    assert!(
        readme_rust_identity(&set, &assertion).is_ok(),
        "the recipe works"
    );
    // Alice logs out: the gate refuses both tokens from now on.
    assert_eq!(
        post_with_token(s.addr(), "/logout", &access).await.status,
        StatusCode::OK
    );
    refused(&s, &access, "after logout").await;
    let mut accepted = Vec::new();
    for (what, token) in [("access", &access), ("refresh", &refresh)] {
        // With `aud` required, as PyJWT does: refused.
        let mut strict = Validation::new(Algorithm::EdDSA);
        strict.set_audience(&["the-app"]);
        strict.set_issuer(&["authgate"]);
        strict.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let key = DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
        assert!(
            jsonwebtoken::decode::<Value>(token, &key, &strict).is_err(),
            "{what}"
        );
        if readme_rust_identity(&set, token).is_ok() {
            accepted.push(what);
        }
    }
    assert!(
        accepted.is_empty(),
        "an app verifying as the README says accepts {accepted:?} tokens as assertions"
    );
    s.gate.stop().await;
}

/// Was missing at a47dce0 (RFC 8725 §3.11, explicit typing): assertions and access tokens share an issuer,
/// the JWKS, the algorithm family and nearly every claim (sub, username, roles, iat, exp, jti);
/// only `aud` tells them apart. Their `typ` header should too, so that an app (or library
/// default) that skips `aud` still cannot take a 15-minute (or, for a refresh token, 30-day),
/// revocable-only-at-the-gate token for a 60-second assertion.
#[tokio::test]
async fn assertions_are_typed_apart_from_access_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = key_file(dir.path(), "EdDSA", "tokens");
    let a1 = key_file(dir.path(), "EdDSA", "a1");
    let s = Setup::with_config(
        &assertions("EdDSA", &[("a1", &a1)]),
        asymmetric_tokens("EdDSA", &tokens),
    )
    .await;
    let (access, refresh) = s.login("alice").await;
    get_with_token(s.addr(), "/api/x", &access).await;
    let assertion = assertion_values(&last_seen(&s)).pop().unwrap();
    let typ = |t: &str| jsonwebtoken::decode_header(t).unwrap().typ;
    assert_ne!(
        typ(&assertion),
        typ(&access),
        "assertion and access token: same typ"
    );
    assert_ne!(
        typ(&assertion),
        typ(&refresh),
        "assertion and refresh token: same typ"
    );
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Configuration mistakes
// ---------------------------------------------------------------------------------------------

fn parse(extra: &str, edit: impl FnOnce(String) -> String) -> Result<authgate::Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let text = edit(config_text(
        "http://127.0.0.1:9",
        &dir.path().join("c.db"),
        extra,
    ));
    authgate::Config::parse(&text).map_err(|e| e.to_string())
}

/// Was a weakness at a47dce0 (fixed): one private key signing both access tokens and assertions (the same
/// file, or a copy) defeats key separation: whoever holds the assertion key (a sidecar, an
/// HSM slot shared with the app's side) can mint access tokens, the JWKS lists one public key
/// under two kids, and the two kinds of JWT are told apart by their claims alone.
#[tokio::test]
async fn the_same_key_cannot_sign_tokens_and_assertions() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), alg, "shared");
        let copy = dir.path().join("copy.pem");
        std::fs::copy(&key, &copy).unwrap();
        for assertion_file in [&key, &copy] {
            let result = parse(
                &assertions(alg, &[("a1", assertion_file)]),
                asymmetric_tokens(alg, &key),
            );
            assert!(
                result.is_err(),
                "{alg}: tokens and assertions both signed by {} is accepted",
                assertion_file.display()
            );
        }
    }
}

/// Was a weakness at a47dce0 (fixed): an assertion key whose kid is a token key's kid: the JWKS then holds
/// two keys of one name, and an app (or the gate's token verification, were the lists merged)
/// picks whichever comes first.
#[tokio::test]
async fn an_assertion_kid_cannot_be_a_token_kid() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = key_file(dir.path(), "EdDSA", "tokens");
    let a = key_file(dir.path(), "EdDSA", "a");
    let keys = format!(
        "algorithm = \"EdDSA\"\n[[tokens.keys]]\nkid = \"k1\"\nprivate_key_file = \"{}\"",
        tokens.display()
    );
    let result = parse(&assertions("EdDSA", &[("k1", &a)]), |c| {
        c.replace(&format!("secret = \"{SECRET}\""), &keys)
    });
    assert!(
        result.is_err(),
        "an assertion key named like a token key is accepted"
    );
    // The same through the default kid (the token key's thumbprint).
    let key = encoding_key(Algorithm::EdDSA, &std::fs::read(&tokens).unwrap());
    let thumbprint = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
        .unwrap()
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .unwrap();
    let result = parse(
        &assertions("EdDSA", &[(&thumbprint, &a)]),
        asymmetric_tokens("EdDSA", &tokens),
    );
    assert!(
        result.is_err(),
        "an assertion key named by the token key's thumbprint is accepted"
    );
}

/// Weak or wrong assertion keys never start a gate: RSA 1024, a P-384 key for ES256, a public
/// key, an HMAC secret, an empty file, a key of another algorithm; and the message never
/// quotes the key.
#[tokio::test]
async fn weak_or_wrong_assertion_keys_are_refused_without_quoting_them() {
    let dir = tempfile::tempdir().unwrap();
    let ed = key_file(dir.path(), "EdDSA", "ed");
    let ec = key_file(dir.path(), "ES256", "ec");
    let public = dir.path().join("public.pem");
    {
        use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        let secret =
            p256::SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&ec).unwrap()).unwrap();
        std::fs::write(
            &public,
            secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
    }
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let cases: Vec<(&str, PathBuf)> = vec![
        ("RS256", PathBuf::from(RSA1024_PEM)),
        ("ES256", PathBuf::from(P384_PEM)),
        ("ES256", public.clone()),
        ("ES256", empty.clone()),
        ("ES256", ed.clone()),
        ("EdDSA", ec.clone()),
        ("RS256", ec.clone()),
    ];
    for (alg, file) in cases {
        let result = parse(&assertions(alg, &[("a1", &file)]), |c| c);
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{alg} {} accepted", file.display()));
        let pem = std::fs::read_to_string(&file).unwrap();
        for line in pem
            .lines()
            .filter(|l| l.len() > 16 && !l.starts_with("-----"))
        {
            assert!(
                !err.contains(line),
                "{alg}: the error quotes the key: {err}"
            );
        }
        assert!(!err.contains("PRIVATE KEY-----"), "{err}");
    }
    let secret = format!(
        "[identity]\nassertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"the-app\"\n\
         [[identity.assertion_keys]]\nkid = \"a1\"\nsecret = \"{SECRET}\"\n"
    );
    let err = parse(&secret, |c| c).unwrap_err();
    assert!(!err.contains(SECRET), "{err}");
    for alg in ["HS256", "none", "ES384", "PS256", "eddsa"] {
        let text = assertions(alg, &[("a1", &ed)]);
        assert!(parse(&text, |c| c).is_err(), "assertion_algorithm {alg}");
    }
    for ttl in ["0s", "61s", "1h"] {
        let text = assertions("EdDSA", &[("a1", &ed)]).replace(
            "assertion_algorithm",
            &format!("assertion_ttl = \"{ttl}\"\nassertion_algorithm"),
        );
        assert!(parse(&text, |c| c).is_err(), "assertion_ttl {ttl}");
    }
}

/// Was a weakness at a47dce0 (fixed): `assertion_header` may name a header that frames or routes the request,
/// or one authgate itself writes. With `Content-Length`, the client's length is dropped as an
/// "owned" header and `content-length: eyJ…` is written instead (the upstream must then guess
/// where the body ends: a lenient one reads the body as the next request); with `Host` the
/// upstream gets no Host; with `X-Forwarded-For` the app gets two, one a JWT.
#[tokio::test]
async fn the_assertion_header_cannot_be_one_that_frames_or_routes_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let ed = key_file(dir.path(), "EdDSA", "ed");
    let mut accepted = Vec::new();
    for name in [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Expect",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Real-IP",
        "Forwarded",
        "Content-Type",
    ] {
        let text = assertions("EdDSA", &[("a1", &ed)]).replace("X-Auth-Assertion", name);
        if parse(&text, |c| c).is_ok() {
            accepted.push(name);
        }
    }
    assert!(
        accepted.is_empty(),
        "assertion_header may be any of {accepted:?}"
    );
}

/// `assertion_header = "Content-Length"` would replace a POST's framing with the assertion on the
/// way to the app (shown by the attack on a47dce0, where a lenient app then read the body as a
/// second request with a forged identity): refused, saying why.
#[test]
fn an_identity_header_named_like_a_framing_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "EdDSA", "assertion");
    for (setting, name) in [
        ("assertion_header", "Content-Length"),
        ("user_id_header", "Transfer-Encoding"),
        ("roles_header", "Host"),
    ] {
        let identity = assertions("EdDSA", &[("a1", &key)]);
        let identity = match setting {
            "assertion_header" => identity.replace("X-Auth-Assertion", name),
            _ => identity.replace(
                "[identity]\n",
                &format!("[identity]\n{setting} = \"{name}\"\n"),
            ),
        };
        let text = config_text("http://127.0.0.1:9", &dir.path().join("gate.db"), &identity);
        let err = authgate::Config::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "identity.{setting} = {:?}",
                name.to_ascii_lowercase()
            )) && err.contains("cannot carry the identity"),
            "{setting} = {name}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Key material and assertions in logs and Debug
// ---------------------------------------------------------------------------------------------

/// The lines of a PEM that carry key material.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_configurations_debug_never_shows_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = key_file(dir.path(), "ES256", "tokens");
    let a1 = key_file(dir.path(), "EdDSA", "a1");
    let a2 = key_file(dir.path(), "EdDSA", "a2");
    let config = parse(
        &assertions("EdDSA", &[("a1", &a1), ("a2", &a2)]),
        asymmetric_tokens("ES256", &tokens),
    )
    .unwrap();
    let debug = format!("{config:?} {config:#?}");
    for file in [&tokens, &a1, &a2] {
        let pem = std::fs::read_to_string(file).unwrap();
        for line in pem_body_lines(&pem) {
            assert!(!debug.contains(&line), "key material in Debug: {line}");
        }
        // Nor the raw bytes as a list of numbers.
        let bytes = format!("{:?}", &pem.as_bytes()[..24]);
        assert!(
            !debug.contains(&bytes[1..bytes.len() - 1]),
            "key bytes in Debug"
        );
    }
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    // And the HMAC secret, the old way.
    let hmac = parse(&assertions("EdDSA", &[("a1", &a1)]), |c| c).unwrap();
    let debug = format!("{hmac:?}");
    assert!(!debug.contains(SECRET));
    let bytes = format!("{:?}", &SECRET.as_bytes()[..16]);
    assert!(!debug.contains(&bytes[1..bytes.len() - 1]));
}

/// The real binary, logging JSON at `info`: a login, guarded requests (with bad tokens too), the
/// JWKS, a logout: its log holds no key material, no assertion, no token.
#[tokio::test]
async fn the_gates_log_holds_no_key_no_assertion_and_no_token() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = key_file(dir.path(), "ES256", "tokens");
    let a1 = key_file(dir.path(), "EdDSA", "a1");
    let text = asymmetric_tokens("ES256", &tokens)(config_text(
        &upstream.url(),
        &dir.path().join("gate.db"),
        &assertions("EdDSA", &[("a1", &a1)]),
    ));
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, &text).unwrap();
    let process = Process::start(&path);
    let addr = process.addr;
    wait_ready(addr).await;
    let (access, refresh) = Setup::login_at(addr, "alice").await;
    for target in ["/api/x", "/api/y?token=z", "/public/x", "/admin/x"] {
        get_with_token(addr, target, &access).await;
    }
    let assertion = upstream
        .seen()
        .iter()
        .flat_map(assertion_values)
        .next()
        .expect("an assertion");
    get_with_token(addr, "/api/x", &assertion).await;
    get_with_token(addr, "/api/x", &format!("{access}x")).await;
    get(addr, JWKS, &[]).await;
    post_with_token(addr, "/refresh", &refresh).await;
    post_with_token(addr, "/logout", &access).await;
    get_with_token(addr, "/api/x", &access).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = process.log_text();
    assert!(log.contains("request"), "the log: {log}");
    for file in [&tokens, &a1] {
        for line in pem_body_lines(&std::fs::read_to_string(file).unwrap()) {
            assert!(!log.contains(&line), "key material in the log");
        }
    }
    assert!(!log.contains("PRIVATE KEY"));
    for (what, jwt) in [
        ("assertion", &assertion),
        ("access", &access),
        ("refresh", &refresh),
    ] {
        let signature = jwt.rsplit_once('.').unwrap().1;
        assert!(
            !log.contains(signature),
            "the {what} token's signature is in the log"
        );
    }
}

/// `authgate keygen` writes the key to stdout and nothing else anywhere, even with every log on;
/// a failing keygen or a start with a wrong key says what is wrong without quoting any key.
#[tokio::test]
async fn keygen_prints_the_key_on_stdout_only_and_errors_never_quote_one() {
    let bin = env!("CARGO_BIN_EXE_authgate");
    for alg in ["EdDSA", "ES256"] {
        let out = std::process::Command::new(bin)
            .args(["keygen", "--algorithm", alg])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert!(out.status.success(), "{alg}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{stdout}"
        );
        assert!(
            out.stderr.is_empty(),
            "{alg}: stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.matches("BEGIN").count(), 1, "one key, nothing else");
    }
    let out = std::process::Command::new(bin)
        .args(["keygen", "--algorithm", "HS256"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("PRIVATE"));

    // A start with an ES256 key where EdDSA is named: refused, the key not quoted.
    let dir = tempfile::tempdir().unwrap();
    let ec = key_file(dir.path(), "ES256", "ec");
    let text = config_text(
        "http://127.0.0.1:9",
        &dir.path().join("gate.db"),
        &assertions("EdDSA", &[("a1", &ec)]),
    );
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(bin)
        .args(["--json-logs", "--config"])
        .arg(&path)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("assertion_keys"), "{said}");
    for line in pem_body_lines(&std::fs::read_to_string(&ec).unwrap()) {
        assert!(!said.contains(&line), "the error quotes the key: {said}");
    }
}
