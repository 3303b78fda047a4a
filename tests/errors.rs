//! Every refusal has its status, Flask-JWT-Extended's message, and (for token failures) an
//! RFC 6750 `WWW-Authenticate` header; bad input to the auth endpoints gets a clear JSON 4xx.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use support::*;

const INVALID_TOKEN: &str = "Bearer realm=\"authgate\", error=\"invalid_token\"";

#[tokio::test]
async fn authorization_header_problems() {
    let s = Setup::new().await;
    let addr = s.addr();
    let (access, _) = s.login("alice").await;
    let bad_header = "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'";
    let cases = [
        (
            None,
            StatusCode::UNAUTHORIZED,
            "Missing Authorization Header",
        ),
        (
            Some(format!("Basic {access}")),
            StatusCode::UNAUTHORIZED,
            "Missing 'Bearer' type in 'Authorization' header. Expected 'Authorization: Bearer <JWT>'",
        ),
        (
            Some(format!("Bearer {access} extra")),
            StatusCode::UNAUTHORIZED,
            bad_header,
        ),
        (
            Some("Bearer".to_string()),
            StatusCode::UNAUTHORIZED,
            bad_header,
        ),
        (
            Some(format!("Bearer {}", "a".repeat(9000))),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Authorization header is too large",
        ),
    ];
    for (authorization, status, msg) in cases {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        let r = get(addr, "/api/x", &headers).await;
        assert_eq!(
            (r.status, r.msg().as_str()),
            (status, msg),
            "{authorization:?}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = get(addr, "/api/x", &[]).await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"authgate\"")
    );
    let r = get(addr, "/api/x", &[("authorization", "Basic x")]).await;
    assert_eq!(r.header("www-authenticate"), Some(INVALID_TOKEN));
    assert!(s.upstream.seen().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn token_problems_name_the_reason() {
    let s = Setup::new().await;
    let addr = s.addr();
    let (access, refresh) = s.login("alice").await;
    let claims = payload(&access);

    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 10);
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!("someone-else");
    let parts: Vec<&str> = access.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(tampered_claims.to_string()),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-sufficient-length-0123456789"),
    )
    .unwrap();

    let cases = [
        (sign(&expired), "Token has expired"),
        (tampered, "Signature verification failed"),
        (other_key, "Signature verification failed"),
        (refresh.clone(), "Only non-refresh tokens are allowed"),
        (alg_none, "The specified alg value is not allowed"),
        (hs512, "The specified alg value is not allowed"),
        ("not.a.token".to_string(), "Invalid token"),
        ("garbage".to_string(), "Invalid token"),
    ];
    for (token, msg) in cases {
        let r = get_with_token(addr, "/api/x", &token).await;
        assert_eq!(
            (r.status, r.msg().as_str()),
            (StatusCode::UNAUTHORIZED, msg),
            "{token}"
        );
        assert_eq!(r.header("www-authenticate"), Some(INVALID_TOKEN));
    }

    let r = post_with_token(addr, "/refresh", &access).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Only refresh tokens are allowed")
    );

    assert_eq!(
        post_with_token(addr, "/logout", &access).await.status,
        StatusCode::OK
    );
    let r = get_with_token(addr, "/api/x", &access).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Token has been revoked")
    );
    assert_eq!(r.header("www-authenticate"), Some(INVALID_TOKEN));
    assert!(
        s.upstream.seen().is_empty(),
        "no refused token was forwarded"
    );
}

#[tokio::test]
async fn register_and_login_refuse_bad_input_clearly() {
    let s = Setup::new().await;
    let addr = s.addr();
    let ok_password = "a perfectly fine password";
    let cases = [
        (
            json!({"password": ok_password}),
            "Missing \"username\" in JSON body",
        ),
        (
            json!({"username": "x"}),
            "Missing \"password\" in JSON body",
        ),
        (
            json!({"username": 5, "password": ok_password}),
            "\"username\" must be a string",
        ),
        (
            json!({"username": "x", "password": ["a"]}),
            "\"password\" must be a string",
        ),
        (
            json!(["username", "password"]),
            "Request body must be a JSON object",
        ),
        (
            json!({"username": "", "password": ok_password}),
            "Username must not be empty",
        ),
        (
            json!({"username": "x".repeat(65), "password": ok_password}),
            "Username must be at most 64 characters",
        ),
        (
            json!({"username": "a\u{7}b", "password": ok_password}),
            "Username must not contain control characters",
        ),
        (
            json!({"username": "x", "password": "short"}),
            "Password must be at least 8 bytes",
        ),
        (
            json!({"username": "x", "password": "p".repeat(1025)}),
            "Password must be at most 1024 bytes",
        ),
    ];
    for (body, msg) in cases {
        let r = post_json(addr, "/register", &body, &[]).await;
        assert_eq!(
            (r.status, r.msg().as_str()),
            (StatusCode::BAD_REQUEST, msg),
            "{body}"
        );
    }

    let malformed = send(
        addr,
        request(
            "POST",
            "/register",
            &[("content-type", "application/json")],
            "{\"username\":",
        ),
    )
    .await;
    assert_eq!(
        (malformed.status, malformed.msg().as_str()),
        (StatusCode::BAD_REQUEST, "Request body must be valid JSON")
    );
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = send(
        addr,
        request(
            "POST",
            "/login",
            &[("content-type", "application/json")],
            nested,
        ),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "deeply nested JSON is refused, not a stack overflow"
    );

    let form = send(
        addr,
        request("POST", "/register", &[("content-type", "text/plain")], "{}"),
    )
    .await;
    assert_eq!(
        (form.status, form.msg().as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json"
        )
    );

    let huge = Bytes::from(vec![b' '; 70 * 1024]);
    let r = send(
        addr,
        request(
            "POST",
            "/register",
            &[("content-type", "application/json")],
            huge,
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
    );

    let r = get(addr, "/login", &[]).await;
    assert_eq!(
        (r.status, r.header("allow")),
        (StatusCode::METHOD_NOT_ALLOWED, Some("POST"))
    );

    let creds = json!({"username": "alice", "password": ok_password});
    assert_eq!(
        post_json(addr, "/register", &creds, &[]).await.status,
        StatusCode::CREATED
    );
    let r = post_json(addr, "/register", &creds, &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::CONFLICT, "Username already exists")
    );
}

/// A body larger than the limit, sent chunked with no Content-Length, is cut off while reading.
#[tokio::test]
async fn an_oversized_chunked_body_is_refused_without_reading_it_all() {
    let s = Setup::new().await;
    let chunk = format!("{:x}\r\n{}\r\n", 40_000, " ".repeat(40_000));
    let raw = format!(
        "POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    let answer = send_raw(s.addr(), raw.as_bytes()).await;
    assert_eq!(raw_status(&answer), 413, "{answer}");
}

#[tokio::test]
async fn login_failures_look_the_same_for_unknown_users_and_wrong_passwords() {
    let s = Setup::new().await;
    let addr = s.addr();
    s.login("alice").await;
    let wrong_password = post_json(
        addr,
        "/login",
        &json!({"username": "alice", "password": "not the password"}),
        &[],
    )
    .await;
    let unknown_user = post_json(
        addr,
        "/login",
        &json!({"username": "nobody", "password": "not the password"}),
        &[],
    )
    .await;
    let huge_password = post_json(
        addr,
        "/login",
        &json!({"username": "alice", "password": "p".repeat(50_000)}),
        &[],
    )
    .await;
    for r in [&wrong_password, &unknown_user, &huge_password] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, wrong_password.body, "same body, byte for byte");
        assert_eq!(r.msg(), "Bad username or password");
    }
}

#[tokio::test]
async fn deny_routes_bad_paths_and_health() {
    let s = Setup::new().await;
    let addr = s.addr();
    let (access, _) = s.login("alice").await;
    let r = get_with_token(addr, "/admin/users", &access).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::FORBIDDEN, "Access denied")
    );
    let r = get(addr, "/a%2fb", &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Request path has an encoded '/' or '\\'"
        )
    );
    let r = get(addr, "/healthz", &[]).await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert!(s.upstream.seen().is_empty());
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    // The test config's upstream timeout is 1s; the echo upstream answers /slow after 3s.
    let s = Setup::with_extra("[[routes]]\npath = \"/slow\"\naccess = \"public\"\n").await;
    let r = get(s.addr(), "/slow", &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "Upstream timed out")
    );
}

/// Each connection keeps one timer, set for an earlier request's deadline and moved on when it
/// fires. A slow request on a connection that served a fast one half a timeout earlier must get
/// its own full timeout: neither the earlier deadline nor none at all. One worker, so one pool.
#[tokio::test]
async fn a_request_on_a_reused_connection_gets_its_own_full_timeout() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = "[[routes]]\npath = \"/slow\"\naccess = \"public\"\n";
    let config = one_worker(config_text(
        &upstream.url(),
        &dir.path().join("t.db"),
        routes,
    ));
    let gate = Gate::start(&config).await;
    assert_eq!(
        get(gate.addr, "/public/x", &[]).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let r = get(gate.addr, "/slow", &[]).await;
    let waited = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    // The test config's upstream timeout is 1 s.
    assert!(
        waited >= std::time::Duration::from_secs(1),
        "timed out after {waited:?}"
    );
    assert_eq!(
        get(gate.addr, "/public/x", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        upstream.connections(),
        2,
        "the timed-out connection is not reused"
    );
    gate.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_502() {
    let s = Setup::new().await;
    s.upstream.stop();
    // Let the aborted task drop its listening socket.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = get(s.addr(), "/public/x", &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::BAD_GATEWAY, "Upstream unavailable")
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_with_retry_after() {
    let s = Setup::new().await;
    let addr = s.addr();
    s.login("alice").await;
    s.login("bob").await;
    let wrong = json!({"username": "ALICE", "password": "not the password"});
    for _ in 0..5 {
        assert_eq!(
            post_json(addr, "/login", &wrong, &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The sixth try is refused before the password is even checked, the right one included.
    let right = json!({"username": "alice", "password": "a perfectly fine password"});
    let r = post_json(addr, "/login", &right, &[]).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many login attempts, try again later"
        )
    );
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=12).contains(&retry_after),
        "one attempt every 12 s: {retry_after}"
    );
    let bob = json!({"username": "bob", "password": "a perfectly fine password"});
    assert_eq!(
        post_json(addr, "/login", &bob, &[]).await.status,
        StatusCode::OK,
        "other users are unaffected"
    );
}

/// Behind a trusted proxy every client has an allowance of its own, so one client's guesses do
/// not lock out the others; and a client that is not a trusted proxy cannot escape its own
/// allowance by writing a new `X-Forwarded-For` each time.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_throttled_on_its_own() {
    let creds = json!({"username": "nobody", "password": "whatever password"});
    let login_from = |addr, client: &'static str| {
        let creds = creds.clone();
        async move {
            post_json(addr, "/login", &creds, &[("x-forwarded-for", client)])
                .await
                .status
        }
    };

    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(
        &upstream.url(),
        &dir.path().join("t.db"),
        "[login_limits]\nper_address = 2\n",
    )
    .replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let gate = Gate::start(&config).await;
    for _ in 0..2 {
        assert_eq!(
            login_from(gate.addr, "203.0.113.7").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(gate.addr, "203.0.113.7").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(gate.addr, "198.51.100.2").await,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy keeps its allowance"
    );
    gate.stop().await;

    let s = Setup::with_extra("[login_limits]\nper_address = 2\n").await;
    for client in ["1.1.1.1", "2.2.2.2"] {
        assert_eq!(login_from(s.addr(), client).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_from(s.addr(), "3.3.3.3").await,
        StatusCode::TOO_MANY_REQUESTS,
        "an untrusted peer's X-Forwarded-For is not believed"
    );
}

#[tokio::test]
async fn login_attempts_are_throttled_per_client_address() {
    let s = Setup::with_extra("[login_limits]\nper_address = 3\n").await;
    let creds = json!({"username": "nobody", "password": "whatever password"});
    for _ in 0..3 {
        assert_eq!(
            post_json(s.addr(), "/login", &creds, &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = post_json(
        s.addr(),
        "/login",
        &json!({"username": "someone-else", "password": "x"}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
}
