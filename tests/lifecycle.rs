//! Running it for real: readiness that fails closed, graceful SIGTERM, Prometheus metrics, one
//! structured log line per request, WebSocket upgrades and HTTP/2 (h2c).

mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use support::process::Process;
use support::websocket::{closed_within, echo, open_websocket, refused_handshake};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn write_config(dir: &Path, upstream: &Upstream, extra: &str) -> std::path::PathBuf {
    let path = dir.join("authgate.toml");
    let text = config_text(&upstream.url(), &dir.join("authgate.db"), extra)
        .replace("timeout = \"1s\"", "timeout = \"10s\"")
        .replace("[server]\n", "[server]\nshutdown_grace = \"10s\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &upstream,
        "[[routes]]\npath = \"/slow\"\naccess = \"public\"\n",
    );
    let mut gate = Process::start(&config);
    wait_ready(gate.addr).await;

    let addr = gate.addr;
    // /slow answers after 3 s; SIGTERM arrives while it is in flight.
    let in_flight = tokio::spawn(async move { get(addr, "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        upstream.seen().len(),
        1,
        "the request reached the upstream before SIGTERM"
    );
    gate.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections once shutting down"
    );

    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the request in flight was completed"
    );
    let code = tokio::task::spawn_blocking(move || gate.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

/// Until the store can be opened, the gate is alive but not ready and forwards no protected
/// request; once the store can be opened it loads, and becomes ready by itself.
#[tokio::test]
async fn readiness_fails_closed_until_revocations_are_loaded() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Log in against a working store first, to have a valid token.
    let good_store = dir.path().join("good.db");
    let gate = Gate::start(&config_text(&upstream.url(), &good_store, "")).await;
    let (access, _) = Setup::login_at(gate.addr, "alice").await;
    gate.stop().await;

    // The store path is an existing directory: SQLite cannot open it.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    let config = authgate::Config::parse(&config_text(&upstream.url(), &blocked, "")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(authgate::run(listener, config, async {
        let _ = stopped.await;
    }));

    assert_eq!(get(addr, "/healthz", &[]).await.status, StatusCode::OK);
    let r = get(addr, "/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["revocations_loaded"], false);
    let r = get_with_token(addr, "/api/x", &access).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.msg(),
        "Not ready: revocations are still loading, try again shortly"
    );
    assert!(
        upstream.seen().iter().all(|s| s.target != "/api/x"),
        "nothing protected was forwarded"
    );

    // Replace the directory with the real database: the gate retries and becomes ready.
    std::fs::remove_dir(&blocked).unwrap();
    std::fs::copy(&good_store, &blocked).unwrap();
    wait_ready(addr).await;
    assert_eq!(
        get_with_token(addr, "/api/x", &access).await.status,
        StatusCode::OK
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config =
        authgate::Config::parse(&config_text(&upstream.url(), &dir.path().join("m.db"), ""))
            .unwrap();
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics_addr) = (main.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = authgate::Listeners {
        main,
        metrics: Some(metrics),
    };
    let task = tokio::spawn(authgate::run_with(listeners, config, async {
        let _ = stopped.await;
    }));
    wait_ready(addr).await;

    let (access, _) = Setup::login_at(addr, "alice").await;
    let bad = serde_json::json!({"username": "alice", "password": "wrong password"});
    post_json(addr, "/login", &bad, &[]).await;
    get_with_token(addr, "/api/x", &access).await;
    get(addr, "/api/x", &[]).await;
    post_with_token(addr, "/logout", &access).await;

    let text = String::from_utf8(get(metrics_addr, "/metrics", &[]).await.body.to_vec()).unwrap();
    for line in [
        "authgate_requests_total{outcome=\"forwarded\"} 1",
        "authgate_requests_total{outcome=\"no_token\"} 1",
        "authgate_logins_total{result=\"succeeded\"} 1",
        "authgate_logins_total{result=\"failed\"} 1",
        "authgate_registrations_total 1",
        "authgate_revocations_total 1",
        "authgate_revocation_cache_entries 1",
        "authgate_request_duration_seconds_count",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert_eq!(
        get(addr, "/metrics", &[]).await.status,
        StatusCode::UNAUTHORIZED,
        "not on the public port"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_logs_one_structured_line_without_the_token() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = Process::start(&write_config(dir.path(), &upstream, ""));
    wait_ready(gate.addr).await;
    let (access, refresh) = Setup::login_at(gate.addr, "alice").await;
    let user_id = payload(&access)["sub"].as_str().unwrap().to_string();
    get_with_token(gate.addr, &format!("/api/items?token={access}"), &access).await;
    get(gate.addr, "/api/items", &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let requests: Vec<_> = gate
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "request")
        .collect();
    let forwarded = requests
        .iter()
        .find(|l| l["outcome"] == "forwarded")
        .expect("a forwarded line");
    assert_eq!(forwarded["method"], "GET");
    assert_eq!(forwarded["path"], "/api/items");
    assert_eq!(forwarded["status"], 200);
    assert_eq!(forwarded["user_id"], user_id.as_str());
    assert!(forwarded["latency_us"].is_u64());
    let refused = requests
        .iter()
        .find(|l| l["outcome"] == "no_token")
        .expect("a refused line");
    assert_eq!(refused["status"], 401);
    let text = gate.log_text();
    for secret in [
        access.as_str(),
        refresh.as_str(),
        "a perfectly fine password",
        SECRET,
    ] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn websocket_upgrades_pass_through_after_the_token_check() {
    let s = Setup::new().await;
    let (access, _) = s.login("alice").await;
    let user_id = payload(&access)["sub"].as_str().unwrap().to_string();

    let mut ws = open_websocket(s.addr(), &access).await;
    for text in ["hello", "again"] {
        assert_eq!(echo(&mut ws, text).await, format!("{user_id}: {text}"));
    }

    // Without a token the handshake is refused and never reaches the app.
    let before = s.upstream.seen().len();
    assert_eq!(
        refused_handshake(s.addr(), "/ws/chat", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.upstream.seen().len(), before);
}

/// Logout revokes the session, and a tunnel opened with the session's token is a request that
/// is still going: it is closed within about a second. Other sessions' tunnels stay open.
#[tokio::test]
async fn logout_closes_the_websockets_its_session_opened() {
    let s = Setup::new().await;
    let (alice, _) = s.login("alice").await;
    let (bob, _) = s.login("bob").await;
    let mut alice_ws = open_websocket(s.addr(), &alice).await;
    let mut bob_ws = open_websocket(s.addr(), &bob).await;
    echo(&mut alice_ws, "before").await;

    let r = post_with_token(s.addr(), "/logout", &alice).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        closed_within(&mut alice_ws, Duration::from_secs(5)).await,
        "the revoked session's tunnel stayed open"
    );
    let bob_id = payload(&bob)["sub"].as_str().unwrap().to_string();
    assert_eq!(
        echo(&mut bob_ws, "still here").await,
        format!("{bob_id}: still here")
    );
}

/// A tunnel lasts no longer than the access token that opened it: the client reconnects with a
/// fresh one, as it would send a fresh one with a request.
#[tokio::test]
async fn a_websocket_closes_when_the_token_that_opened_it_expires() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&upstream.url(), &dir.path().join("e.db"), "")
        .replace("[tokens]\n", "[tokens]\naccess_ttl = \"2s\"\n");
    let gate = Gate::start(&config).await;
    let (access, _) = Setup::login_at(gate.addr, "alice").await;
    let mut ws = open_websocket(gate.addr, &access).await;
    echo(&mut ws, "while valid").await;

    let expires = payload(&access)["exp"].as_u64().unwrap();
    assert!(
        closed_within(&mut ws, Duration::from_secs(6)).await,
        "the tunnel outlived its token"
    );
    assert!(now() >= expires, "closed before the token expired");
    gate.stop().await;
}

/// A WebSocket keeps its connection's place under `max_connections` until it closes: a tunnel is
/// a connection authgate holds open, like any other.
#[tokio::test]
async fn an_open_websocket_holds_its_place_under_max_connections() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&upstream.url(), &dir.path().join("m.db"), "")
        .replace("[server]\n", "[server]\nmax_connections = 1\n");
    let gate = Gate::start(&config).await;
    let (access, _) = Setup::login_at(gate.addr, "alice").await;
    // The set-up calls' connections have closed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = open_websocket(gate.addr, &access).await;
    echo(&mut ws, "holding the only place").await;

    let mut other = health_check_held_at_the_cap(gate.addr).await;
    drop(ws);
    assert_eq!(answer_once_served(&mut other).await, 200);
    gate.stop().await;
}

/// SIGTERM with a WebSocket open: the tunnel is closed (it can never "finish" on its own) and the
/// process exits 0 well within the grace period instead of waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_websockets_and_exits() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream, "");
    let mut gate = Process::start(&config);
    wait_ready(gate.addr).await;
    let (access, _) = Setup::login_at(gate.addr, "alice").await;
    let mut ws = open_websocket(gate.addr, &access).await;
    echo(&mut ws, "before the signal").await;

    gate.signal("TERM");
    assert!(
        closed_within(&mut ws, Duration::from_secs(5)).await,
        "the tunnel outlived SIGTERM"
    );
    // The grace period is 10 s (write_config); the exit comes long before it.
    let code = tokio::task::spawn_blocking(move || gate.wait(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn http2_clients_are_served_with_prior_knowledge() {
    let s = Setup::new().await;
    let (access, _) = s.login("alice").await;
    let mut sender = http2_sender(s.addr()).await;
    for (target, token, status) in [
        ("/public/h2", None, StatusCode::OK),
        ("/api/h2", Some(&access), StatusCode::OK),
        ("/api/h2", None, StatusCode::UNAUTHORIZED),
    ] {
        let mut builder = http::Request::builder().uri(format!("http://gate.test{target}"));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{target}");
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status == StatusCode::OK {
            let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(seen["target"], target);
            assert_eq!(
                seen["headers"]["x-forwarded-host"],
                serde_json::json!(["gate.test"])
            );
        }
    }
}

/// The protocol is told from a connection's first bytes however they arrive: an HTTP/1.1 request
/// sent a byte at a time, whose first byte is also the preface's, is HTTP/1.1; HTTP/2's preface
/// sent in two pieces is HTTP/2.
#[tokio::test]
async fn the_protocol_is_told_apart_however_the_first_bytes_arrive() {
    let s = Setup::new().await;

    let mut stream = TcpStream::connect(s.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = b"PUT /public/bytewise HTTP/1.1\r\nHost: gate.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    for byte in request {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = read_to_close(&mut stream).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");

    let mut stream = TcpStream::connect(s.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The rest of the preface, then an empty SETTINGS frame.
    stream
        .write_all(b"\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // An HTTP/2 server's first frame is its SETTINGS (type 4, stream 0).
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut frame))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(frame[3], 4, "not a SETTINGS frame: {frame:?}");
    assert_eq!(&frame[5..9], &[0, 0, 0, 0], "not on stream 0: {frame:?}");
}
