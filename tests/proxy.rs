//! The guarded proxy: bypass attempts never reach the app unauthenticated, identity headers can't
//! be forged, hop-by-hop and forwarding headers are rewritten, bodies stream, connections are reused.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests for the protected `/private` dressed up to look public. Each is sent raw, exactly as
/// written, and must be answered 400 or 401 without reaching the upstream.
#[tokio::test]
async fn route_bypass_attempts_never_reach_the_upstream_unauthenticated() {
    let s = Setup::new().await;
    let targets = [
        "/public/../private",
        "/public/%2e%2e/private",
        "/public/%2E%2e/private",
        "/public/.%2e/private",
        "//private",
        "///private",
        "/PUBLIC/x",
        "/Public/x",
        "/public/..;/private",
        "/public/.;x/../private",
        "/public/..%3b/private",
        "/public/..%3B/private",
        "/public/..%2fprivate",
        "/public/..%2Fprivate",
        "/public/..%5cprivate",
        "/public/..\\private",
        "/public\\..\\private",
        "/public/%c0%ae%c0%ae/private",
        "/public/%00/../private",
        "/public/%zz",
        "/..",
        "/public/../../private",
        "http://gate.test/private",
        "http://gate.test/public/../private",
        "*",
    ];
    for target in targets {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n");
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        let status = raw_status(&answer);
        assert!(
            status == 400 || status == 401,
            "{target} got {status}: {answer}"
        );
    }
    assert!(
        s.upstream.seen().is_empty(),
        "these reached the upstream: {:?}",
        s.upstream
            .seen()
            .iter()
            .map(|x| &x.target)
            .collect::<Vec<_>>()
    );
}

/// The rule is chosen on the normalised path, and that same path is what the upstream receives.
#[tokio::test]
async fn the_forwarded_path_is_the_path_that_was_matched() {
    let s = Setup::new().await;
    let (access, _) = s.login("alice").await;
    let cases = [
        ("/public/a/../b", "/public/b"),
        ("/public/./x//y", "/public/x/y"),
        ("/public/%7Euser/%41", "/public/~user/A"),
        ("/public/a%20b?q=%2e%2e/x", "/public/a%20b?q=%2e%2e/x"),
        ("/private/../public/x", "/public/x"),
    ];
    for (sent, forwarded) in cases {
        let r = get(s.addr(), sent, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{sent}");
        assert_eq!(r.json()["target"], forwarded, "{sent}");
    }
    // A protected path after normalisation is protected: with a token it goes through, normalised.
    let r = get_with_token(s.addr(), "/public/../private/./x", &access).await;
    assert_eq!(r.json()["target"], "/private/x");
}

#[tokio::test]
async fn requests_go_only_to_the_configured_upstream_whatever_the_target_or_host_says() {
    let s = Setup::new().await;
    let raw = "GET http://elsewhere.example:1234/public/x HTTP/1.1\r\nHost: another.example\r\nConnection: close\r\n\r\n";
    let answer = send_raw(s.addr(), raw.as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/public/x");
    assert_eq!(seen[0].headers["x-forwarded-host"], "another.example");
}

#[tokio::test]
async fn forged_identity_headers_are_removed_on_public_and_authenticated_routes() {
    let s = Setup::new().await;
    let (access, _) = s.login("alice").await;
    let user_id = payload(&access)["sub"].as_str().unwrap().to_string();
    let forged = [
        ("X-Auth-User-Id", "admin"),
        ("x-auth-user-id", "admin2"),
        ("X_Auth_User_Id", "admin3"),
        ("x_auth_user-id", "admin4"),
        ("X-AUTH-USERNAME", "root"),
        ("x_auth_username", "root2"),
    ];

    let r = get(s.addr(), "/public/x", &forged).await;
    assert_eq!(r.status, StatusCode::OK);
    let public = &s.upstream.seen()[0];
    for (name, _) in forged {
        assert!(
            public.headers.get(name).is_none(),
            "{name} reached the app on a public route"
        );
    }

    let auth = format!("Bearer {access}");
    let mut headers = forged.to_vec();
    headers.push(("authorization", &auth));
    // Listing the identity header as hop-by-hop must not remove the one authgate sets.
    headers.push(("connection", "X-Auth-User-Id, x-custom-hop"));
    headers.push(("x-custom-hop", "1"));
    let r = get(s.addr(), "/private", &headers).await;
    assert_eq!(r.status, StatusCode::OK);
    let private = &s.upstream.seen()[1];
    let ids: Vec<_> = private.headers.get_all("x-auth-user-id").iter().collect();
    assert_eq!(ids, [user_id.as_str()]);
    let names: Vec<_> = private.headers.get_all("x-auth-username").iter().collect();
    assert_eq!(names, ["alice"]);
    for (name, _) in forged.iter().filter(|(n, _)| n.contains('_')) {
        assert!(
            private.headers.get(*name).is_none(),
            "{name} reached the app"
        );
    }
    assert!(
        private.headers.get("x-custom-hop").is_none(),
        "a header named by Connection is hop-by-hop"
    );
}

/// Behind an ingress listed in `server.trusted_proxies`, the app learns the client the ingress
/// speaks for and the scheme it was reached by. What the client wrote itself, left of what the
/// ingress appended, is not believed; from an untrusted peer nothing is (the test below).
#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_its_scheme() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&upstream.url(), &dir.path().join("t.db"), "").replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    let gate = Gate::start(&config).await;
    let headers = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
        ("x-forwarded-for", "127.0.0.9"),
        ("x-forwarded-proto", "https"),
    ];
    let r = get(gate.addr, "/public/x", &headers).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = &upstream.seen()[0].headers;
    let all = |name: &str| values(seen, name);
    assert_eq!(all("x-forwarded-for"), ["203.0.113.7"]);
    assert_eq!(all("x-forwarded-proto"), ["https"]);
    gate.stop().await;
}

#[tokio::test]
async fn hop_by_hop_and_forwarding_headers_are_authgates_own() {
    let s = Setup::new().await;
    let headers = [
        ("x-forwarded-for", "6.6.6.6"),
        ("X_Forwarded_For", "7.7.7.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=6.6.6.6"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic c2VjcmV0"),
        ("te", "trailers"),
        ("x-kept", "yes"),
    ];
    let r = get(s.addr(), "/public/x", &headers).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = &s.upstream.seen()[0].headers;
    let all = |name: &str| values(seen, name);
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("x-forwarded-host"), ["gate.test"]);
    assert_eq!(all("host"), ["gate.test"]);
    for gone in [
        "x_forwarded_for",
        "forwarded",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(all(gone).is_empty(), "{gone} reached the app");
    }
    assert_eq!(all("x-kept"), ["yes"]);
}

#[tokio::test]
async fn a_large_body_streams_through_unchanged() {
    let s = Setup::new().await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = send(
        s.addr(),
        request("POST", "/echo-body/x", &[], Bytes::from(body.clone())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "the body came back changed");
}

/// The first chunk comes back before the client has sent the rest: nothing is buffered whole.
#[tokio::test]
async fn bodies_stream_both_ways_without_being_buffered_whole() {
    let s = Setup::new().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream
        .write_all(b"POST /echo-body/x HTTP/1.1\r\nHost: gate.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let got_first = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&seen).contains("first") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        got_first.is_ok(),
        "the first chunk did not come back before the body ended"
    );
    stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
    let got_last = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&seen).contains("last") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(got_last.is_ok());
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let s = Setup::new().await;
    for _ in 0..50 {
        assert_eq!(get(s.addr(), "/public/x", &[]).await.status, StatusCode::OK);
    }
    assert!(
        s.upstream.connections() <= 2,
        "{} upstream connections for 50 sequential requests",
        s.upstream.connections()
    );
}

/// The app's `Connection` options reach the client in no form. `keep-alive` and `close` are read:
/// a `close`, in any case and among other options, keeps its connection out of the pool. The
/// fields a `Connection` names go with it, and with `Keep-Alive`.
#[tokio::test]
async fn the_apps_connection_options_are_read_and_never_passed_on() {
    let (port, accepted) = raw_upstream(|mut stream, _| async move {
        while let Some(head) = read_request_head(&mut stream).await {
            let connection = if head.contains("/close") {
                "keep-alive, CLOSE"
            } else if head.contains("/named") {
                "keep-alive, X-Hop"
            } else {
                "Keep-Alive"
            };
            let answer = format!(
                "HTTP/1.1 200 OK\r\nConnection: {connection}\r\nKeep-Alive: timeout=5\r\n\
                 X-Hop: 1\r\nX-Kept: 1\r\ncontent-length: 2\r\n\r\nok"
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;
    let passed_on = |r: &Answer| {
        let mut names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        names.retain(|&n| n.starts_with("x-") || n == "connection" || n == "keep-alive");
        names.sort_unstable();
        names.join(" ")
    };
    let plain = get(gate.addr, "/public/plain", &[]).await;
    assert_eq!(
        (plain.status, passed_on(&plain).as_str()),
        (StatusCode::OK, "x-hop x-kept")
    );
    let named = get(gate.addr, "/public/named", &[]).await;
    assert_eq!(
        (named.status, passed_on(&named).as_str()),
        (StatusCode::OK, "x-kept")
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "keep-alive: one connection"
    );
    let close = get(gate.addr, "/public/close", &[]).await;
    assert_eq!(
        (close.status, passed_on(&close).as_str()),
        (StatusCode::OK, "x-hop x-kept")
    );
    assert_eq!(
        get(gate.addr, "/public/plain", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the connection that answered `close` was not used again"
    );
    gate.stop().await;
}

/// An upstream that closes each keep-alive connection soon after answering, as apps with a short
/// idle timeout do: the pooled connection is found closed and the next request goes out on a new
/// one, never failing.
#[tokio::test]
async fn connections_the_upstream_closed_are_not_reused() {
    let (port, accepted) = raw_upstream(|mut stream, _| async move {
        if read_request_head(&mut stream).await.is_some() {
            // Keep-alive is implied by HTTP/1.1; the connection closes anyway.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::start(&config_text(
        &format!("http://127.0.0.1:{port}"),
        &dir.path().join("closing.db"),
        "",
    ))
    .await;
    for _ in 0..5 {
        let r = get(gate.addr, "/public/x", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        5,
        "one new connection per request"
    );
    gate.stop().await;
}

/// An idle upstream connection is closed once `pool_idle_timeout` has passed, rather than kept
/// open until a request next needs a connection.
#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_pool_idle_timeout() {
    let closed = Arc::new(Mutex::new(None::<Instant>));
    let seen = closed.clone();
    let (port, accepted) = raw_upstream(move |mut stream, _| {
        let seen = seen.clone();
        async move {
            while read_request_head(&mut stream).await.is_some() {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
            *seen.lock().unwrap() = Some(Instant::now());
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(
        &format!("http://127.0.0.1:{port}"),
        &dir.path().join("pruned.db"),
        "",
    )
    .replace("[upstream]\n", "[upstream]\npool_idle_timeout = \"1s\"\n");
    let gate = Gate::start(&one_worker(config)).await;

    let sent = Instant::now();
    assert_eq!(
        get(gate.addr, "/public/x", &[]).await.status,
        StatusCode::OK
    );
    let close = loop {
        if let Some(at) = *closed.lock().unwrap() {
            break at;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "the idle connection is still open 5 s later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        close.duration_since(sent) >= Duration::from_secs(1),
        "closed {:?} after the request, before the pool idle timeout",
        close.duration_since(sent)
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gate.stop().await;
}

/// The keep-alive race: the app closes a connection just as authgate sends the next request on it
/// (as when the app's keep-alive timeout ends). A bodiless GET is sent again on a new connection and succeeds; a
/// POST with a body is not sent twice, and its client gets 502.
#[tokio::test]
async fn a_get_on_a_connection_the_app_closes_as_it_arrives_is_sent_again() {
    keep_alive_race(false).await;
}

/// The same race when the app resets the connection (RST) rather than closing it.
#[tokio::test]
async fn a_get_on_a_connection_the_app_resets_as_it_arrives_is_sent_again() {
    keep_alive_race(true).await;
}

/// An app that answers the first request on each connection and, on the second, closes the
/// connection at once (with a reset when `reset`), in front of one worker.
async fn keep_alive_race(reset: bool) {
    let (port, accepted) = raw_upstream(move |mut stream, number| async move {
        if read_request_head(&mut stream).await.is_none() {
            return;
        }
        let body = format!("connection {number}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        if read_request_head(&mut stream).await.is_some() && reset {
            stream.set_zero_linger().unwrap();
        }
    })
    .await;
    let (gate, _dir) = gate_in_front_of(port).await;

    let first = get(gate.addr, "/public/a", &[]).await;
    assert_eq!(
        (first.status, &first.body[..]),
        (StatusCode::OK, &b"connection 1"[..])
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = get(gate.addr, "/public/b", &[]).await;
    assert_eq!(
        (again.status, &again.body[..]),
        (StatusCode::OK, &b"connection 2"[..])
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let post = send(
        gate.addr,
        request(
            "POST",
            "/public/c",
            &[("content-type", "text/plain")],
            "a body",
        ),
    )
    .await;
    assert_eq!(post.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the POST was not sent again"
    );
    gate.stop().await;
}

/// A HEAD answer has a length but no body; its connection goes back to the pool all the same, and
/// the GETs after it reuse that one connection (one worker, so one pool).
#[tokio::test]
async fn a_head_request_leaves_its_connection_reusable() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = one_worker(config_text(
        &upstream.url(),
        &dir.path().join("head.db"),
        "",
    ));
    let gate = Gate::start(&config).await;
    let head = send(gate.addr, request("HEAD", "/public/x", &[], "")).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.header("content-length").is_some());
    assert!(head.body.is_empty());
    for _ in 0..10 {
        assert_eq!(
            get(gate.addr, "/public/x", &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(upstream.connections(), 1);
    gate.stop().await;
}

/// An upstream answer with `Connection: close` is passed on without that header, and the next
/// request gets a new connection.
#[tokio::test]
async fn an_upstream_connection_close_is_not_passed_on_and_not_reused() {
    let s = Setup::new().await;
    let first = get(s.addr(), "/public/close", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("connection"), None);
    let before = s.upstream.connections();
    assert_eq!(get(s.addr(), "/public/x", &[]).await.status, StatusCode::OK);
    assert_eq!(s.upstream.connections(), before + 1);
}

/// A client that never finishes its headers is cut off by the header read timeout (2s in tests).
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let s = Setup::new().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: gate.test\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the connection was still open after 10s");
    assert!(s.upstream.seen().is_empty());
}

/// A client that connects and sends nothing, or only the start of HTTP/2's preface (which says
/// neither HTTP/1.1 nor HTTP/2 yet), is cut off by the header read timeout (2 s in tests) too,
/// and no sooner.
#[tokio::test]
async fn a_client_that_sends_nothing_or_half_a_preface_is_disconnected() {
    let s = Setup::new().await;
    for opening in [&b""[..], b"PRI * HT"] {
        let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let from = std::time::Instant::now();
        let mut out = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        assert!(closed.is_ok(), "{opening:?}: still open after 10s");
        assert!(out.is_empty(), "{opening:?}: answered {out:?}");
        let waited = from.elapsed();
        assert!(
            waited >= Duration::from_millis(1900),
            "{opening:?}: closed after {waited:?}"
        );
    }
}

/// The header read timeout (2 s in tests) also closes a keep-alive connection left idle after an
/// answer, and no sooner than the timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let s = Setup::new().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: gate.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
    let idle_from = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the idle connection was still open after 10s"
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1900),
        "closed after {idle:?} idle"
    );
}

/// A request in progress keeps its connection open past the header read timeout (2 s in tests):
/// here an upload trickles in for 3 s while its echo streams back.
#[tokio::test]
async fn a_request_in_progress_outlives_the_header_read_timeout() {
    let s = Setup::new().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream
        .write_all(b"POST /echo-body/x HTTP/1.1\r\nHost: gate.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for i in 0..6 {
        let chunk = format!("6\r\npart-{i}\r\n");
        stream.write_all(chunk.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    for i in 0..6 {
        assert!(
            answer.contains(&format!("part-{i}")),
            "part {i} missing: {answer}"
        );
    }
}

/// A client that trickles an auth body is answered 408 when the body deadline (1s in tests) passes.
#[tokio::test]
async fn a_body_that_never_finishes_arriving_gets_408() {
    let s = Setup::new().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream
        .write_all(b"POST /login HTTP/1.1\r\nHost: gate.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user")
        .await
        .unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut out))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&out[..n]).into_owned();
    assert_eq!(raw_status(&answer), 408, "{answer}");
}

/// At `max_connections`, further clients wait until a connection closes; none is dropped.
#[tokio::test]
async fn the_connection_cap_makes_new_clients_wait_their_turn() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&upstream.url(), &dir.path().join("c.db"), "")
        .replace("[server]\n", "[server]\nmax_connections = 2\n")
        .replace(
            "header_read_timeout = \"2s\"",
            "header_read_timeout = \"30s\"",
        );
    let gate = Gate::start(&config).await;
    // wait_ready's connections have closed; hold both slots with idle clients.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let idle_a = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let _idle_b = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut third = health_check_held_at_the_cap(gate.addr).await;
    drop(idle_a);
    assert_eq!(answer_once_served(&mut third).await, 200);
    gate.stop().await;
}
