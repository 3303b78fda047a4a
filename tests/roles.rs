//! Roles on the real gate: a route that requires roles lets through users holding one of them
//! and nobody else, the app learns the roles from a header no client can forge, and a change an
//! administrator makes reaches a session at its next refresh.

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;

const ROUTES: &str = r#"
[[routes]]
path = "/billing/**"
roles = ["billing", "admin"]
[[routes]]
path = "/ops/**"
methods = ["DELETE"]
roles = ["ops"]
[[routes]]
path = "/ops/**"
access = "public"
"#;

/// The configuration the `Setup` runs with, for the administrator's commands on its store.
fn config_of(setup: &Setup) -> authgate::Config {
    authgate::Config::parse(&config_text(
        &setup.upstream.url(),
        &setup.store_path(),
        ROUTES,
    ))
    .unwrap()
}

/// Registers `name`, gives them `roles` as an administrator would, and logs them in.
async fn user_with_roles(setup: &Setup, name: &str, roles: &[&str]) -> (String, String) {
    let creds = json!({"username": name, "password": "a perfectly fine password"});
    assert_eq!(
        post_json(setup.addr(), "/register", &creds, &[])
            .await
            .status,
        StatusCode::CREATED
    );
    set_roles(setup, name, roles).await;
    setup.login(name).await
}

async fn set_roles(setup: &Setup, name: &str, roles: &[&str]) {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    authgate::admin::set_roles(&config_of(setup), name, &roles)
        .await
        .unwrap();
}

/// What the app saw of the latest request, and how many requests it has seen.
fn last_seen(setup: &Setup) -> (usize, Option<support::Seen>) {
    let seen = setup.upstream.seen();
    (seen.len(), seen.last().cloned())
}

#[tokio::test]
async fn a_route_with_roles_lets_in_a_user_holding_one_of_them_and_nobody_else() {
    let setup = Setup::with_extra(ROUTES).await;
    let (alice, _) = user_with_roles(&setup, "alice", &["billing"]).await;
    let (carol, _) = user_with_roles(&setup, "carol", &["admin", "ops"]).await;
    let (bob, _) = setup.login("bob").await;

    let r = get_with_token(setup.addr(), "/billing/invoices", &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let (_, seen) = last_seen(&setup);
    let seen = seen.unwrap();
    assert_eq!(seen.headers["x-auth-roles"], "billing");
    assert_eq!(seen.headers["x-auth-username"], "alice");

    let r = get_with_token(setup.addr(), "/billing/invoices", &carol).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        last_seen(&setup).1.unwrap().headers["x-auth-roles"],
        "admin,ops"
    );

    // No role at all, or another role: 403, and the app sees nothing.
    let before = last_seen(&setup).0;
    for token in [&bob, &alice] {
        let r = send(
            setup.addr(),
            request(
                "DELETE",
                "/ops/queue",
                &[("authorization", &format!("Bearer {token}"))],
                "",
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
        assert_eq!(r.json(), json!({"msg": "Access denied"}));
    }
    let r = get_with_token(setup.addr(), "/billing/invoices", &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(last_seen(&setup).0, before, "nothing was forwarded");

    // Without a token a guarded route is still 401, roles or not.
    let r = get(setup.addr(), "/billing/invoices", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The same path by another method meets another rule; a method override meets both.
    let r = get_with_token(setup.addr(), "/ops/queue", &bob).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        setup.addr(),
        request(
            "POST",
            "/ops/queue?_method=delete",
            &[("authorization", &format!("Bearer {bob}"))],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = send(
        setup.addr(),
        request(
            "POST",
            "/ops/queue?_method=delete",
            &[("authorization", &format!("Bearer {carol}"))],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

/// A client's own `X-Auth-Roles`, in any spelling, never reaches the app: not on a public route,
/// not beside a user who has roles, not for a user who has none.
#[tokio::test]
async fn roles_a_client_sends_never_reach_the_app() {
    let setup = Setup::with_extra(ROUTES).await;
    let (alice, _) = user_with_roles(&setup, "alice", &["billing"]).await;
    let (bob, _) = setup.login("bob").await;
    let auth = |t: &str| format!("Bearer {t}");
    for spelling in [
        "X-Auth-Roles",
        "x-auth-roles",
        "X_AUTH_ROLES",
        "x-Auth_roles",
    ] {
        for (target, token) in [
            ("/public/x", None),
            ("/api/x", Some(&bob)),
            ("/billing/x", Some(&alice)),
        ] {
            let mut headers = vec![(spelling, "admin")];
            let bearer = token.map(|t| auth(t));
            if let Some(bearer) = &bearer {
                headers.push(("authorization", bearer));
            }
            let r = get(setup.addr(), target, &headers).await;
            assert_eq!(r.status, StatusCode::OK, "{spelling} {target}: {r:?}");
            let seen = last_seen(&setup).1.unwrap();
            let roles: Vec<&str> = seen
                .headers
                .iter()
                .filter(|(name, _)| {
                    name.as_str()
                        .replace('_', "-")
                        .eq_ignore_ascii_case("x-auth-roles")
                })
                .map(|(_, v)| v.to_str().unwrap())
                .collect();
            let expected: &[&str] = if target == "/billing/x" {
                &["billing"]
            } else {
                &[]
            };
            assert_eq!(roles, expected, "{spelling} {target}");
        }
    }
}

/// Roles are read from the store at every refresh: a role taken away ends access at the
/// session's next refresh, and one given opens it, without logging in again.
#[tokio::test]
async fn a_role_change_reaches_a_session_at_its_next_refresh() {
    let setup = Setup::with_extra(ROUTES).await;
    let (access, refresh) = user_with_roles(&setup, "alice", &["billing"]).await;
    assert_eq!(
        get_with_token(setup.addr(), "/billing/x", &access)
            .await
            .status,
        StatusCode::OK
    );

    set_roles(&setup, "alice", &[]).await;
    // The access token keeps what it was signed with until it expires (minutes at most)...
    assert_eq!(
        get_with_token(setup.addr(), "/billing/x", &access)
            .await
            .status,
        StatusCode::OK
    );
    // ...and the next refresh carries what the store says now.
    let r = post_with_token(setup.addr(), "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let (access, refresh) = (
        r.json()["access_token"].as_str().unwrap().to_string(),
        r.json()["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_eq!(payload(&access)["roles"], json!([]));
    let r = get_with_token(setup.addr(), "/billing/x", &access).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    set_roles(&setup, "alice", &["admin"]).await;
    let r = post_with_token(setup.addr(), "/refresh", &refresh).await;
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(payload(&access)["roles"], json!(["admin"]));
    let r = get_with_token(setup.addr(), "/billing/x", &access).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        last_seen(&setup).1.unwrap().headers["x-auth-roles"],
        "admin"
    );
}

/// A token signed with another key cannot claim a role, and one signed with the right key
/// cannot claim a role that the app would read as another.
#[tokio::test]
async fn forged_roles_claims_are_refused() {
    let setup = Setup::with_extra(ROUTES).await;
    let (access, _) = setup.login("bob").await;
    let mut claims = payload(&access);
    claims["roles"] = json!(["admin"]);
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-0123456789-abcdefghijklmnop"),
    )
    .unwrap();
    let r = get_with_token(setup.addr(), "/billing/x", &wrong_key).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.msg(), "Signature verification failed");

    for roles in [
        json!(["admin,billing"]),
        json!(["Admin"]),
        json!([" admin"]),
    ] {
        claims["roles"] = roles.clone();
        let r = get_with_token(setup.addr(), "/api/x", &sign(&claims)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{roles}");
        assert_eq!(r.msg(), "Invalid token claims", "{roles}");
    }
}
