//! Attacks from SECURITY.md not covered elsewhere: header tricks in the token, HTTP framing
//! tricks, oversize input and floods. Each must be refused (or made harmless) and never forwarded
//! as something the rules refuse.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::StatusCode;
use serde_json::json;
use support::*;

fn hand_made(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    use hmac::Mac;
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn header_tricks_in_the_token_are_refused() {
    let s = Setup::new().await;
    let (access, _) = s.login("alice").await;
    let claims = payload(&access);
    let attacker_key = b"the-attackers-own-key-0123456789-abcdefghij";
    let cases = [
        // HS/RS confusion: an RS256 header over an HMAC made with some public key's bytes.
        (
            json!({"alg": "RS256", "typ": "JWT"}),
            attacker_key.as_slice(),
            "The specified alg value is not allowed",
        ),
        (
            json!({"alg": "ES256"}),
            attacker_key.as_slice(),
            "The specified alg value is not allowed",
        ),
        (
            json!({"alg": "none"}),
            attacker_key.as_slice(),
            "The specified alg value is not allowed",
        ),
        // jku / x5u / jwk / kid pointing elsewhere: never fetched, never trusted.
        (
            json!({"alg": "HS256", "jku": "http://evil.example/jwks.json", "kid": "evil"}),
            attacker_key.as_slice(),
            "Signature verification failed",
        ),
        (
            json!({"alg": "HS256", "x5u": "http://evil.example/cert.pem"}),
            attacker_key.as_slice(),
            "Signature verification failed",
        ),
        (
            json!({"alg": "HS256", "jwk": {"kty": "oct", "k": B64.encode(attacker_key)}}),
            attacker_key.as_slice(),
            "Signature verification failed",
        ),
        (
            json!({"alg": "HS256", "kid": "../../../../dev/null"}),
            b"".as_slice(),
            "Signature verification failed",
        ),
    ];
    for (header, key, msg) in cases {
        let token = hand_made(&header, &claims, key);
        let r = get_with_token(s.addr(), "/api/x", &token).await;
        assert_eq!(
            (r.status, r.msg().as_str()),
            (StatusCode::UNAUTHORIZED, msg),
            "{header}"
        );
    }
    // Extra segments and a token over the header limit.
    let r = get_with_token(s.addr(), "/api/x", &format!("{access}.extra")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = get_with_token(s.addr(), "/api/x", &"A".repeat(20_000)).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(s.upstream.seen().is_empty());
}

/// Framing tricks that make a front end and a back end disagree on where a request ends. The
/// ambiguous ones are refused; with both Content-Length and Transfer-Encoding the chunked body wins
/// and the connection is closed after the answer (RFC 9112 §6.1), so what follows is never read.
/// Either way the upstream never sees the request hidden behind the body.
#[tokio::test]
async fn request_smuggling_framings_are_refused() {
    let s = Setup::new().await;
    let smuggled = "GET /private HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            200,
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"
            ),
            400,
        ),
        (
            "obsolete line folding",
            format!("GET /public/a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "a transfer coding other than chunked",
            format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            "a space before the colon",
            format!("GET /public/a HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n{smuggled}"),
            400,
        ),
    ];
    for (what, raw, expected) in cases {
        // send_raw reads to the end: it returns only because authgate closed the connection.
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), expected, "{what}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{what}: a second answer means a second request was read"
        );
    }
    let seen = s.upstream.seen();
    let targets: Vec<_> = seen.iter().map(|x| x.target.as_str()).collect();
    assert_eq!(targets, ["/public/a"], "only the chunked request, once");
    assert!(
        seen[0]
            .headers
            .get("content-length")
            .is_none_or(|v| v == "0"),
        "forwarded with its real (empty) body"
    );
}

#[tokio::test]
async fn oversize_headers_are_refused() {
    let s = Setup::new().await;
    let big = "x".repeat(100 * 1024);
    let raw =
        format!("GET /public/a HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let answer = send_raw(s.addr(), raw.as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");

    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!("GET /public/a HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let answer = send_raw(s.addr(), raw.as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    assert!(s.upstream.seen().is_empty());
}

#[tokio::test]
async fn host_header_variations_only_ever_reach_the_configured_upstream() {
    let s = Setup::new().await;
    for raw in [
        "GET /public/a HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n",
        "GET http://evil.example/public/a HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
        "GET /public/a HTTP/1.0\r\nConnection: close\r\n\r\n",
    ] {
        let answer = send_raw(s.addr(), raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), 200, "{raw}: {answer}");
    }
    // Every one of them arrived at the one upstream this test runs.
    assert_eq!(s.upstream.seen().len(), 4);
    let two_hosts =
        "GET /public/a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    let answer = send_raw(s.addr(), two_hosts.as_bytes()).await;
    assert_eq!(raw_status(&answer), 400, "two Host headers: {answer}");
    let no_host = "GET /public/a HTTP/1.1\r\nConnection: close\r\n\r\n";
    let answer = send_raw(s.addr(), no_host.as_bytes()).await;
    assert_eq!(raw_status(&answer), 400, "HTTP/1.1 without Host: {answer}");
    assert_eq!(s.upstream.seen().len(), 4);
}

/// A flood of logins queues on the hashing threads, then is turned away with 503 and Retry-After;
/// nothing hangs, and proxied requests keep flowing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_turned_away_not_queued_without_bound() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_with_tight_line = config_text(&upstream.url(), &dir.path().join("flood.db"), "")
        .replace(
            "parallelism = 1\n",
            "parallelism = 1\nmax_concurrent_hashes = 1\nmax_waiting_hashes = 2\n",
        )
        .replace(
            "memory_kib = 1024\niterations = 1",
            "memory_kib = 8192\niterations = 3",
        )
        + "[login_limits]\nper_address = 0\nper_user = 0\n";
    let gate = Gate::start(&config_with_tight_line).await;
    let addr = gate.addr;
    let (access, _) = Setup::login_at(addr, "alice").await;

    let logins: Vec<_> = (0..32)
        .map(|_| {
            tokio::spawn(async move {
                let creds = json!({"username": "alice", "password": "a perfectly fine password"});
                post_json(addr, "/login", &creds, &[]).await
            })
        })
        .collect();
    let proxied = get_with_token(addr, "/api/during-the-flood", &access).await;
    assert_eq!(proxied.status, StatusCode::OK);
    let (mut ok, mut busy) = (0, 0);
    for login in logins {
        let r = login.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.msg(), "Too many logins at once, try again shortly");
                assert_eq!(r.header("retry-after"), Some("1"));
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok + busy, 32);
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    gate.stop().await;
}

/// Read while the body is still going out: authgate answers 413 before reading it all.
#[tokio::test]
async fn a_one_megabyte_password_is_refused_before_any_hashing() {
    let s = Setup::new().await;
    let creds = json!({"username": "alice", "password": "p".repeat(1024 * 1024)}).to_string();
    for endpoint in ["/register", "/login"] {
        let request = format!(
            "POST {endpoint} HTTP/1.1\r\nHost: gate.test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{creds}",
            creds.len()
        );
        let answer = send_raw_reading_early(s.addr(), request.into_bytes()).await;
        assert_eq!(raw_status(&answer), 413, "{endpoint}: {answer}");
    }
}

/// A client that writes its whole body before it reads, as most do, still gets its 413 (or 415)
/// for a body far larger than the kernel's buffers: authgate answers at once, then reads and
/// drops the rest for a while (a lingering close) instead of resetting the connection under the
/// client's writes.
#[tokio::test]
async fn a_client_that_writes_a_huge_refused_body_before_reading_still_gets_the_answer() {
    use tokio::io::AsyncWriteExt;
    let s = Setup::new().await;
    let body = vec![b'x'; 16 * 1024 * 1024];
    for (content_type, status) in [("application/json", 413), ("text/plain", 415)] {
        let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&body)
            .await
            .expect("the whole body could be written");
        let answer = read_to_close(&mut stream).await;
        assert_eq!(raw_status(&answer), status, "{content_type}: {answer}");
        assert!(answer.contains("{\"msg\":"), "a JSON error: {answer}");
    }
}
