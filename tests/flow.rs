//! The flow users run by hand, against the real gate and a real upstream: register → login →
//! protected call → refresh → logout → refused; plus rotation, reuse detection and restarts.

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn the_whole_flow_works_end_to_end() {
    let s = Setup::new().await;
    let addr = s.addr();

    let r = post_json(
        addr,
        "/register",
        &json!({"username": "Alice", "password": "correct horse battery"}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let user_id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["username"], "Alice");

    let r = post_json(
        addr,
        "/login",
        &json!({"username": "alice", "password": "correct horse battery"}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let claims = payload(&access);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["fresh"], true);
    assert_eq!(payload(&refresh)["type"], "refresh");
    assert_eq!(payload(&refresh)["sid"], claims["sid"]);

    // The protected call reaches the app, which learns who the user is.
    let r = get_with_token(addr, "/api/items?page=2", &access).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let seen = r.json();
    assert_eq!(seen["target"], "/api/items?page=2");
    assert_eq!(seen["headers"]["x-auth-user-id"], json!([user_id]));
    assert_eq!(seen["headers"]["x-auth-username"], json!(["Alice"]));

    // Refresh rotates: new tokens, not fresh, same session.
    let r = post_with_token(addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let access2 = r.json()["access_token"].as_str().unwrap().to_string();
    let refresh2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    assert_eq!(payload(&access2)["fresh"], false);
    assert_eq!(payload(&access2)["sid"], claims["sid"]);
    assert_eq!(
        get_with_token(addr, "/api/items", &access2).await.status,
        StatusCode::OK
    );

    // Logout revokes the session: both access tokens and the refresh token are refused.
    let r = post_with_token(addr, "/logout", &access2).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.msg(), "Successfully logged out");
    for token in [&access, &access2] {
        let r = get_with_token(addr, "/api/items", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.msg(), "Token has been revoked");
    }
    let r = post_with_token(addr, "/refresh", &refresh2).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.msg(), "Token has been revoked");

    // An expired token (signed with the right key) is refused too.
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 1);
    expired["iat"] = json!(now() - 901);
    expired["nbf"] = json!(now() - 901);
    let r = get_with_token(addr, "/api/items", &sign(&expired)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.msg(), "Token has expired");

    let reached: Vec<String> = s.upstream.seen().iter().map(|x| x.target.clone()).collect();
    assert_eq!(
        reached,
        ["/api/items?page=2", "/api/items"],
        "only the allowed calls reached the app"
    );
}

#[tokio::test]
async fn a_token_whose_exp_is_now_is_refused() {
    let s = Setup::new().await;
    let (access, _) = s.login("bob").await;
    let mut claims = payload(&access);
    claims["exp"] = json!(now());
    let r = get_with_token(s.addr(), "/api/x", &sign(&claims)).await;
    assert_eq!(r.msg(), "Token has expired");
    assert!(s.upstream.seen().is_empty());
}

#[tokio::test]
async fn a_rotated_refresh_token_stops_working_and_its_reuse_revokes_the_session() {
    // No grace: a browser's racing tabs are `tests/browser.rs`'s.
    let s = Setup::with_config("", without_refresh_grace).await;
    let addr = s.addr();
    let (access, refresh) = s.login("carol").await;

    let r = post_with_token(addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    let access2 = r.json()["access_token"].as_str().unwrap().to_string();
    let refresh2 = r.json()["refresh_token"].as_str().unwrap().to_string();

    // The thief (or the user) presents the old refresh token again.
    let r = post_with_token(addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.msg(), "Token has been revoked");

    // The whole session is gone: every token of it is refused, the newest refresh token included.
    for token in [&access, &access2] {
        assert_eq!(
            get_with_token(addr, "/api/x", token).await.msg(),
            "Token has been revoked"
        );
    }
    assert_eq!(
        post_with_token(addr, "/refresh", &refresh2).await.msg(),
        "Token has been revoked"
    );

    // Another login of the same user is a new session and unaffected.
    let (other, _) = s.login("carol").await;
    assert_eq!(
        get_with_token(addr, "/api/x", &other).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_with_the_refresh_token_revokes_the_access_token_too() {
    let s = Setup::new().await;
    let (access, refresh) = s.login("dave").await;
    let r = post_with_token(s.addr(), "/logout", &refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        get_with_token(s.addr(), "/api/x", &access).await.msg(),
        "Token has been revoked"
    );
    assert_eq!(
        post_with_token(s.addr(), "/logout", &access).await.msg(),
        "Token has been revoked"
    );
}

#[tokio::test]
async fn a_revoked_token_is_still_refused_after_a_restart_on_the_same_store() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = without_refresh_grace(config_text(
        &upstream.url(),
        &dir.path().join("authgate.db"),
        "",
    ));
    let password = "a perfectly fine password";
    let creds = json!({"username": "erin", "password": password});

    let gate = Gate::start(&config).await;
    assert_eq!(
        post_json(gate.addr, "/register", &creds, &[]).await.status,
        StatusCode::CREATED
    );
    let login = |addr| async move {
        post_json(
            addr,
            "/login",
            &json!({"username": "erin", "password": password}),
            &[],
        )
        .await
        .json()
    };
    let revoked = login(gate.addr).await;
    let kept = login(gate.addr).await;
    let revoked_access = revoked["access_token"].as_str().unwrap().to_string();
    let revoked_refresh = revoked["refresh_token"].as_str().unwrap().to_string();
    let kept_access = kept["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        post_with_token(gate.addr, "/logout", &revoked_access)
            .await
            .status,
        StatusCode::OK
    );
    // A rotated refresh token is revoked on its own; its reuse must still be caught after the restart.
    let kept_refresh = kept["refresh_token"].as_str().unwrap().to_string();
    let rotated = post_with_token(gate.addr, "/refresh", &kept_refresh).await;
    assert_eq!(rotated.status, StatusCode::OK);
    gate.stop().await;

    let gate = Gate::start(&config).await;
    let r = get_with_token(gate.addr, "/api/x", &revoked_access).await;
    assert_eq!(
        (r.status, r.msg()),
        (
            StatusCode::UNAUTHORIZED,
            "Token has been revoked".to_string()
        )
    );
    assert_eq!(
        post_with_token(gate.addr, "/refresh", &revoked_refresh)
            .await
            .msg(),
        "Token has been revoked"
    );
    assert_eq!(
        get_with_token(gate.addr, "/api/x", &kept_access)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post_with_token(gate.addr, "/refresh", &kept_refresh)
            .await
            .msg(),
        "Token has been revoked"
    );
    assert_eq!(
        get_with_token(gate.addr, "/api/x", &kept_access)
            .await
            .msg(),
        "Token has been revoked",
        "reuse after the restart revoked the session"
    );
    // The user can still log in.
    assert_eq!(
        post_json(gate.addr, "/login", &creds, &[]).await.status,
        StatusCode::OK
    );
    gate.stop().await;
}

#[tokio::test]
async fn usernames_are_one_user_whatever_their_case_width_or_composition() {
    let s = Setup::new().await;
    let addr = s.addr();
    let password = "a perfectly fine password";
    let r = post_json(
        addr,
        "/register",
        &json!({"username": "Amélie", "password": password}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = post_json(
        addr,
        "/login",
        &json!({"username": "Amélie", "password": password}),
        &[],
    )
    .await;
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let seen = get_with_token(addr, "/api/me", &access).await.json();
    assert_eq!(
        seen["headers"]["x-auth-username"],
        json!(["Amélie"]),
        "sent as UTF-8"
    );
    for twin in ["amélie", "AMÉLIE", "Ame\u{301}lie", "Ａｍéｌｉｅ"] {
        let r = post_json(
            addr,
            "/register",
            &json!({"username": twin, "password": password}),
            &[],
        )
        .await;
        assert_eq!(
            (r.status, r.msg()),
            (StatusCode::CONFLICT, "Username already exists".to_string()),
            "{twin}"
        );
        let r = post_json(
            addr,
            "/login",
            &json!({"username": twin, "password": password}),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{twin} logs in as the same user");
    }
}

#[tokio::test]
async fn the_auth_prefix_moves_the_endpoints() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&upstream.url(), &dir.path().join("a.db"), "")
        .replace("[server]\n", "[server]\nauth_prefix = \"/auth\"\n");
    let gate = Gate::start(&config).await;
    let creds = json!({"username": "frank", "password": "a perfectly fine password"});
    assert_eq!(
        post_json(gate.addr, "/auth/register", &creds, &[])
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        post_json(gate.addr, "/auth/login", &creds, &[])
            .await
            .status,
        StatusCode::OK
    );
    // Without the prefix, /login is just another path: it needs a token and is the app's.
    assert_eq!(
        post_json(gate.addr, "/login", &creds, &[]).await.msg(),
        "Missing Authorization Header"
    );
    gate.stop().await;
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user_and_no_one_elses() {
    let s = Setup::new().await;
    let addr = s.addr();
    let (phone, phone_refresh) = s.login("gina").await;
    let (laptop, _) = s.login("gina").await;
    let (old_tablet, _) = s.login("gina").await;
    let (other_user, _) = s.login("hank").await;
    assert_eq!(
        post_with_token(addr, "/logout", &old_tablet).await.status,
        StatusCode::OK
    );

    let r = post_with_token(addr, "/logout-all", &laptop).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json()["sessions_revoked"],
        2,
        "the tablet was logged out already"
    );
    for token in [&phone, &laptop] {
        assert_eq!(
            get_with_token(addr, "/api/x", token).await.msg(),
            "Token has been revoked"
        );
    }
    assert_eq!(
        post_with_token(addr, "/refresh", &phone_refresh)
            .await
            .msg(),
        "Token has been revoked"
    );
    assert_eq!(
        get_with_token(addr, "/api/x", &other_user).await.status,
        StatusCode::OK
    );
    // Logging in again, even within the same second, gives a working session.
    let (fresh, _) = s.login("gina").await;
    assert_eq!(
        get_with_token(addr, "/api/x", &fresh).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post_with_token(addr, "/logout-all", &phone_refresh)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn changing_the_password_revokes_every_other_session() {
    let s = Setup::new().await;
    let addr = s.addr();
    let (here, _) = s.login("ivy").await;
    let (elsewhere, _) = s.login("ivy").await;
    let auth = format!("Bearer {here}");
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});

    let r = post_json(
        addr,
        "/password",
        &change("not it", "a brand new password"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Wrong password")
    );
    let r = post_json(
        addr,
        "/password",
        &change("a perfectly fine password", "short"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::BAD_REQUEST, "Password must be at least 8 bytes")
    );
    assert_eq!(
        get_with_token(addr, "/api/x", &elsewhere).await.status,
        StatusCode::OK,
        "failed changes revoke nothing"
    );

    let r = post_json(
        addr,
        "/password",
        &change("a perfectly fine password", "a brand new password"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["sessions_revoked"].clone()),
        (StatusCode::OK, json!(1))
    );
    assert_eq!(
        get_with_token(addr, "/api/x", &here).await.status,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        get_with_token(addr, "/api/x", &elsewhere).await.msg(),
        "Token has been revoked"
    );

    let old = post_json(
        addr,
        "/login",
        &json!({"username": "ivy", "password": "a perfectly fine password"}),
        &[],
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = post_json(
        addr,
        "/login",
        &json!({"username": "ivy", "password": "a brand new password"}),
        &[],
    )
    .await;
    assert_eq!(new.status, StatusCode::OK);
}

/// The secret is rotated without logging anyone out: list the new key first, keep the old one
/// until the tokens it signed have expired, then remove it.
#[tokio::test]
async fn signing_keys_rotate_without_logging_anyone_out() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let single = config_text(&upstream.url(), &dir.path().join("k.db"), "");
    let new_key = "a-brand-new-signing-secret-0123456789-abcdefgh";
    let keys = |with_old: bool| {
        let old = if with_old {
            format!("[[tokens.keys]]\nsecret = \"{SECRET}\"\n")
        } else {
            String::new()
        };
        single.replace(
            &format!("secret = \"{SECRET}\"\n"),
            &format!("[[tokens.keys]]\nkid = \"2026-11\"\nsecret = \"{new_key}\"\n{old}"),
        )
    };

    let gate = Gate::start(&single).await;
    let (before, _) = Setup::login_at(gate.addr, "jo").await;
    gate.stop().await;

    let gate = Gate::start(&keys(true)).await;
    assert_eq!(
        get_with_token(gate.addr, "/api/x", &before).await.status,
        StatusCode::OK,
        "old tokens still verify"
    );
    let (after, _) = Setup::login_at(gate.addr, "jo").await;
    assert_eq!(
        jsonwebtoken::decode_header(&after).unwrap().kid.as_deref(),
        Some("2026-11")
    );
    gate.stop().await;

    let gate = Gate::start(&keys(false)).await;
    assert_eq!(
        get_with_token(gate.addr, "/api/x", &after).await.status,
        StatusCode::OK
    );
    let r = get_with_token(gate.addr, "/api/x", &before).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Signature verification failed")
    );
    gate.stop().await;
}
