//! Browsers, at the HTTP level: with `tokens.location` naming cookies, authgate serves sign-in
//! pages, sets Flask-JWT-Extended's four cookies, checks the CSRF double submit on state-changing
//! requests that a cookie authenticates, and sends browsers (never API clients) to sign in.

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::json;
use support::*;

/// A gate whose tokens may come from `locations` (a TOML array), with `extra` appended.
async fn browser_gate(locations: &str, extra: &str) -> Setup {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &upstream.url(),
        &dir.path().join("authgate.db"),
        &format!("[cookies]\nsecure = false\n{extra}"),
    )
    .replace("[tokens]\n", &format!("[tokens]\nlocation = {locations}\n"))
    .replace("[server]\n", "[server]\nauth_prefix = \"/auth\"\n");
    let gate = Gate::start(&text).await;
    Setup {
        upstream,
        gate,
        dir,
    }
}

const NAVIGATION: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const CREDENTIALS: &str = r#"{"username":"ada","password":"a perfectly fine password"}"#;

/// Registers and logs in with JSON; the cookies set.
async fn signed_in(addr: SocketAddr) -> Vec<(String, String)> {
    let body: serde_json::Value = serde_json::from_str(CREDENTIALS).unwrap();
    let r = post_json(addr, "/auth/register", &body, &[]).await;
    assert!(
        r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
        "{r:?}"
    );
    let r = post_json(addr, "/auth/login", &body, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    jar(&r)
}

async fn send_with(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    send(addr, request(method, target, headers, body.to_string())).await
}

#[tokio::test]
async fn a_login_sets_the_four_cookies_with_their_attributes() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let body: serde_json::Value = serde_json::from_str(CREDENTIALS).unwrap();
    post_json(s.addr(), "/auth/register", &body, &[]).await;
    let r = post_json(s.addr(), "/auth/login", &body, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.json()["access_token"].is_string(),
        "headers too: tokens in the body"
    );
    let lines = values(&r.headers, "set-cookie");
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}: {lines:?}"))
            .clone()
    };
    let access = line("access_token_cookie");
    assert!(
        access.contains("; Path=/;") && access.contains("; HttpOnly"),
        "{access}"
    );
    assert!(
        access.contains("Max-Age=900") && access.contains("SameSite=Lax"),
        "{access}"
    );
    assert!(!access.contains("Secure"), "cookies.secure = false here");
    let refresh = line("refresh_token_cookie");
    assert!(
        refresh.contains("HttpOnly") && refresh.contains("Max-Age=2592000"),
        "{refresh}"
    );
    for csrf in ["csrf_access_token", "csrf_refresh_token"] {
        assert!(!line(csrf).contains("HttpOnly"), "page scripts read {csrf}");
    }
    // The csrf claim is Flask-JWT-Extended's, the same in both tokens and in both CSRF cookies.
    let jar = jar(&r);
    let claims = payload(value(&jar, "access_token_cookie"));
    assert_eq!(claims["csrf"], value(&jar, "csrf_access_token"));
    assert_eq!(
        payload(value(&jar, "refresh_token_cookie"))["csrf"],
        value(&jar, "csrf_refresh_token")
    );
}

#[tokio::test]
async fn with_cookies_only_the_body_carries_no_token_and_secure_is_the_default() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&upstream.url(), &dir.path().join("a.db"), "")
        .replace("[tokens]\n", "[tokens]\nlocation = [\"cookies\"]\n");
    let gate = Gate::start(&text).await;
    let body: serde_json::Value = serde_json::from_str(CREDENTIALS).unwrap();
    post_json(gate.addr, "/register", &body, &[]).await;
    let r = post_json(gate.addr, "/login", &body, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("access_token").is_none(), "{:?}", r.json());
    for line in values(&r.headers, "set-cookie") {
        assert!(line.contains("; Secure"), "{line}");
    }
    // Without a cookie the message is Flask-JWT-Extended's for cookies.
    let r = get(gate.addr, "/api/x", &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (
            StatusCode::UNAUTHORIZED,
            "Missing cookie \"access_token_cookie\""
        )
    );
}

#[tokio::test]
async fn a_cookie_authenticates_reads_and_state_changes_need_the_csrf_header() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let cookies = cookie_header(&jar);
    let csrf = value(&jar, "csrf_access_token").to_string();

    let r = send_with(s.addr(), "GET", "/api/x", &[("cookie", &cookies)], "").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let seen = s.upstream.seen().pop().unwrap();
    assert!(seen.headers.get("x-auth-user-id").is_some());
    let forwarded = seen.headers.get("cookie").unwrap().to_str().unwrap();
    assert!(
        forwarded.contains("access_token_cookie="),
        "the app may read it (Flask-JWT-Extended)"
    );
    assert!(
        !forwarded.contains("refresh_token_cookie"),
        "the app never gets the refresh token"
    );

    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let before = s.upstream.seen().len();
        let r = send_with(s.addr(), method, "/api/x", &[("cookie", &cookies)], "").await;
        assert_eq!(
            (r.status, r.msg().as_str()),
            (StatusCode::UNAUTHORIZED, "Missing CSRF token"),
            "{method}"
        );
        let r = send_with(
            s.addr(),
            method,
            "/api/x",
            &[("cookie", &cookies), ("x-csrf-token", "not-the-one")],
            "",
        )
        .await;
        assert_eq!(
            (r.status, r.msg().as_str()),
            (
                StatusCode::UNAUTHORIZED,
                "CSRF double submit tokens do not match"
            ),
            "{method}"
        );
        assert_eq!(
            s.upstream.seen().len(),
            before,
            "{method}: nothing forwarded"
        );
        let r = send_with(
            s.addr(),
            method,
            "/api/x",
            &[("cookie", &cookies), ("x-csrf-token", &csrf)],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {r:?}");
    }
    // OPTIONS and HEAD change nothing: no CSRF token needed.
    let r = send_with(s.addr(), "OPTIONS", "/api/x", &[("cookie", &cookies)], "").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_header_needs_no_csrf_token_and_the_first_location_wins() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let access = value(&jar, "access_token_cookie").to_string();
    let r = post_with_token(s.addr(), "/api/x", &access).await;
    assert_eq!(r.status, StatusCode::OK, "a header is no CSRF risk: {r:?}");

    // Headers first: a bad header with a good cookie is refused by the header's message...
    let cookies = cookie_header(&jar);
    let r = send_with(
        s.addr(),
        "GET",
        "/api/x",
        &[
            ("authorization", "Bearer not.a.token"),
            ("cookie", &cookies),
        ],
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Invalid token"),
        "the header was found first, and it decides"
    );
    // ...and with neither, the message names both places, as Flask-JWT-Extended's does.
    let r = get(s.addr(), "/api/x", &[]).await;
    assert_eq!(
        r.msg(),
        "Missing JWT in headers or cookies (Missing Authorization Header; Missing cookie \"access_token_cookie\")"
    );

    // Cookies first: the cookie is used, and a POST needs its CSRF token even with a header.
    let s = browser_gate(r#"["cookies", "headers"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let cookies = cookie_header(&jar);
    let access = value(&jar, "access_token_cookie").to_string();
    let bearer = format!("Bearer {access}");
    let r = send_with(
        s.addr(),
        "POST",
        "/api/x",
        &[("authorization", &bearer), ("cookie", &cookies)],
        "",
    )
    .await;
    assert_eq!(r.msg(), "Missing CSRF token");
}

#[tokio::test]
async fn browsers_are_sent_to_sign_in_and_api_clients_get_401() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let r = get(s.addr(), "/app/page?tab=2&x=%2F", &[("accept", NAVIGATION)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.header("location"),
        Some("/auth/login?next=%2Fapp%2Fpage%3Ftab%3D2%26x%3D%252F")
    );
    let r = send_with(s.addr(), "HEAD", "/app/page", &[("accept", NAVIGATION)], "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    for accept in [
        "*/*",
        "application/json",
        "application/json, text/html;q=0.5",
    ] {
        let r = get(s.addr(), "/app/page", &[("accept", accept)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{accept}");
    }
    let r = send_with(s.addr(), "POST", "/app/page", &[("accept", NAVIGATION)], "").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "only GET and HEAD are sent on"
    );
    let r = get(s.addr(), "/admin/x", &[("accept", NAVIGATION)]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a deny route is no sign-in matter"
    );

    // An expired or forged cookie is sent to sign in too.
    let expired = sign(&json!({
        "sub": "u", "username": "ada", "jti": "j", "sid": "s", "type": "access",
        "fresh": false, "iat": now() - 100, "nbf": now() - 100, "exp": now() - 50, "iss": "authgate",
    }));
    let cookie = format!("access_token_cookie={expired}");
    let r = get(
        s.addr(),
        "/app/page",
        &[("accept", NAVIGATION), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    // Without cookies configured, browsers get today's 401.
    let plain = Setup::new().await;
    let r = get(plain.addr(), "/app/page", &[("accept", NAVIGATION)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// The form's fields, as a browser posts them.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let pairs: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    pairs.join("&")
}

/// The sign-in page: its form token and the cookie that goes with it.
async fn sign_in_page(addr: SocketAddr, target: &str) -> (Answer, String, String) {
    let r = get(addr, target, &[("accept", NAVIGATION)]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let html = String::from_utf8_lossy(&r.body).to_string();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form carries its token")
        .to_string();
    let cookie = values(&r.headers, "set-cookie")
        .into_iter()
        .find(|l| l.starts_with("authgate_login_csrf="))
        .expect("the form's cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    (r, token, cookie)
}

#[tokio::test]
async fn the_sign_in_page_is_safe_to_show_and_its_form_signs_in_and_sends_you_on() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    signed_in(s.addr()).await;
    let (page, token, cookie) = sign_in_page(s.addr(), "/auth/login?next=/app/page%3Fx%3D1").await;
    for (name, expected) in [
        ("content-type", "text/html; charset=utf-8"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.header(name), Some(expected), "{name}");
    }
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<label for=\"username\">") && html.contains("<label for=\"password\">"));
    assert!(
        html.contains("value=\"/app/page?x=1\""),
        "next is kept in the form"
    );
    assert!(html.contains("/auth/register?next="), "a link to sign up");
    assert!(!html.contains("<script"), "no script");
    let form_cookie = values(&page.headers, "set-cookie").join("\n");
    assert!(form_cookie.contains("SameSite=Strict") && form_cookie.contains("HttpOnly"));

    let post = |fields: String, cookie: String| {
        let addr = s.addr();
        async move {
            send_with(
                addr,
                "POST",
                "/auth/login",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", &cookie),
                ],
                &fields,
            )
            .await
        }
    };
    // A wrong password: the page again, with the message, and the name kept.
    let r = post(
        form(&[
            ("username", "ada"),
            ("password", "wrong password"),
            ("next", "/app/page?x=1"),
            ("csrf_token", &token),
        ]),
        cookie.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let html = String::from_utf8_lossy(&r.body);
    assert!(html.contains("Bad username or password") && html.contains("value=\"ada\""));

    // Right: 303 to next, with the session's cookies.
    let r = post(
        form(&[
            ("username", "ada"),
            ("password", "a perfectly fine password"),
            ("next", "/app/page?x=1"),
            ("csrf_token", &token),
        ]),
        cookie.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.header("location"), Some("/app/page?x=1"));
    let jar = jar(&r);
    let cookies = cookie_header(&jar);
    let r = send_with(
        s.addr(),
        "GET",
        "/app/page?x=1",
        &[("cookie", &cookies)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Login CSRF: another site's form, posting the attacker's credentials, has no form cookie (it is
/// `SameSite=Strict`) or not the one its token names.
#[tokio::test]
async fn a_sign_in_form_from_another_site_is_refused() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    signed_in(s.addr()).await;
    let (_, token, cookie) = sign_in_page(s.addr(), "/auth/login").await;
    let fields = |token: &str| {
        form(&[
            ("username", "ada"),
            ("password", "a perfectly fine password"),
            ("csrf_token", token),
        ])
    };
    for (body, cookie) in [
        (fields(&token), None),
        (fields("made-up"), Some(cookie.clone())),
        (fields(""), Some("authgate_login_csrf=".to_string())),
        (
            form(&[
                ("username", "ada"),
                ("password", "a perfectly fine password"),
            ]),
            Some(cookie),
        ),
    ] {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(cookie) = &cookie {
            headers.push(("cookie", cookie));
        }
        let r = send_with(s.addr(), "POST", "/auth/login", &headers, &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body} {cookie:?}");
        assert!(
            values(&r.headers, "set-cookie")
                .iter()
                .all(|c| !c.starts_with("access_token_cookie"))
        );
    }
}

#[tokio::test]
async fn next_never_sends_anyone_off_site() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    signed_in(s.addr()).await;
    for next in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "http:evil.example",
    ] {
        let (_, token, cookie) = sign_in_page(s.addr(), "/auth/login").await;
        let r = send_with(
            s.addr(),
            "POST",
            "/auth/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie),
            ],
            &form(&[
                ("username", "ada"),
                ("password", "a perfectly fine password"),
                ("next", next),
                ("csrf_token", &token),
            ]),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(r.header("location"), Some("/"), "{next:?}");
        // The same in the page's query, encoded.
        let page = get(
            s.addr(),
            &format!(
                "/auth/login?next={}",
                form(&[("", next)]).trim_start_matches('=')
            ),
            &[],
        )
        .await;
        let html = String::from_utf8_lossy(&page.body);
        assert!(
            html.contains("name=\"next\" value=\"/\""),
            "{next:?}: {html}"
        );
    }
}

#[tokio::test]
async fn the_sign_up_form_makes_the_account_and_sends_you_to_sign_in() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let (_, token, cookie) = sign_in_page(s.addr(), "/auth/register?next=/app").await;
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/register",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &cookie),
        ],
        &form(&[
            ("username", "grace"),
            ("password", "a perfectly fine password"),
            ("next", "/app"),
            ("csrf_token", &token),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("/auth/login?registered=1&next=%2Fapp")
    );
    let page = get(s.addr(), "/auth/login?registered=1&next=%2Fapp", &[]).await;
    assert!(String::from_utf8_lossy(&page.body).contains("Account created"));
}

#[tokio::test]
async fn with_registration_switched_off_sign_up_is_refused_everywhere() {
    let s = browser_gate(
        r#"["headers", "cookies"]"#,
        "[accounts]\nallow_registration = false\n",
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(CREDENTIALS).unwrap();
    let r = post_json(s.addr(), "/auth/register", &body, &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::FORBIDDEN, "Registration is disabled")
    );
    let r = get(s.addr(), "/auth/register", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/register",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form(&[("username", "x"), ("password", "a perfectly fine password")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = get(s.addr(), "/auth/login", &[]).await;
    assert!(
        !String::from_utf8_lossy(&page.body).contains("/auth/register"),
        "no sign-up link"
    );
}

#[tokio::test]
async fn logout_with_cookies_needs_csrf_revokes_and_clears_the_cookies() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let cookies = cookie_header(&jar);
    let csrf = value(&jar, "csrf_access_token").to_string();
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/logout",
        &[("cookie", &cookies)],
        "",
    )
    .await;
    assert_eq!(r.msg(), "Missing CSRF token");
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/logout",
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let cleared = values(&r.headers, "set-cookie");
    for name in [
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "csrf_refresh_token",
    ] {
        assert!(
            cleared
                .iter()
                .any(|l| l.starts_with(&format!("{name}=;")) && l.contains("Max-Age=0")),
            "{name}: {cleared:?}"
        );
    }
    let r = send_with(s.addr(), "GET", "/api/x", &[("cookie", &cookies)], "").await;
    assert_eq!(r.msg(), "Token has been revoked");

    // The same cookies again (a second tab): refused, and cleared all the same, so that the
    // browser stops sending a session that is over. A bearer header's refusal clears nothing.
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/logout",
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.msg(), "Token has been revoked");
    assert_eq!(values(&r.headers, "set-cookie").len(), 4, "{r:?}");
    let bearer = format!("Bearer {}", value(&jar, "access_token_cookie"));
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/logout",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.msg(), "Token has been revoked");
    assert!(values(&r.headers, "set-cookie").is_empty(), "{r:?}");

    // The sign-out page's form does the same with its own field, then goes to sign in.
    let jar = signed_in(s.addr()).await;
    let cookies = cookie_header(&jar);
    let page = get(s.addr(), "/auth/logout", &[("cookie", &cookies)]).await;
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert!(html.contains("Signed in as <strong>ada</strong>"), "{html}");
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/logout",
        &[
            ("cookie", &cookies),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("csrf_token", "forged")]),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a forged form ends nothing"
    );
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/logout",
        &[
            ("cookie", &cookies),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("csrf_token", &token)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/auth/login"));
    let r = send_with(s.addr(), "GET", "/api/x", &[("cookie", &cookies)], "").await;
    assert_eq!(r.msg(), "Token has been revoked");
}

/// Session fixation: cookies an attacker planted before the sign-in are replaced by a new
/// session's.
#[tokio::test]
async fn a_sign_in_replaces_whatever_session_cookies_were_there() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let planted = signed_in(s.addr()).await;
    let jar = signed_in(s.addr()).await;
    let old = payload(value(&planted, "access_token_cookie"));
    let new = payload(value(&jar, "access_token_cookie"));
    assert_ne!(old["sid"], new["sid"], "a new session at every sign-in");
    assert_ne!(old["csrf"], new["csrf"]);
}

#[tokio::test]
async fn refresh_by_cookie_needs_the_refresh_csrf_and_sets_new_cookies() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let cookies = cookie_header(&jar);
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/refresh",
        &[("cookie", &cookies)],
        "",
    )
    .await;
    assert_eq!(r.msg(), "Missing CSRF token");
    let csrf = value(&jar, "csrf_refresh_token").to_string();
    let r = send_with(
        s.addr(),
        "POST",
        "/auth/refresh",
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let fresh = self::jar(&r);
    assert_ne!(
        value(&fresh, "refresh_token_cookie"),
        value(&jar, "refresh_token_cookie")
    );
}

#[tokio::test]
async fn an_expired_access_cookie_is_renewed_in_line_by_the_refresh_cookie() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let stale = expired_access(&jar);
    let cookies = with_access(&jar, &stale);
    let r = send_with(
        s.addr(),
        "GET",
        "/app/page",
        &[("cookie", &cookies), ("accept", NAVIGATION)],
        "",
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "forwarded, not sent to sign in: {r:?}"
    );
    let seen = s.upstream.seen().pop().unwrap();
    assert!(seen.headers.get("x-auth-user-id").is_some());
    let forwarded = seen
        .headers
        .get("cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let renewed = self::jar(&r);
    let new_access = value(&renewed, "access_token_cookie");
    assert!(
        forwarded.contains(&format!("access_token_cookie={new_access}")),
        "{forwarded}"
    );
    assert!(
        !forwarded.contains(&stale),
        "the app gets the new token, not the expired one"
    );
    assert!(!forwarded.contains("refresh_token_cookie"));
    assert_ne!(
        value(&renewed, "refresh_token_cookie"),
        value(&jar, "refresh_token_cookie")
    );
    assert_eq!(
        value(&renewed, "csrf_access_token"),
        value(&jar, "csrf_access_token"),
        "the session keeps its CSRF value, so a page's scripts keep working"
    );

    // No access cookie at all: the same.
    let mut only_refresh = renewed.clone();
    only_refresh.retain(|(n, _)| n != "access_token_cookie");
    let r = send_with(
        s.addr(),
        "GET",
        "/app/page",
        &[("cookie", &cookie_header(&only_refresh))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // A state-changing request renewed in line still needs its CSRF token.
    let renewed = self::jar(&r);
    let cookies = with_access(&renewed, &expired_access(&renewed));
    let r = send_with(s.addr(), "POST", "/app/page", &[("cookie", &cookies)], "").await;
    assert_eq!(r.msg(), "Missing CSRF token");
    let csrf = value(&renewed, "csrf_access_token").to_string();
    let r = send_with(
        s.addr(),
        "POST",
        "/app/page",
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

/// A silent refresh on a route whose roles the user lacks: 403, and the refusal carries the
/// renewed cookies. Without them the browser would keep the refresh token just rotated, and its
/// next request after the grace would end the session as a reuse.
#[tokio::test]
async fn a_renewed_session_refused_by_a_role_rule_keeps_its_new_cookies() {
    let roles = "[[routes]]\npath = \"/billing/**\"\nroles = [\"billing\"]\n";
    let s = browser_gate(r#"["headers", "cookies"]"#, roles).await;
    let jar = signed_in(s.addr()).await;
    let cookies = with_access(&jar, &expired_access(&jar));
    let seen = s.upstream.seen().len();
    let r = send_with(
        s.addr(),
        "GET",
        "/billing/invoices",
        &[("cookie", &cookies), ("accept", NAVIGATION)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.msg(), "Access denied");
    assert_eq!(s.upstream.seen().len(), seen, "nothing forwarded");
    let renewed = self::jar(&r);
    assert_ne!(
        value(&renewed, "refresh_token_cookie"),
        value(&jar, "refresh_token_cookie"),
        "the rotated refresh token's successor comes with the refusal"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = send_with(
        s.addr(),
        "GET",
        "/app/page",
        &[("cookie", &with_access(&renewed, &expired_access(&renewed)))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the session lives on: {r:?}");
}

/// A page loading ten assets at once, every request with the same expired access cookie and the
/// same refresh cookie: one rotates, the others fall within the grace. All are forwarded, and
/// the session lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_requests_at_once_with_one_expired_access_cookie_are_all_forwarded() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let cookies = with_access(&jar, &expired_access(&jar));
    let requests = (0..10).map(|i| {
        let cookies = cookies.clone();
        let addr = s.addr();
        async move {
            send_with(
                addr,
                "GET",
                &format!("/assets/{i}"),
                &[("cookie", &cookies)],
                "",
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut jar = jar.clone();
    for r in &answers {
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        for (name, value) in self::jar(r) {
            jar.retain(|(n, _)| *n != name);
            jar.push((name, value));
        }
    }
    let rotated = answers
        .iter()
        .filter(|r| {
            values(&r.headers, "set-cookie")
                .iter()
                .any(|c| c.starts_with("refresh_token_cookie="))
        })
        .count();
    assert_eq!(rotated, 1, "one new refresh token, not ten chains");
    let r = send_with(
        s.addr(),
        "GET",
        "/after",
        &[("cookie", &cookie_header(&jar))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the session is alive: {r:?}");
}

#[tokio::test]
async fn a_rotated_refresh_token_after_the_grace_revokes_the_session() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &upstream.url(),
        &dir.path().join("g.db"),
        "[cookies]\nsecure = false\n",
    )
    .replace(
        "[tokens]\n",
        "[tokens]\nlocation = [\"headers\", \"cookies\"]\nrefresh_reuse_interval = \"1s\"\n",
    );
    let gate = Gate::start(&text).await;
    let body: serde_json::Value = serde_json::from_str(CREDENTIALS).unwrap();
    post_json(gate.addr, "/register", &body, &[]).await;
    let first = post_json(gate.addr, "/login", &body, &[]).await.json();
    let old = first["refresh_token"].as_str().unwrap().to_string();
    let second = post_with_token(gate.addr, "/refresh", &old).await;
    assert_eq!(second.status, StatusCode::OK);
    let second = second.json();
    // Within the second: an access token, and no new refresh token.
    let racing = post_with_token(gate.addr, "/refresh", &old).await;
    assert_eq!(racing.status, StatusCode::OK, "{racing:?}");
    assert!(racing.json().get("refresh_token").is_none());
    // Past it (rotation times are whole seconds): reuse, and the session is revoked.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let r = post_with_token(gate.addr, "/refresh", &old).await;
    assert_eq!(r.msg(), "Token has been revoked");
    let access = second["access_token"].as_str().unwrap();
    let r = get_with_token(gate.addr, "/api/x", access).await;
    assert_eq!(r.msg(), "Token has been revoked");
}

/// Found by attacking the first version: one cookie with UTF-8 bytes (browsers send them as they
/// are) hid every other cookie, and the user could not even sign in again.
#[tokio::test]
async fn a_cookie_with_bytes_outside_ascii_does_not_hide_the_session() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let mut cookie = b"pref=\xc3\xa9t\xc3\xa9; ".to_vec();
    cookie.extend_from_slice(cookie_header(&jar).as_bytes());
    let mut request = request("GET", "/api/x", &[], "");
    request
        .headers_mut()
        .insert("cookie", http::HeaderValue::from_bytes(&cookie).unwrap());
    let r = send(s.addr(), request).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let seen = s.upstream.seen().pop().unwrap();
    assert!(
        seen.headers["cookie"]
            .as_bytes()
            .starts_with(b"pref=\xc3\xa9t\xc3\xa9")
    );
}

/// Found by attacking the first version: with two access cookies (one tossed in by another
/// site of the domain), authgate checked the first and forwarded both, and an app that keeps the
/// last one acted for another user. Now the app gets exactly the one authgate checked; none
/// when a header authenticated the request.
#[tokio::test]
async fn the_app_gets_only_the_access_cookie_authgate_checked() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let ada = signed_in(s.addr()).await;
    let ada_access = value(&ada, "access_token_cookie").to_string();
    let other = {
        let body = json!({"username": "bob", "password": "a perfectly fine password"});
        post_json(s.addr(), "/auth/register", &body, &[]).await;
        jar(&post_json(s.addr(), "/auth/login", &body, &[]).await)
    };
    let bob_access = value(&other, "access_token_cookie").to_string();
    let cookies = format!("access_token_cookie={ada_access}; access_token_cookie={bob_access}");
    let r = send_with(s.addr(), "GET", "/api/x", &[("cookie", &cookies)], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = s.upstream.seen().pop().unwrap();
    assert_eq!(seen.headers["x-auth-username"], "ada");
    assert_eq!(
        seen.headers["cookie"],
        format!("access_token_cookie={ada_access}").as_str()
    );

    let bearer = format!("Bearer {bob_access}");
    let r = send_with(
        s.addr(),
        "GET",
        "/api/x",
        &[
            ("authorization", &bearer),
            (
                "cookie",
                &format!("access_token_cookie={ada_access}; theme=dark"),
            ),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = s.upstream.seen().pop().unwrap();
    assert_eq!(seen.headers["x-auth-username"], "bob");
    assert_eq!(
        seen.headers["cookie"], "theme=dark",
        "not ada's cookie under bob's name"
    );

    // However a client writes the refresh cookie's name, the app never gets it.
    let refresh = value(&ada, "refresh_token_cookie");
    for sneaky in [
        format!("refresh_token_cookie ={refresh}"),
        format!("x=1, refresh_token_cookie={refresh}"),
        format!("REFRESH_TOKEN_COOKIE={refresh}"),
    ] {
        let r = send_with(s.addr(), "GET", "/public/x", &[("cookie", &sneaky)], "").await;
        assert_eq!(r.status, StatusCode::OK);
        let seen = s.upstream.seen().pop().unwrap();
        let forwarded = seen
            .headers
            .get("cookie")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            forwarded.as_deref().is_none_or(|c| !c.contains(refresh)),
            "{sneaky}: {forwarded:?}"
        );
    }
}

/// Found by attacking the first version: an expired bearer header with someone's refresh
/// cookie was refreshed in line, and forwarded with the header's token under the cookie's user.
/// The header came first, so it decides.
#[tokio::test]
async fn an_expired_header_token_is_refused_not_refreshed_by_a_cookie() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let expired = expired_access(&jar);
    let bearer = format!("Bearer {expired}");
    let refresh_only = format!(
        "refresh_token_cookie={}",
        value(&jar, "refresh_token_cookie")
    );
    let r = send_with(
        s.addr(),
        "GET",
        "/api/x",
        &[("authorization", &bearer), ("cookie", &refresh_only)],
        "",
    )
    .await;
    assert_eq!(r.msg(), "Token has expired");
}

/// Found by attacking the first version: the new session's cookies were set on an app answer
/// that said `Cache-Control: public`, for a shared cache to hand to the next user.
#[tokio::test]
async fn an_answer_that_carries_new_session_cookies_is_not_for_caches() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let refresh_only = format!(
        "refresh_token_cookie={}",
        value(&jar, "refresh_token_cookie")
    );
    let r = send_with(s.addr(), "GET", "/api/x", &[("cookie", &refresh_only)], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        values(&r.headers, "set-cookie")
            .iter()
            .any(|c| c.starts_with("access_token_cookie="))
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

/// Found by attacking the first version: TRACE echoed the HttpOnly access cookie back to a
/// page's script (cross-site tracing), and WebDAV's methods went through on a cookie alone.
#[tokio::test]
async fn trace_is_refused_and_every_unsafe_method_needs_the_csrf_token() {
    let s = browser_gate(r#"["headers", "cookies"]"#, "").await;
    let jar = signed_in(s.addr()).await;
    let cookies = cookie_header(&jar);
    for method in ["TRACE", "TRACK"] {
        let r = send_with(s.addr(), method, "/api/x", &[("cookie", &cookies)], "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    for method in ["PROPPATCH", "MOVE", "LOCK", "PURGE"] {
        let r = send_with(s.addr(), method, "/api/x", &[("cookie", &cookies)], "").await;
        assert_eq!(r.msg(), "Missing CSRF token", "{method}");
    }
    assert!(s.upstream.seen().is_empty());
}

#[tokio::test]
async fn the_pages_take_a_title_a_product_name_and_a_template_of_ones_own() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("login.html");
    std::fs::write(
        &template,
        "<!doctype html><title>{{title}}</title><header>{{product}} &mdash; ours</header>{{content}}",
    )
    .unwrap();
    let extra = format!(
        "[login_page]\ntitle = \"Welcome <back>\"\nproduct = \"Acme & Co\"\ntemplate = \"{}\"\n",
        template.display()
    );
    let s = browser_gate(r#"["headers", "cookies"]"#, &extra).await;
    let page = get(s.addr(), "/auth/login", &[]).await;
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.starts_with("<!doctype html><title>Welcome &lt;back&gt;</title>"),
        "{html}"
    );
    assert!(
        html.contains("<header>Acme &amp; Co &mdash; ours</header>"),
        "{html}"
    );
    assert!(
        html.contains("name=\"password\""),
        "the form goes where {{content}} is"
    );

    // A template without {{content}} is refused at start-up, with the reason.
    std::fs::write(&template, "<html>no form here</html>").unwrap();
    let upstream = Upstream::start().await;
    let text = config_text(&upstream.url(), &dir.path().join("x.db"), &extra)
        .replace("[tokens]\n", "[tokens]\nlocation = [\"cookies\"]\n");
    let problems = authgate::Config::parse(&text).unwrap_err().to_string();
    assert!(problems.contains("must contain {{content}}"), "{problems}");
}

/// With `Secure` cookies the form's cookie is a `__Host-` cookie: no `Domain`, `Path=/`, set by
/// this host over HTTPS only, so a sibling subdomain or a network attacker cannot toss one in to
/// match a form of their own (the login CSRF of SECURITY.md's row 135).
#[tokio::test]
async fn with_secure_cookies_the_form_cookie_is_this_hosts_alone() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = tokens_in_cookies_too(config_text(
        &upstream.url(),
        &dir.path().join("h.db"),
        "[cookies]\ndomain = \"example.com\"\n",
    ))
    .replace("[server]\n", "[server]\nauth_prefix = \"/auth\"\n");
    let gate = Gate::start(&text).await;
    signed_in(gate.addr).await;
    let page = get(gate.addr, "/auth/login", &[]).await;
    let set = values(&page.headers, "set-cookie");
    let line = set
        .iter()
        .find(|l| l.starts_with("__Host-authgate_login_csrf="))
        .unwrap_or_else(|| panic!("{set:?}"));
    assert!(
        line.contains("; Path=/;") && line.contains("; Secure"),
        "{line}"
    );
    assert!(!line.contains("Domain"), "{line}");
    let html = String::from_utf8_lossy(&page.body).to_string();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let post = |cookie: String| {
        let token = token.clone();
        async move {
            send_with(
                gate.addr,
                "POST",
                "/auth/login",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", &cookie),
                ],
                &form(&[
                    ("username", "ada"),
                    ("password", "a perfectly fine password"),
                    ("csrf_token", &token),
                ]),
            )
            .await
        }
    };
    // The plain name, as a tossed cookie would be, does not count.
    let r = post(format!("authgate_login_csrf={token}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post(format!("__Host-authgate_login_csrf={token}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
}
