//! The ways around the rules that the security review of 1d80726 found (issue 13), each tried again
//! against the real gate in front of an app that does what real apps do: answers `101` to any
//! upgrade and keeps reading, upper-cases methods, honours method overrides, sends a body where
//! none belongs. Every test here failed on 1d80726.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An app that answers every request with `101 Switching Protocols` to whatever the request asked
/// for (h2c when it asked for nothing, as hypercorn does for h2c) and then keeps reading requests
/// on the same connection, as an app would inside the tunnel. It records every request head.
async fn app_that_switches_to_anything(accept: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = heads.clone();
    let (port, _) = raw_upstream(move |mut stream, _| {
        let heads = recorded.clone();
        async move {
            while let Some(head) = read_request_head(&mut stream).await {
                let protocol = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("upgrade:").map(|p| p.trim().to_string()))
                    .unwrap_or_else(|| "h2c".into());
                heads.lock().unwrap().push(head);
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\
                     Sec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (port, heads)
}

/// Sends `first`, reads its answer, then sends `second` on the same connection and reads what
/// comes within two seconds. Returns both as text.
async fn two_on_one_connection(
    addr: std::net::SocketAddr,
    first: &str,
    second: &str,
) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer to the upgrade request")
        .unwrap_or(0);
    let first_answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    let _ = stream.write_all(second.as_bytes()).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    (first_answer, String::from_utf8_lossy(&rest).into_owned())
}

/// The review's first finding: `Upgrade: h2c` (or any protocol but a well-formed WebSocket
/// handshake) was forwarded, and the app's `101` joined the client to the app, where it spoke to
/// `deny` routes as any user. Now the request reaches the app without its upgrade, a `101` to it
/// is a 502, and whatever the client sends next is an ordinary request that meets the rules.
#[tokio::test]
async fn an_upgrade_to_anything_but_websocket_never_opens_a_tunnel_to_the_app() {
    let (port, heads) = app_that_switches_to_anything("").await;
    let (gate, _dir) = gate_in_front_of(port).await;
    let (access, _) = Setup::login_at(gate.addr, "alice").await;
    let bearer = format!("Authorization: Bearer {access}\r\n");
    let smuggled = "GET /admin/delete-everything HTTP/1.1\r\nHost: app\r\nX-Auth-User-Id: 1\r\n\
                    X-Auth-Username: admin\r\nConnection: close\r\n\r\n";
    let asks = [
        // The review's request, on a public route and on an authenticated one.
        (
            "GET /public/x",
            "",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        (
            "GET /api/x",
            bearer.as_str(),
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        // HTTP2-Settings not named in Connection; another protocol; WebSocket on the wrong
        // method or version, or without its key.
        (
            "GET /public/x",
            "",
            "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        (
            "GET /public/x",
            "",
            "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n",
        ),
        (
            "POST /public/x",
            "",
            "Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        ),
        (
            "GET /public/x",
            "",
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        ),
        (
            "GET /public/x",
            "",
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        ),
    ];
    for (line, auth, upgrade) in asks {
        let before = heads.lock().unwrap().len();
        let first = format!("{line} HTTP/1.1\r\nHost: app\r\n{auth}{upgrade}\r\n");
        let (answer, after) = two_on_one_connection(gate.addr, &first, smuggled).await;
        assert_eq!(raw_status(&answer), 502, "{line} {upgrade:?}: {answer}");
        let seen = heads.lock().unwrap()[before..].to_vec();
        assert_eq!(seen.len(), 1, "{upgrade:?}: the app saw {seen:?}");
        let forwarded = seen[0].to_ascii_lowercase();
        for dropped in ["upgrade:", "http2-settings:", "connection:"] {
            assert!(
                !forwarded.contains(dropped),
                "{upgrade:?} forwarded with {dropped}\n{forwarded}"
            );
        }
        // What followed was read by authgate as a request of its own, and refused by the rules.
        if !after.is_empty() {
            assert_eq!(raw_status(&after), 403, "{upgrade:?}: {after}");
        }
    }
    assert!(
        heads.lock().unwrap().iter().all(|h| !h.contains("/admin/")),
        "a request from inside a tunnel reached the app"
    );
    gate.stop().await;
}

/// A `101` that claims to complete a WebSocket handshake must carry the accept value derived from
/// the client's key: an app that switches without reading the handshake gets no tunnel.
#[tokio::test]
async fn a_websocket_101_without_the_matching_accept_opens_no_tunnel() {
    let (port, heads) = app_that_switches_to_anything("AAAAAAAAAAAAAAAAAAAAAAAAAAA=").await;
    let (gate, _dir) = gate_in_front_of(port).await;
    let first = "GET /public/ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let smuggled = "GET /admin/x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";
    let (answer, _) = two_on_one_connection(gate.addr, first, smuggled).await;
    assert_eq!(raw_status(&answer), 502, "{answer}");
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].to_ascii_lowercase().contains("upgrade: websocket"));
    gate.stop().await;
}

/// The review's second finding: rules compared methods case-sensitively, and `delete` reached a
/// Werkzeug app, which upper-cases methods, as an unauthenticated DELETE.
#[tokio::test]
async fn methods_meet_their_rules_whatever_their_case_and_reach_the_app_upper_cased() {
    let s = Setup::with_extra(
        r#"
[[routes]]
path = "/comments/**"
methods = ["POST", "PUT", "PATCH", "DELETE"]
access = "authenticated"
[[routes]]
path = "/comments/**"
access = "public"
[[routes]]
path = "/things/**"
methods = ["DELETE"]
access = "deny"
[[routes]]
path = "/things/**"
access = "public"
"#,
    )
    .await;
    let (access, _) = s.login("alice").await;
    for method in [
        "delete", "Delete", "dELETE", "DELETE", "put", "patch", "post",
    ] {
        let r = send(s.addr(), request(method, "/comments/7", &[], "")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method}: {r:?}");
        let r = send(s.addr(), request(method, "/things/7", &[], "")).await;
        let expected = if method.eq_ignore_ascii_case("delete") {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(r.status, expected, "{method} on a deny rule: {r:?}");
    }
    assert!(
        s.upstream
            .seen()
            .iter()
            .all(|x| x.method != "DELETE" && !x.target.starts_with("/comments")),
        "{:?}",
        s.upstream.seen()
    );
    // What passes reaches the app with the method the rule was decided on.
    let auth = format!("Bearer {access}");
    let r = send(
        s.addr(),
        request("delete", "/comments/7", &[("authorization", &auth)], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["method"], "DELETE");
    let r = send(s.addr(), request("get", "/comments/7", &[], "")).await;
    assert_eq!(r.json()["method"], "GET");
    s.gate.stop().await;
}

/// The second form of the same bypass: method-override headers turn an allowed POST into a DELETE
/// inside the app, and `X-Original-URL` / `X-Rewrite-URL` into another path. None reaches the app,
/// in any spelling; `X-Real-IP` is authgate's own, like `X-Forwarded-For`.
#[tokio::test]
async fn override_headers_never_reach_the_app_and_x_real_ip_is_authgates() {
    let s = Setup::new().await;
    let forged = [
        ("x-http-method-override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("x-method-override", "PUT"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("x-original-url", "/admin/delete-everything"),
        ("X-Rewrite-URL", "/admin/delete-everything"),
        ("x-real-ip", "10.0.0.1"),
        ("X_Real_IP", "10.0.0.2"),
    ];
    let r = send(s.addr(), request("POST", "/public/comment", &forged, "x")).await;
    assert_eq!(r.status, StatusCode::OK);
    let headers = &r.json()["headers"];
    for (name, _) in forged {
        let key = name.to_ascii_lowercase();
        if key.replace('_', "-") == "x-real-ip" && !key.contains('_') {
            continue;
        }
        assert!(
            headers.get(&key).is_none(),
            "{name} reached the app: {headers}"
        );
    }
    assert_eq!(headers["x-real-ip"], json!(["127.0.0.1"]));
    s.gate.stop().await;
}

/// The review's fourth finding: `" admin "` registered next to `admin`, and the app saw
/// `X-Auth-Username: admin` for it, since HTTP parsers trim header values.
#[tokio::test]
async fn usernames_that_would_reach_the_app_as_another_are_refused_at_registration() {
    let s = Setup::new().await;
    let creds = |name: &str| json!({"username": name, "password": "a perfectly fine password"});
    assert_eq!(
        post_json(s.addr(), "/register", &creds("admin"), &[])
            .await
            .status,
        StatusCode::CREATED
    );
    for (name, message) in [
        (" admin ", "Username must not begin or end with whitespace"),
        ("admin ", "Username must not begin or end with whitespace"),
        ("\tadmin", "Username must not begin or end with whitespace"),
        (
            "admin\u{00A0}",
            "Username must not begin or end with whitespace",
        ),
        (
            "\u{3000}admin",
            "Username must not begin or end with whitespace",
        ),
        (
            "ad\u{200B}min",
            "Username must not contain invisible characters",
        ),
        (
            "\u{FEFF}admin",
            "Username must not contain invisible characters",
        ),
        // Found by attacking the first version of these rules.
        (
            "ad\u{200A}min",
            "Username must not contain invisible characters",
        ),
        (
            "admin\u{2800}",
            "Username must not contain invisible characters",
        ),
        ("admin, other", "Username must not contain a comma"),
        (
            "\u{0301}admin",
            "Username must not begin with a combining mark",
        ),
    ] {
        let r = post_json(s.addr(), "/register", &creds(name), &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name:?}: {r:?}");
        assert_eq!(r.msg(), message, "{name:?}");
        let r = post_json(s.addr(), "/login", &creds(name), &[]).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{name:?} logs in: {r:?}"
        );
    }
    s.gate.stop().await;
}

/// The review's fifth finding: a rule with several `*` in a segment backtracked, and one request
/// with a long run of `-` held a worker (and the health checks queued behind it) for a second;
/// with three stars, for minutes. It is now answered at once, and so is the health check sent
/// alongside it on one worker.
#[tokio::test]
async fn a_long_hostile_path_against_a_starred_rule_does_not_stall_the_gate() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = one_worker(config_text(
        &upstream.url(),
        &dir.path().join("gate.db"),
        r#"
[[routes]]
path = "/assets/*-*-*.js"
access = "public"
[[routes]]
path = "/static/**/a/**/a/**/b"
access = "public"
"#,
    ));
    let gate = Gate::start(&config).await;
    let dashes = "-".repeat(25_000);
    let segments = "/a".repeat(3_000);
    for target in [format!("/assets/{dashes}"), format!("/static{segments}")] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
        let addr = gate.addr;
        let hostile = tokio::spawn(async move { send_raw(addr, raw.as_bytes()).await });
        let health = send_raw(
            gate.addr,
            b"GET /healthz HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(raw_status(&health), 200);
        // send_raw gives up after 10 s: the hostile request is answered (by the default rule).
        assert_eq!(raw_status(&hostile.await.unwrap()), 401);
    }
    let matching =
        format!("GET /assets/{dashes}x-y-z.js HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
    assert_eq!(
        raw_status(&send_raw(gate.addr, matching.as_bytes()).await),
        200
    );
    gate.stop().await;
}

/// The review's sixth finding, first part: `Transfer-Encoding: gzip, chunked` was read as chunked
/// and forwarded as plain chunked, the `gzip` dropped. Codings authgate does not pass on are
/// refused: 501 from the client, 502 from the app.
#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused_both_ways() {
    let s = Setup::new().await;
    for coding in ["gzip, chunked", "chunked, chunked", "deflate,chunked"] {
        let raw = format!(
            "POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), 501, "{coding}: {answer}");
        assert!(
            answer.contains("Transfer-Encoding must be chunked alone"),
            "{answer}"
        );
    }
    assert!(s.upstream.seen().is_empty(), "{:?}", s.upstream.seen());
    s.gate.stop().await;

    let (port, _) = raw_upstream(|mut stream, _| async move {
        while read_request_head(&mut stream).await.is_some() {
            let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;
    assert_eq!(
        get(gate.addr, "/public/x", &[]).await.status,
        StatusCode::BAD_GATEWAY
    );
    gate.stop().await;
}

/// Second part: HTTP/2 lets a client split its cookie over several `cookie` fields; apps read one
/// `Cookie` line (RFC 9113 §8.2.3), so they reach the app joined.
#[tokio::test]
async fn http2_cookie_fields_reach_the_app_as_one_line() {
    let s = Setup::new().await;
    let mut sender = http2_sender(s.addr()).await;
    let request = http::Request::builder()
        .uri("http://gate.test/public/cookies")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["cookie"], json!(["a=1; b=2; c=3"]));
    s.gate.stop().await;
}

/// Third part: `CONNECT`, on a route that allows every method, was forwarded and the client got an
/// empty, closed connection. It is refused, whatever its target.
#[tokio::test]
async fn connect_is_refused_with_405() {
    let s = Setup::new().await;
    for target in ["/public/x", "127.0.0.1:22", "app:443"] {
        let raw = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), 405, "{target}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("allow: get"),
            "{answer}"
        );
    }
    assert!(s.upstream.seen().is_empty(), "{:?}", s.upstream.seen());
    s.gate.stop().await;
}

/// Last part: a buggy app that announces a body on a 204 and sends it late. The late bytes stood
/// first in the connection when the next request went out on it, and became (the start of) the
/// next user's answer. A connection whose answer announced a body it may not have is closed.
#[tokio::test]
async fn a_body_sent_late_after_a_204_never_becomes_the_next_answer() {
    let (port, _) = raw_upstream(|mut stream, _| async move {
        let mut owed = false;
        while let Some(head) = read_request_head(&mut stream).await {
            let mut answer = Vec::new();
            if owed {
                // The 204's body, late, and then what this request really gets.
                answer.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged");
            }
            owed = head.contains("/no-content");
            answer.extend_from_slice(if owed {
                b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine"
            });
            if stream.write_all(&answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;
    for _ in 0..3 {
        assert_eq!(
            get(gate.addr, "/public/no-content", &[]).await.status,
            StatusCode::NO_CONTENT
        );
        let next = get(gate.addr, "/public/other", &[]).await;
        assert_eq!(
            (next.status, &next.body[..]),
            (StatusCode::OK, &b"mine"[..])
        );
    }
    gate.stop().await;
}

/// An app whose answer carries control characters in a header value (a bare CR to split the
/// answer, NUL, DEL) gets no such field to the client: the answer is a 502. What RFC 9110 allows
/// in a value (tab, space, obs-text like a Latin-1 `é`) reaches the client byte for byte. The
/// upstream client takes values as httparse checked them, without checking them again.
#[tokio::test]
async fn control_characters_in_an_apps_header_values_never_reach_the_client() {
    let (port, _) = raw_upstream(|mut stream, _| async move {
        while let Some(head) = read_request_head(&mut stream).await {
            let value: &[u8] = match head.split_whitespace().nth(1) {
                Some("/public/cr") => b"a\rset-cookie: session=forged",
                Some("/public/nul") => b"a\x00b",
                Some("/public/del") => b"a\x7fb",
                Some("/public/vt") => b"a\x0bb",
                _ => b"caf\xe9 \t ok",
            };
            let mut answer = b"HTTP/1.1 200 OK\r\nx-app: ".to_vec();
            answer.extend_from_slice(value);
            answer.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
            if stream.write_all(&answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;
    let raw = |path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        async move {
            let mut stream = TcpStream::connect(gate.addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .expect("the answer ends")
                .unwrap();
            answer
        }
    };
    for path in ["/public/cr", "/public/nul", "/public/del", "/public/vt"] {
        let answer = raw(path).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 502 "), "{path}: {text}");
        assert!(
            !text.contains("x-app") && !text.contains("forged"),
            "{path}: {text}"
        );
    }
    let answer = raw("/public/latin").await;
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
    let field = b"x-app: caf\xe9 \t ok\r\n";
    assert!(
        answer.windows(field.len()).any(|w| w == field),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    gate.stop().await;
}

/// The review's third finding: a login checks the password, then creates its session; a password
/// change revokes the sessions that exist when it commits. Logins in flight across the change
/// kept working tokens for the old password. Now none does, once `/password` has answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_that_verified_the_old_password_outlives_the_change() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = for_login_race(config_text(
        &upstream.url(),
        &dir.path().join("gate.db"),
        "",
    ));
    let gate = Gate::start(&config).await;
    let survivors = logins_racing_a_password_change(&[gate.addr], gate.addr).await;
    for (access, refresh) in survivors {
        let r = get_with_token(gate.addr, "/api/x", &access).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "a login survived: {r:?}"
        );
        let r = post_with_token(gate.addr, "/refresh", &refresh).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "a login survived: {r:?}"
        );
    }
    gate.stop().await;
}

/// Not refused, and said so: an override in a POST form's body (Rails' and Laravel's `_method`) is
/// not read by authgate. The request meets the rules as the POST it is and reaches the app as
/// sent; the README asks apps that honour `_method` to give POST no more than what it can become.
#[tokio::test]
async fn a_form_method_override_is_decided_as_the_post_it_is() {
    let s = Setup::with_extra(
        r#"
[[routes]]
path = "/comments/**"
methods = ["DELETE"]
access = "deny"
[[routes]]
path = "/comments/**"
access = "public"
"#,
    )
    .await;
    let r = send(
        s.addr(),
        request(
            "POST",
            "/comments/7",
            &[("content-type", "application/x-www-form-urlencoded")],
            "_method=DELETE",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["method"], "POST");
    let r = send(s.addr(), request("DELETE", "/comments/7", &[], "")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    s.gate.stop().await;
}

// Found by attacking the first fixes (a helper session sent raw requests at the real binary).

/// Symfony, Laravel and Express's `method-override` with a key also read `_method` from the query,
/// where authgate can see it: a request is allowed only if the rule for the method it names
/// allows it too.
#[tokio::test]
async fn a_query_method_override_meets_the_rules_of_the_method_it_names() {
    let s = Setup::with_extra(
        r#"
[[routes]]
path = "/comments/**"
methods = ["DELETE"]
access = "deny"
[[routes]]
path = "/comments/**"
methods = ["PUT"]
access = "authenticated"
[[routes]]
path = "/comments/**"
access = "public"
"#,
    )
    .await;
    for (target, status) in [
        ("/comments/7?_method=DELETE", StatusCode::FORBIDDEN),
        ("/comments/7?page=1&_method=delete", StatusCode::FORBIDDEN),
        ("/comments/7?%5Fmethod=De%6Cete", StatusCode::FORBIDDEN),
        ("/comments/7;x?a=1;_method=DELETE", StatusCode::BAD_REQUEST),
        ("/comments/7?a=1;_method=DELETE", StatusCode::FORBIDDEN),
        ("/comments/7?_method=PUT", StatusCode::UNAUTHORIZED),
        // PHP's spellings of the key, which Symfony and Laravel read as `_method`.
        ("/comments/7?.method=DELETE", StatusCode::FORBIDDEN),
        ("/comments/7?+_method=DELETE", StatusCode::FORBIDDEN),
        ("/comments/7?_method%00x=DELETE", StatusCode::FORBIDDEN),
        ("/comments/7?_method=PATCH", StatusCode::OK),
        ("/comments/7?method=DELETE", StatusCode::OK),
    ] {
        let r = send(s.addr(), request("POST", target, &[], "x")).await;
        assert_eq!(r.status, status, "{target}: {r:?}");
    }
    let forwarded: Vec<String> = s.upstream.seen().iter().map(|x| x.target.clone()).collect();
    assert_eq!(
        forwarded,
        ["/comments/7?_method=PATCH", "/comments/7?method=DELETE"]
    );
    s.gate.stop().await;
}

/// Other names proxies give the client's address (`Client-IP`, `True-Client-IP`, …) and the host
/// overrides never reach the app; `X-Forwarded-Port`, `-Prefix`, `-Ssl` and the rest reach it only
/// from a trusted proxy, whose word they are.
#[tokio::test]
async fn client_address_headers_and_forwarded_details_reach_the_app_only_from_a_trusted_proxy() {
    let always = [
        "Client-IP",
        "X-Client-IP",
        "True-Client-IP",
        "CF-Connecting-IP",
        "X-Cluster-Client-IP",
        "Forwarded-For",
        "X-Forwarded",
        "X-Original-Method",
        "X-Original-Host",
        "X-Host",
        "X-HTTP-Host-Override",
        "x_original_host",
        // PHP reads `.` in a name as `_`, and so as the real header.
        "X.HTTP.Method.Override",
        "X.Auth.User.Id",
        "True.Client.IP",
    ];
    let details = [
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "X-Forwarded-Ssl",
        "X-Forwarded-Uri",
        "X-Forwarded-Method",
        "X-Forwarded-Server",
        "x_forwarded_scheme",
    ];
    let forged: Vec<(&str, &str)> = always
        .iter()
        .chain(&details)
        .map(|n| (*n, "forged"))
        .collect();
    let app_saw = |body: serde_json::Value, name: &str| {
        body["headers"].get(name.to_ascii_lowercase()).is_some()
    };

    let s = Setup::new().await;
    let r = send(s.addr(), request("GET", "/public/x", &forged, "")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    for name in always.iter().chain(&details) {
        assert!(
            !app_saw(body.clone(), name),
            "{name} reached the app: {body}"
        );
    }
    s.gate.stop().await;

    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&upstream.url(), &dir.path().join("gate.db"), "").replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let gate = Gate::start(&config).await;
    let r = send(gate.addr, request("GET", "/public/x", &forged, "")).await;
    let body = r.json();
    for name in always {
        assert!(
            !app_saw(body.clone(), name),
            "{name} reached the app: {body}"
        );
    }
    for name in details {
        assert!(
            app_saw(body.clone(), name),
            "{name} from a trusted proxy was dropped: {body}"
        );
    }
    gate.stop().await;
}

/// HTTP/2 names the host in `:authority`; a `host` field naming another one, or user information
/// in the authority, makes the request malformed (RFC 9113 §8.3.1) rather than letting the app
/// see a host of the client's choosing.
#[tokio::test]
async fn a_host_with_user_information_or_other_than_the_authority_is_refused() {
    let s = Setup::new().await;
    let mut sender = http2_sender(s.addr()).await;
    for (uri, host, status) in [
        (
            "http://gate.test/public/x",
            Some("evil.example"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "http://user@gate.test/public/x",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "http://gate.test/public/x",
            Some("gate.test"),
            StatusCode::OK,
        ),
        ("http://gate.test/public/x", None, StatusCode::OK),
        // The second attack on the fixes: user information in a `host` field, on HTTP/2 and
        // on HTTP/1.1.
        (
            "http://gate.test/public/x",
            Some("user@evil.example"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{uri} with host {host:?}");
    }
    for host in ["user@evil.example", "a:b@evil.example"] {
        let raw = format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "HTTP/1.1 Host {host}: {answer}");
        assert!(answer.contains("Host must name a host, without user information"));
    }
    assert!(
        s.upstream
            .seen()
            .iter()
            .all(|x| x.headers.get("host").is_none_or(|h| h == "gate.test"))
    );
    s.gate.stop().await;
}

/// The second attack on the fixes sent eight refreshes of one token at once: one got a new pair,
/// and five got `503 Store unavailable` ("database is locked": SQLite transactions that read
/// before they wrote). Write transactions now take the lock first and wait their turn; none is
/// lost to the store. Within `tokens.refresh_reuse_interval` (a browser's tabs) the others get
/// an access token of the same session and no refresh token; with no grace they are reuse, and
/// the session goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_refreshes_of_one_token_give_one_pair_and_no_store_errors() {
    for grace in ["10s", "0s"] {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(&upstream.url(), &dir.path().join("p.db"), "").replace(
            "[tokens]\n",
            &format!("[tokens]\nrefresh_reuse_interval = \"{grace}\"\n"),
        );
        let gate = Gate::start(&text).await;
        let (_, refresh) = Setup::login_at(gate.addr, "alice").await;
        let addr = gate.addr;
        let tries: Vec<_> = (0..8)
            .map(|_| {
                let refresh = refresh.clone();
                tokio::spawn(async move { post_with_token(addr, "/refresh", &refresh).await })
            })
            .collect();
        let (mut statuses, mut pairs, mut winner) = (Vec::new(), 0, None);
        for attempt in tries {
            let r = attempt.await.unwrap();
            if r.status == StatusCode::OK {
                pairs += usize::from(r.json()["refresh_token"].is_string());
                winner = Some(r.json()["access_token"].as_str().unwrap().to_string());
            }
            statuses.push(r.status.as_u16());
        }
        statuses.sort_unstable();
        assert_eq!(pairs, 1, "{grace}: one new refresh token");
        let r = get_with_token(addr, "/api/x", &winner.unwrap()).await;
        if grace == "10s" {
            assert_eq!(statuses, [200; 8], "{grace}");
            assert_eq!(r.status, StatusCode::OK, "the session lives on");
        } else {
            assert_eq!(
                statuses,
                [200, 401, 401, 401, 401, 401, 401, 401],
                "{grace}"
            );
            // A refresh token used twice is a stolen one: the session goes, the winner's pair
            // with it.
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        gate.stop().await;
    }
}
