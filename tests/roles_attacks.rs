//! Attacks on user roles (commit 7b2f0cb): getting past a `roles = [...]` route without the role,
//! or making the app believe a role the user does not hold. Each test asserts what the gate
//! SHOULD do; a test that fails is a bypass (see the comment on it).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::websocket::{closed_within, echo, open_websocket_at, refused_handshake};
use support::*;

const PASSWORD: &str = "a perfectly fine password";

/// Role-guarded routes used throughout (after `config_text`'s own `/public`, `/echo-body`,
/// `/admin` rules).
const ROUTES: &str = r#"
[[routes]]
path = "/billing/**"
roles = ["billing"]
[[routes]]
path = "/ops/**"
roles = ["admin", "ops"]
[[routes]]
path = "/items/**"
methods = ["DELETE"]
roles = ["admin"]
[[routes]]
path = "/reports/**"
methods = ["POST"]
roles = ["billing"]
[[routes]]
path = "/reports/**"
methods = ["DELETE"]
roles = ["admin"]
[[routes]]
path = "/docs/**"
methods = ["GET", "HEAD"]
access = "public"
[[routes]]
path = "/docs/**"
methods = ["DELETE"]
roles = ["admin"]
[[routes]]
path = "/ws/admin/**"
roles = ["admin"]
[[routes]]
path = "/feed/**"
methods = ["GET"]
roles = ["admin"]
"#;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The configuration the administrator's library calls need: same store as the running gate.
fn admin_config(s: &Setup) -> authgate::Config {
    authgate::Config::parse(&config_text(&s.upstream.url(), &s.store_path(), ROUTES))
        .expect("admin config parses")
}

async fn set_roles(s: &Setup, name: &str, roles: &[&str]) {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    authgate::admin::set_roles(&admin_config(s), name, &roles)
        .await
        .expect("set_roles");
}

/// Registers `name` at `prefix` (if new) and logs in: (access, refresh, the whole answer).
async fn register_and_login(addr: SocketAddr, prefix: &str, name: &str) -> Answer {
    let creds = json!({"username": name, "password": PASSWORD});
    let r = post_json(addr, &format!("{prefix}/register"), &creds, &[]).await;
    assert!(
        r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
        "{r:?}"
    );
    login_answer(addr, prefix, name).await
}

async fn login_answer(addr: SocketAddr, prefix: &str, name: &str) -> Answer {
    let creds = json!({"username": name, "password": PASSWORD});
    post_json(addr, &format!("{prefix}/login"), &creds, &[]).await
}

fn tokens(r: &Answer) -> (String, String) {
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Registers `name`, gives them `roles` and logs in again, so the access token carries them.
async fn user_with_roles(s: &Setup, name: &str, roles: &[&str]) -> (String, String) {
    register_and_login(s.addr(), "", name).await;
    set_roles(s, name, roles).await;
    let (access, refresh) = tokens(&login_answer(s.addr(), "", name).await);
    let mut want: Vec<&str> = roles.to_vec();
    want.sort();
    want.dedup();
    let carried = payload(&access)["roles"].clone();
    assert_eq!(carried, json!(want), "the login's token carries the roles");
    (access, refresh)
}

/// `old` with the cookies `new` sets in place of theirs.
fn merged(old: &[(String, String)], new: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = old
        .iter()
        .filter(|(n, _)| !new.iter().any(|(m, _)| m == n))
        .cloned()
        .collect();
    out.extend(new.iter().cloned());
    out
}

/// Every header the app got that any CGI/WSGI/PHP parser would read as `X-Auth-Roles`.
fn roles_seen(seen: &Seen) -> Vec<String> {
    seen.headers
        .iter()
        .filter(|(name, _)| fold(name.as_str()) == "x-auth-roles")
        .map(|(name, value)| format!("{}: {}", name, String::from_utf8_lossy(value.as_bytes())))
        .collect()
}

fn last_seen(s: &Setup) -> Seen {
    s.upstream.seen().pop().expect("the upstream saw a request")
}

async fn send_with_token(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(auth) = &auth {
        all.push(("authorization", auth));
    }
    send(addr, request(method, target, &all, Bytes::new())).await
}

/// An HS256 JWT over exactly `header` and `payload` (raw JSON text), signed with `key`.
fn hs256_raw(header: &str, payload: &str, key: &[u8]) -> String {
    use hmac::Mac;
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// `claims` of a real token with `roles` replaced, re-signed with the test secret.
fn with_roles(claims: &Value, roles: Value) -> String {
    let mut claims = claims.clone();
    claims["roles"] = roles;
    sign(&claims)
}

// ---------------------------------------------------------------------------------------------
// 1. The client's own X-Auth-Roles, in every spelling
// ---------------------------------------------------------------------------------------------

const SPELLINGS: [&str; 10] = [
    "X-Auth-Roles",
    "x-auth-roles",
    "X-AUTH-ROLES",
    "X_Auth_Roles",
    "x_auth_roles",
    "X.Auth.Roles",
    "X-Auth_Roles",
    "X~Auth~Roles",
    "X!Auth!Roles",
    "x-Auth-ROLES",
];

#[tokio::test]
async fn a_clients_roles_header_never_reaches_the_app_in_any_spelling() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await; // no roles
    let (carol, _) = user_with_roles(&s, "carol", &["billing"]).await;

    for name in SPELLINGS {
        // A public route, no token: nothing about roles reaches the app.
        let r = send_with_token(s.addr(), "GET", "/public/x", None, &[(name, "admin")]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        assert!(
            roles_seen(&last_seen(&s)).is_empty(),
            "{name} on a public route"
        );

        // Authenticated, a user without roles: the forged header is dropped, none is added.
        let r = send_with_token(s.addr(), "GET", "/api/x", Some(&bob), &[(name, "admin")]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        assert!(
            roles_seen(&last_seen(&s)).is_empty(),
            "{name}: {:?}",
            roles_seen(&last_seen(&s))
        );

        // A role route for a user without the role: the header does not help.
        let before = s.upstream.seen().len();
        let r = send_with_token(
            s.addr(),
            "GET",
            "/billing/x",
            Some(&bob),
            &[(name, "billing")],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {r:?}");
        assert_eq!(r.msg(), "Access denied");
        assert_eq!(
            s.upstream.seen().len(),
            before,
            "{name}: refused, never forwarded"
        );

        // A user with a role: the app gets exactly the gate's one value, not the client's.
        let r = send_with_token(
            s.addr(),
            "GET",
            "/billing/x",
            Some(&carol),
            &[(name, "admin"), (name, "ops")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        assert_eq!(
            roles_seen(&last_seen(&s)),
            ["x-auth-roles: billing"],
            "{name}"
        );
    }

    // Every spelling at once, twice over, on one request.
    let mut forged: Vec<(&str, &str)> = SPELLINGS.iter().map(|n| (*n, "admin")).collect();
    forged.extend(SPELLINGS.iter().map(|n| (*n, "billing,admin")));
    let r = send_with_token(s.addr(), "GET", "/api/x", Some(&bob), &forged).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(roles_seen(&last_seen(&s)).is_empty());

    // `Connection: x-auth-roles` cannot remove the gate's own header (nor smuggle the client's).
    let r = send_with_token(
        s.addr(),
        "GET",
        "/billing/x",
        Some(&carol),
        &[
            ("connection", "x-auth-roles, X-Auth-User-Id"),
            ("x-auth-roles", "admin"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let seen = last_seen(&s);
    assert_eq!(roles_seen(&seen), ["x-auth-roles: billing"]);
    assert!(seen.headers.get("x-auth-user-id").is_some());
    s.gate.stop().await;
}

#[tokio::test]
async fn raw_header_name_tricks_never_carry_a_role_to_the_app() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let cases = [
        "X-Auth-Roles : admin\r\n",
        "X-Auth-Roles\t: admin\r\n",
        "X-Auth-Roles:admin\r\n",
        "X-Auth-Roles:\tadmin\r\n",
        "X-Foo: a\r\n X-Auth-Roles: admin\r\n", // obs-fold continuation
        "X-Foo: a\r\n\tX-Auth-Roles: admin\r\n",
        "X-Auth-Roles: admin\r\nX-Auth-Roles: billing\r\n",
        "X-Auth-Roles: billing\r\nx_auth_roles: admin\r\nX.AUTH.ROLES: ops\r\n",
        "x-auth-roles\x00: admin\r\n",
        "X-Auth-Roles\r\n",
    ];
    for target in ["/api/x", "/billing/x", "/public/x"] {
        for extra in cases {
            let before = s.upstream.seen().len();
            let raw = format!(
                "GET {target} HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {bob}\r\n{extra}Connection: close\r\n\r\n"
            );
            let answer = send_raw(s.addr(), raw.as_bytes()).await;
            let status = raw_status(&answer);
            let seen = s.upstream.seen();
            if seen.len() > before {
                let roles = roles_seen(seen.last().unwrap());
                assert!(
                    roles.is_empty(),
                    "{target} {extra:?}: the app got {roles:?}"
                );
            }
            if target == "/billing/x" {
                assert_ne!(status, 200, "{extra:?}: {answer}");
                assert_eq!(s.upstream.seen().len(), before, "{extra:?}");
            }
        }
    }
    s.gate.stop().await;
}

#[tokio::test]
async fn over_http2_a_clients_roles_header_is_dropped_too() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let auth = format!("Bearer {bob}");
    let mut sender = http2_sender(s.addr()).await;
    for (path, want) in [
        ("/api/x", StatusCode::OK),
        ("/billing/x", StatusCode::FORBIDDEN),
        ("/public/x", StatusCode::OK),
    ] {
        let before = s.upstream.seen().len();
        let mut builder = http::Request::builder()
            .uri(format!("http://gate.test{path}"))
            .header("authorization", &auth);
        for name in SPELLINGS {
            builder = builder.header(name, "admin,billing");
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), want, "{path}");
        let _ = response.into_body().collect().await;
        if want == StatusCode::OK {
            assert!(roles_seen(&last_seen(&s)).is_empty(), "{path}");
        } else {
            assert_eq!(s.upstream.seen().len(), before, "{path}");
        }
    }
    // Lower-case method over HTTP/2 meets the DELETE rule.
    let response = sender
        .send_request(
            http::Request::builder()
                .method(http::Method::from_bytes(b"delete").unwrap())
                .uri("http://gate.test/items/1")
                .header("authorization", &auth)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Forged tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_claiming_roles_without_the_signing_key_is_refused() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let mut claims = payload(&bob);
    claims["roles"] = json!(["billing", "admin"]);
    let body = claims.to_string();
    let wrong_key = b"the-attackers-own-key-0123456789-abcdefghij";
    let signature = bob.rsplit('.').next().unwrap();
    let cases = [
        ("wrong key", hs256_raw(JWT_HEADER, &body, wrong_key)),
        (
            "alg none",
            format!(
                "{}.{}.",
                B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                B64.encode(&body)
            ),
        ),
        (
            "bob's signature over new claims",
            format!(
                "{}.{}.{signature}",
                B64.encode(JWT_HEADER),
                B64.encode(&body)
            ),
        ),
        ("HS512 with the wrong key", {
            use hmac::Mac;
            let input = format!(
                "{}.{}",
                B64.encode(r#"{"alg":"HS512","typ":"JWT"}"#),
                B64.encode(&body)
            );
            let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(wrong_key).unwrap();
            mac.update(input.as_bytes());
            format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
        }),
        ("empty key", hs256_raw(JWT_HEADER, &body, b"")),
    ];
    let before = s.upstream.seen().len();
    for (what, token) in cases {
        for path in ["/billing/x", "/ops/x", "/api/x"] {
            let r = get_with_token(s.addr(), path, &token).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what} {path}: {r:?}");
        }
    }
    assert_eq!(s.upstream.seen().len(), before);
    s.gate.stop().await;
}

/// Even with the signing key, a `roles` claim an app could split, trim or fold is refused whole
/// (401), never forwarded. Control: a well-formed hand-signed role passes.
#[tokio::test]
async fn hand_signed_roles_outside_the_grammar_are_refused() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let claims = payload(&bob);
    let bad = [
        json!(["admin,billing"]),
        json!(["billing,admin"]),
        json!([" admin"]),
        json!(["admin "]),
        json!(["Admin"]),
        json!(["BILLING"]),
        json!(["billing\n"]),
        json!(["billing\r\nX-Auth-User-Id: 0"]),
        json!(["bill\u{0}ing"]),
        json!(["ｂilling"]),
        json!(["b\u{0131}lling"]),
        json!(["billing;admin"]),
        json!(["billing\"admin"]),
        json!([""]),
        json!(["-admin"]),
        json!([":admin"]),
        json!(["r".repeat(65)]),
        json!(["billing", " admin"]),
        json!([1]),
        json!(["billing", 1]),
        json!([["billing"]]),
        json!([null]),
        json!([true]),
        json!([{"role": "billing"}]),
        json!("billing"),
        json!("admin,billing"),
        json!({"0": "billing"}),
        json!(1),
        json!(true),
    ];
    let before = s.upstream.seen().len();
    for roles in bad {
        let token = with_roles(&claims, roles.clone());
        for path in ["/billing/x", "/ops/x", "/api/x"] {
            let r = get_with_token(s.addr(), path, &token).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "roles {roles} {path}: {r:?}"
            );
        }
    }
    assert_eq!(s.upstream.seen().len(), before, "none forwarded");

    // A duplicate `roles` key: one parser's first is another's last.
    let body = claims.to_string();
    let dup = format!(
        "{},\"roles\":[\"nobody\"],\"roles\":[\"billing\"]}}",
        &body[..body.len() - 1]
    );
    let token = hs256_raw(JWT_HEADER, &dup, SECRET.as_bytes());
    let r = get_with_token(s.addr(), "/billing/x", &token).await;
    assert_ne!(r.status, StatusCode::OK, "duplicate roles key: {r:?}");

    // Other names for the claim are not roles.
    for (key, value) in [
        ("Roles", json!(["billing"])),
        ("role", json!("billing")),
        ("ROLES", json!(["billing"])),
        ("roles ", json!(["billing"])),
        ("groups", json!(["billing"])),
    ] {
        let mut c = claims.clone();
        c[key] = value;
        let r = get_with_token(s.addr(), "/billing/x", &sign(&c)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "claim {key:?}: {r:?}");
    }
    let mut c = claims.clone();
    c["roles"] = Value::Null;
    let r = get_with_token(s.addr(), "/billing/x", &sign(&c)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "roles: null is none");

    // Control: the key holder can sign a well-formed role, which passes.
    let r = get_with_token(
        s.addr(),
        "/billing/x",
        &with_roles(&claims, json!(["billing"])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(roles_seen(&last_seen(&s)), ["x-auth-roles: billing"]);
    s.gate.stop().await;
}

/// A huge or repetitive `roles` array (signed with the key: the issuer never makes one) is
/// refused: no user holds more than 32 roles, and the app's header stays short.
#[tokio::test]
async fn a_huge_roles_array_is_refused() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let claims = payload(&bob);
    let mut many: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    many.push("billing".into());
    let dups: Vec<&str> = vec!["billing"; 100];
    let mut huge: Vec<String> = (0..600).map(|i| format!("r{i}")).collect();
    huge.push("billing".into());
    let seen = s.upstream.seen().len();
    for (what, roles) in [
        ("41 roles (over MAX_ROLES = 32)", json!(many)),
        ("billing x100", json!(dups)),
        ("601 roles", json!(huge)),
    ] {
        let token = with_roles(&claims, roles.clone());
        let r = get_with_token(s.addr(), "/billing/x", &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {r:?}");
        assert_eq!(r.msg(), "Invalid token claims", "{what}");
    }
    assert_eq!(s.upstream.seen().len(), seen, "nothing forwarded");
    s.gate.stop().await;
}

#[tokio::test]
async fn a_refresh_token_is_no_access_token_and_carries_no_role() {
    let s = Setup::with_extra(ROUTES).await;
    let (_, refresh) = user_with_roles(&s, "carol", &["billing"]).await;
    assert!(
        payload(&refresh).get("roles").is_none(),
        "refresh tokens carry none"
    );
    let before = s.upstream.seen().len();
    for path in ["/billing/x", "/api/x"] {
        let r = get_with_token(s.addr(), path, &refresh).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {r:?}");
    }
    // A refresh-type token claiming roles, signed with the key: still no access token.
    let forged = with_roles(&payload(&refresh), json!(["billing", "admin"]));
    let r = get_with_token(s.addr(), "/billing/x", &forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    // An access token without a `type`: refused.
    let (bob, _) = s.login("bob").await;
    let mut c = payload(&bob);
    c.as_object_mut().unwrap().remove("type");
    c["roles"] = json!(["billing"]);
    let r = get_with_token(s.addr(), "/billing/x", &sign(&c)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(s.upstream.seen().len(), before);
    s.gate.stop().await;
}

/// A refresh token that claims roles (signed with the key) gets the store's roles, not its own.
#[tokio::test]
async fn a_refresh_takes_roles_from_the_store_not_from_the_refresh_token() {
    let s = Setup::with_extra(ROUTES).await;
    let (_, refresh) = s.login("bob").await;
    let forged = with_roles(&payload(&refresh), json!(["billing", "admin"]));
    let r = post_with_token(s.addr(), "/refresh", &forged).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(payload(&access)["roles"], json!([]));
    let r = get_with_token(s.addr(), "/billing/x", &access).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Method tricks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn query_method_overrides_need_the_roles_of_both_rules() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let (alice, _) = user_with_roles(&s, "alice", &["admin"]).await;
    let (carol, _) = user_with_roles(&s, "carol", &["billing"]).await;
    let (dave, _) = user_with_roles(&s, "dave", &["admin", "billing"]).await;

    // Controls.
    let r = send_with_token(s.addr(), "POST", "/items/1", Some(&bob), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "POST /items needs no role");
    let r = send_with_token(s.addr(), "DELETE", "/items/1", Some(&bob), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send_with_token(
        s.addr(),
        "POST",
        "/items/1?_method=DELETE",
        Some(&alice),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let spellings = [
        "_method=DELETE",
        "_method=delete",
        "_method=Delete",
        "_method=%44ELETE",
        "_method=+DELETE+",
        "_method=%20delete%09",
        "%5Fmethod=DELETE",
        "%5f%6d%65%74%68%6f%64=DELETE",
        ".method=DELETE",
        "%2Emethod=DELETE",
        "+_method=DELETE",
        "%20_method=DELETE",
        "_method%00=DELETE",
        "_method%00junk=DELETE",
        "%5Bmethod=DELETE",
        "x=1&_method=DELETE",
        "x=1;_method=DELETE",
        "_method=GET&_method=DELETE",
        "_method=DELETE&_method=GET",
        "_method=PUT&_method=DELETE&_method=PATCH",
        "a=b&&_method=DELETE&",
    ];
    for query in spellings {
        let before = s.upstream.seen().len();
        let target = format!("/items/1?{query}");
        let r = send_with_token(s.addr(), "POST", &target, Some(&bob), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "POST {target}: {r:?}");
        assert_eq!(s.upstream.seen().len(), before, "POST {target}");
        // Other methods as the carrier.
        for method in ["PUT", "PATCH", "GET", "OPTIONS"] {
            let r = send_with_token(s.addr(), method, &target, Some(&bob), &[]).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {target}: {r:?}");
        }
    }
    // The raw `[method` key (PHP reads `[` as `_`), sent as the bytes.
    let raw = format!(
        "POST /items/1?[method=DELETE HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {bob}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = send_raw(s.addr(), raw.as_bytes()).await;
    assert_ne!(raw_status(&answer), 200, "{answer}");

    // Two role rules: POST /reports needs billing, DELETE needs admin; both for the override.
    let r = send_with_token(s.addr(), "POST", "/reports/x", Some(&carol), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    for (who, token, want) in [
        ("carol (billing)", &carol, StatusCode::FORBIDDEN),
        ("alice (admin)", &alice, StatusCode::FORBIDDEN),
        ("bob (none)", &bob, StatusCode::FORBIDDEN),
        ("dave (both)", &dave, StatusCode::OK),
    ] {
        let r = send_with_token(
            s.addr(),
            "POST",
            "/reports/x?_method=DELETE",
            Some(token),
            &[],
        )
        .await;
        assert_eq!(r.status, want, "{who} POST ?_method=DELETE");
        let r = send_with_token(
            s.addr(),
            "DELETE",
            "/reports/x?_method=POST",
            Some(token),
            &[],
        )
        .await;
        assert_eq!(r.status, want, "{who} DELETE ?_method=POST");
    }

    // A public GET turned into a role-guarded DELETE: a token and the role, then.
    let r = send_with_token(s.addr(), "GET", "/docs/x", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let before = s.upstream.seen().len();
    for query in ["_method=DELETE", ".method=delete", "_method%00=DELETE"] {
        let target = format!("/docs/x?{query}");
        let r = send_with_token(s.addr(), "GET", &target, None, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "anonymous GET {target}");
        let r = send_with_token(s.addr(), "HEAD", &target, None, &[]).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "anonymous HEAD {target}"
        );
        let r = send_with_token(s.addr(), "GET", &target, Some(&bob), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "bob GET {target}");
    }
    assert_eq!(s.upstream.seen().len(), before);
    let r = send_with_token(s.addr(), "GET", "/docs/x?_method=DELETE", Some(&alice), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    s.gate.stop().await;
}

#[tokio::test]
async fn lower_case_methods_meet_the_rules_for_the_upper_case_ones() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let (alice, _) = user_with_roles(&s, "alice", &["admin"]).await;
    let before = s.upstream.seen().len();
    for method in ["delete", "Delete", "dELETE"] {
        let r = send_with_token(s.addr(), method, "/items/1", Some(&bob), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method}");
        let raw = format!(
            "{method} /items/1 HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {bob}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            raw_status(&send_raw(s.addr(), raw.as_bytes()).await),
            403,
            "{method}"
        );
    }
    assert_eq!(s.upstream.seen().len(), before);
    let r = send_with_token(s.addr(), "delete", "/items/1", Some(&alice), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        last_seen(&s).method,
        "DELETE",
        "the app runs what the rule decided"
    );
    s.gate.stop().await;
}

/// `GET` does not imply `HEAD` (README, Routes): a `methods = ["GET"]` role rule leaves HEAD
/// (and OPTIONS) to any signed-in user, and most frameworks run the GET handler for HEAD.
/// Documented; recorded here as what happens, not asserted as secure.
#[tokio::test]
async fn documented_head_is_not_covered_by_a_get_only_role_rule() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let r = send_with_token(s.addr(), "GET", "/feed/x", Some(&bob), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send_with_token(s.addr(), "HEAD", "/feed/x", Some(&bob), &[]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "documented: GET does not imply HEAD"
    );
    assert_eq!(last_seen(&s).method, "HEAD");
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Path normalisation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn path_tricks_do_not_reach_a_role_guarded_path() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let (carol, _) = user_with_roles(&s, "carol", &["billing"]).await;
    let targets = [
        "/billing",
        "/billing/",
        "/billing/x",
        "/billing?x=1",
        "/public/../billing/x",
        "/public/%2e%2e/billing/x",
        "/public/%2E%2E/billing/x",
        "/public/.%2e/billing/x",
        "/x/y/../../billing/x",
        "/billing/../billing/x",
        "//billing/x",
        "///billing//x",
        "/./billing/x",
        "/%2e/billing/x",
        "/billing/./x",
        "/%62illing/x",
        "/%62%69%6c%6c%69%6e%67/x",
        "/%62%69%6C%6C%69%6E%67",
        "/bill%69ng/../billing/x",
        "/billing%2fx",
        "/billing%2Fx",
        "/public%2f..%2fbilling/x",
        "/billing%5cx",
        "/public/..%2fbilling/x",
        "/public/..;/billing/x",
        "/billing;x=1",
        "/billing/%00",
        "/%c0%ae%c0%ae/billing/x",
        "/public/%c0%ae%c0%ae/billing/x",
        "/..",
        "/../billing/x",
    ];
    let before = s.upstream.seen().len();
    for target in targets {
        let r = send_with_token(s.addr(), "GET", target, Some(&bob), &[]).await;
        assert!(
            r.status == StatusCode::FORBIDDEN || r.status == StatusCode::BAD_REQUEST,
            "{target}: {r:?}"
        );
    }
    // Raw forms no client library sends.
    for target in [
        "http://gate.test/billing/x",
        "http://gate.test/public/../billing/x",
        "/public/\\..\\billing/x",
        "/public/../billing/x#frag",
        "*",
    ] {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {bob}\r\nConnection: close\r\n\r\n"
        );
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        assert_ne!(raw_status(&answer), 200, "{target}: {answer}");
    }
    assert_eq!(s.upstream.seen().len(), before, "nothing forwarded");

    // Control: carol reaches each normalisable spelling, forwarded as the normal path.
    let r = send_with_token(
        s.addr(),
        "GET",
        "/public/%2e%2e/%62illing//x",
        Some(&carol),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(last_seen(&s).target, "/billing/x");

    // With case-sensitive matching (the default), /BILLING is another path: documented
    // (README, Routes), so only an app that folds case is exposed. Recorded, not a bypass.
    let r = send_with_token(s.addr(), "GET", "/BILLING/x", Some(&bob), &[]).await;
    assert_eq!(
        (r.status, last_seen(&s).target),
        (StatusCode::OK, "/BILLING/x".to_string()),
        "documented: another path unless case_insensitive_routes"
    );
    s.gate.stop().await;
}

#[tokio::test]
async fn with_case_insensitive_routes_no_case_reaches_a_role_guarded_path() {
    let s = Setup::with_config(ROUTES, |c| {
        c.replace("[server]\n", "[server]\ncase_insensitive_routes = true\n")
    })
    .await;
    let (bob, _) = s.login("bob").await;
    let before = s.upstream.seen().len();
    for target in [
        "/BILLING/x",
        "/Billing/x",
        "/bIlLiNg",
        "/%42illing/x",
        "/%42ILLING/x",
        "/public/../BILLING/x",
        "/OPS/x",
        "/WS/ADMIN/x",
    ] {
        let r = send_with_token(s.addr(), "GET", target, Some(&bob), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{target}: {r:?}");
    }
    for (method, target) in [("DELETE", "/ITEMS/1"), ("POST", "/Items/1?_method=DELETE")] {
        let r = send_with_token(s.addr(), method, target, Some(&bob), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {target}: {r:?}");
    }
    assert_eq!(s.upstream.seen().len(), before);
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Roles changing under a live session
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_removed_role_lasts_until_the_access_token_expires_and_the_next_refresh_drops_it() {
    let s = Setup::with_config(ROUTES, |c| {
        c.replace("[tokens]\n", "[tokens]\naccess_ttl = \"4s\"\n")
    })
    .await;
    let (access, refresh) = user_with_roles(&s, "carol", &["billing"]).await;
    let r = get_with_token(s.addr(), "/billing/x", &access).await;
    assert_eq!(r.status, StatusCode::OK);

    set_roles(&s, "carol", &[]).await;
    // By design, the live access token keeps its roles until it expires...
    let r = get_with_token(s.addr(), "/billing/x", &access).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the token keeps its roles until it expires"
    );
    // ...and a refresh reads the store.
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    let (fresh, refresh2) = tokens(&r);
    assert_eq!(payload(&fresh)["roles"], json!([]));
    let before = s.upstream.seen().len();
    let r = get_with_token(s.addr(), "/billing/x", &fresh).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(s.upstream.seen().len(), before);
    let r = get_with_token(s.addr(), "/api/x", &fresh).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(roles_seen(&last_seen(&s)).is_empty(), "no roles, no header");

    // The refresh token just rotated, presented again within the grace: the store's roles too,
    // not the ones of the time it was issued.
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let grace = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(payload(&grace)["roles"], json!([]));
    assert_eq!(
        get_with_token(s.addr(), "/billing/x", &grace).await.status,
        StatusCode::FORBIDDEN
    );

    // The old access token expires: then it is refused everywhere.
    let deadline = payload(&access)["exp"].as_u64().unwrap();
    while now() < deadline + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = get_with_token(s.addr(), "/billing/x", &access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // Given roles again: the next refresh brings them, in one header.
    set_roles(&s, "carol", &["ops", "billing"]).await;
    let (renewed, _) = tokens(&post_with_token(s.addr(), "/refresh", &refresh2).await);
    assert_eq!(payload(&renewed)["roles"], json!(["billing", "ops"]));
    let r = get_with_token(s.addr(), "/ops/x", &renewed).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(roles_seen(&last_seen(&s)), ["x-auth-roles: billing,ops"]);
    s.gate.stop().await;
}

/// A WebSocket opened on a role's route, then the role taken away: the tunnel is a request made
/// with the access token, so it lasts as the token's roles do, until the token expires (as
/// for row 144's requests), and then closes. The next refresh's token cannot open another.
/// `users logout` revokes the session, and a revoked session's tunnel is closed
/// (`logout_closes_the_websockets_its_session_opened`).
#[tokio::test]
async fn a_tunnel_opened_with_a_removed_role_closes_when_its_token_expires() {
    let s = Setup::with_config(ROUTES, |c| {
        c.replace("[tokens]\n", "[tokens]\naccess_ttl = \"4s\"\n")
    })
    .await;
    let (access, refresh) = user_with_roles(&s, "dora", &["admin"]).await;
    let id = payload(&access)["sub"].as_str().unwrap().to_string();
    let mut ws = open_websocket_at(s.addr(), "/ws/admin/live", &access).await;
    assert_eq!(echo(&mut ws, "paid").await, format!("{id}: paid"));

    set_roles(&s, "dora", &[]).await;
    assert_eq!(
        echo(&mut ws, "still").await,
        format!("{id}: still"),
        "by design, the tunnel keeps the token's roles until it expires"
    );
    assert!(
        closed_within(&mut ws, Duration::from_secs(10)).await,
        "the tunnel outlived its token"
    );
    assert!(
        now() >= payload(&access)["exp"].as_u64().unwrap(),
        "closed before the token expired"
    );

    let (fresh, _) = tokens(&post_with_token(s.addr(), "/refresh", &refresh).await);
    let before = s.upstream.seen().len();
    assert_eq!(
        refused_handshake(s.addr(), "/ws/admin/live", Some(&fresh)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.upstream.seen().len(), before, "the app never saw it");
    s.gate.stop().await;
}

/// With cookies: the silent refresh of an expired access cookie applies the store's roles, and
/// a refusal carries the renewed cookies but is never forwarded.
#[tokio::test]
async fn the_browser_silent_refresh_applies_the_stores_roles() {
    let s = Setup::with_config(&format!("[cookies]\nsecure = false\n{ROUTES}"), |c| {
        tokens_in_cookies_too(c).replace("[server]\n", "[server]\nauth_prefix = \"/auth\"\n")
    })
    .await;
    register_and_login(s.addr(), "/auth", "carol").await;
    set_roles(&s, "carol", &["billing"]).await;
    let r = login_answer(s.addr(), "/auth", "carol").await;
    assert_eq!(r.status, StatusCode::OK);
    let jar0 = jar(&r);
    assert_eq!(
        payload(value(&jar0, "access_token_cookie"))["roles"],
        json!(["billing"])
    );
    let r = get(s.addr(), "/billing/x", &[("cookie", &cookie_header(&jar0))]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(roles_seen(&last_seen(&s)), ["x-auth-roles: billing"]);

    set_roles(&s, "carol", &[]).await;
    // The live access cookie still carries billing (by design); once expired, the silent
    // refresh reads the store: 403 with the renewed cookies, nothing forwarded.
    let expired = expired_access(&jar0);
    let before = s.upstream.seen().len();
    let r = get(
        s.addr(),
        "/billing/x",
        &[("cookie", &with_access(&jar0, &expired))],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(s.upstream.seen().len(), before, "refused, not forwarded");
    let jar1 = merged(&jar0, &jar(&r));
    assert_eq!(
        payload(value(&jar1, "access_token_cookie"))["roles"],
        json!([]),
        "the renewed access cookie carries the store's roles"
    );
    // The renewed cookie: still 403 on the role route, 200 elsewhere without a roles header.
    let r = get(s.addr(), "/billing/x", &[("cookie", &cookie_header(&jar1))]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(s.addr(), "/api/x", &[("cookie", &cookie_header(&jar1))]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(roles_seen(&last_seen(&s)).is_empty());

    // The refresh cookie just rotated, again within the grace, with the expired access cookie:
    // the store's roles, still none.
    let before = s.upstream.seen().len();
    let r = get(
        s.addr(),
        "/billing/x",
        &[("cookie", &with_access(&jar0, &expired))],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // A state-changing request by cookie with a method override, silently refreshed.
    let csrf = value(&jar1, "csrf_access_token").to_string();
    let stale1 = expired_access(&jar1);
    let r = send(
        s.addr(),
        request(
            "POST",
            "/items/1?_method=DELETE",
            &[
                ("cookie", &with_access(&jar1, &stale1)),
                ("x-csrf-token", &csrf),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(s.upstream.seen().len(), before, "refused, not forwarded");

    // Granted a role meanwhile: the silent refresh brings it to the app.
    set_roles(&s, "carol", &["admin"]).await;
    let jar2 = merged(&jar1, &jar(&r));
    let stale2 = expired_access(&jar2);
    let r = get(
        s.addr(),
        "/ops/x",
        &[("cookie", &with_access(&jar2, &stale2))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(roles_seen(&last_seen(&s)), ["x-auth-roles: admin"]);
    s.gate.stop().await;
}

#[tokio::test]
async fn a_disabled_user_can_neither_refresh_nor_renew_silently() {
    let s = Setup::with_config(&format!("[cookies]\nsecure = false\n{ROUTES}"), |c| {
        tokens_in_cookies_too(c).replace("[store]\n", "[store]\ncatch_up_interval = \"1s\"\n")
    })
    .await;
    register_and_login(s.addr(), "", "carol").await;
    set_roles(&s, "carol", &["billing"]).await;
    let r = login_answer(s.addr(), "", "carol").await;
    let (access, refresh) = tokens(&r);
    let cookies = jar(&r);
    assert_eq!(
        get_with_token(s.addr(), "/billing/x", &access).await.status,
        StatusCode::OK
    );

    let revoked = authgate::admin::disable_user(&admin_config(&s), "carol")
        .await
        .unwrap();
    assert!(revoked >= 1);
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = login_answer(s.addr(), "", "carol").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // The access token is refused within the catch-up interval.
    let start = Instant::now();
    loop {
        let r = get_with_token(s.addr(), "/billing/x", &access).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still accepted: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Silent refresh by cookie: not forwarded.
    let mut only_refresh = cookies.clone();
    only_refresh.retain(|(n, _)| n != "access_token_cookie");
    let before = s.upstream.seen().len();
    for path in ["/billing/x", "/api/x"] {
        let r = get(s.addr(), path, &[("cookie", &cookie_header(&only_refresh))]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {r:?}");
    }
    assert_eq!(s.upstream.seen().len(), before);

    // Enabled again: the old session stays revoked; a new login works, with the roles.
    authgate::admin::enable_user(&admin_config(&s), "carol")
        .await
        .unwrap();
    let r = post_with_token(s.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = get(
        s.addr(),
        "/billing/x",
        &[("cookie", &cookie_header(&only_refresh))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let (again, _) = tokens(&login_answer(s.addr(), "", "carol").await);
    assert_eq!(
        get_with_token(s.addr(), "/billing/x", &again).await.status,
        StatusCode::OK
    );
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. WebSocket
// ---------------------------------------------------------------------------------------------

async fn websocket_status(
    addr: SocketAddr,
    target: &str,
    token: &str,
    extra: &str,
) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let raw = format!(
        "GET {target} HTTP/1.1\r\nHost: gate.test\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(raw.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_request_head(&mut stream))
        .await
        .expect("an answer")
        .expect("a head");
    (raw_status(&head), head)
}

#[tokio::test]
async fn a_websocket_upgrade_to_a_role_guarded_path_needs_the_role() {
    let s = Setup::with_extra(ROUTES).await;
    let (bob, _) = s.login("bob").await;
    let (alice, _) = user_with_roles(&s, "alice", &["admin"]).await;
    let before = s.upstream.seen().len();
    for (target, extra) in [
        ("/ws/admin/chat", ""),
        ("/ws/admin/chat", "X-Auth-Roles: admin\r\n"),
        ("/ws/x/../admin/chat", ""),
        ("//ws/admin/chat", ""),
        ("/ws/%61dmin/chat", ""),
        ("/ws/admin/chat?_method=GET", ""),
    ] {
        let (status, head) = websocket_status(s.addr(), target, &bob, extra).await;
        assert_eq!(status, 403, "{target}: {head}");
    }
    assert_eq!(
        s.upstream.seen().len(),
        before,
        "no handshake reached the app"
    );
    let (status, head) = websocket_status(s.addr(), "/ws/admin/chat", &alice, "").await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(roles_seen(&last_seen(&s)), ["x-auth-roles: admin"]);
    s.gate.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. A login racing a role removal
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// 8. Role rules that could silently open a route
// ---------------------------------------------------------------------------------------------

#[test]
fn role_rules_that_would_not_mean_what_they_say_are_configuration_errors() {
    let base = |route: &str| {
        config_text(
            "http://127.0.0.1:9",
            std::path::Path::new("/tmp/x.db"),
            route,
        )
    };
    for route in [
        "[[routes]]\npath = \"/b/**\"\naccess = \"public\"\nroles = [\"admin\"]\n",
        "[[routes]]\npath = \"/b/**\"\naccess = \"deny\"\nroles = [\"admin\"]\n",
        "[[routes]]\npath = \"/b/**\"\nroles = []\n",
        "[[routes]]\npath = \"/b/**\"\naccess = \"authenticated\"\nroles = []\n",
        "[[routes]]\npath = \"/b/**\"\nroles = [\"Admin\"]\n",
        "[[routes]]\npath = \"/b/**\"\nroles = [\"admin,billing\"]\n",
        "[[routes]]\npath = \"/b/**\"\nroles = [\" admin\"]\n",
        "[[routes]]\npath = \"/b/**\"\nroles = \"admin\"\n",
        "[[routes]]\npath = \"/b/**\"\naccess = \"authenticated\"\nrole = [\"admin\"]\n",
        "[[routes]]\npath = \"/b/**\"\naccess = \"authenticated\"\nRoles = [\"admin\"]\n",
    ] {
        assert!(authgate::Config::parse(&base(route)).is_err(), "{route}");
    }
    for identity in [
        "[identity]\nroles_header = \"X-Auth-User-Id\"\n",
        "[identity]\nroles_header = \"x_auth_username\"\n",
        "[identity]\nroles_header = \"X Auth Roles\"\n",
    ] {
        assert!(
            authgate::Config::parse(&base(identity)).is_err(),
            "{identity}"
        );
    }
    assert!(
        authgate::Config::parse(&base("[[routes]]\npath = \"/b/**\"\nroles = [\"admin\"]\n"))
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Smuggling a role-bearing request inside another
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_request_smuggled_in_a_body_never_reaches_the_app_with_a_role() {
    let s = Setup::with_extra(ROUTES).await;
    let smuggled = "GET /billing/x HTTP/1.1\r\nHost: gate.test\r\nX-Auth-Roles: billing\r\nX-Auth-User-Id: 1\r\nConnection: close\r\n\r\n";
    let chunk = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    let cases = [
        // CL.TE: the length says the smuggled request is body, the chunking says it is not.
        format!(
            "POST /public/x HTTP/1.1\r\nHost: gate.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // TE.CL: the chunk holds the request; a short length would leave it on the wire.
        format!(
            "POST /echo-body/x HTTP/1.1\r\nHost: gate.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"
        ),
        // A plain body holding a request, to an app route that echoes it.
        format!(
            "POST /echo-body/x HTTP/1.1\r\nHost: gate.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        // Two Content-Lengths.
        format!(
            "POST /public/x HTTP/1.1\r\nHost: gate.test\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
    ];
    for raw in cases {
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        for seen in s.upstream.seen() {
            assert!(!seen.target.starts_with("/billing"), "{raw:?}: {answer}");
            assert!(roles_seen(&seen).is_empty(), "{raw:?}: {answer}");
        }
    }
    s.gate.stop().await;
}
