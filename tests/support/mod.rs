//! Test harness: a real echo upstream and the real authgate, each on an ephemeral port, and a small
//! HTTP client (hyper for ordinary requests, raw TCP for targets no client library would send).
#![allow(dead_code)]

pub mod keys;
pub mod pg;
pub mod process;
pub mod tcp_relay;
pub mod websocket;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "integration-test-secret-0123456789-abcdefghijklmnop";

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
}

/// A real HTTP server standing in for the app: it records every request and answers
///  - `/echo-body…`: the request body, streamed back;
///  - `/slow…`: after 3 s;
///  - `/ws…` with a WebSocket handshake: a WebSocket that echoes each text message, prefixed with
///    the user id authgate told it;
///  - anything else: JSON with method, target and headers.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections2.fetch_add(1, Ordering::SeqCst);
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move { Ok::<_, hyper::Error>(upstream_answer(req, &seen).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

type TestBody = BoxBody<Bytes, hyper::Error>;

async fn upstream_answer(req: Request<Incoming>, seen: &Mutex<Vec<Seen>>) -> Response<TestBody> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        headers: req.headers().clone(),
    });
    if target.starts_with("/echo-body") {
        return Response::new(req.into_body().boxed());
    }
    if target.starts_with("/ws") {
        if let Some(key) = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| k.as_bytes().to_vec())
        {
            return websocket_echo(req, key);
        }
    }
    if target.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let entry = headers.entry(name.as_str()).or_insert_with(|| json!([]));
        entry
            .as_array_mut()
            .unwrap()
            .push(json!(String::from_utf8_lossy(value.as_bytes())));
    }
    let body = json!({ "method": req.method().as_str(), "target": target, "headers": headers });
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if target.contains("/close") {
        response
            .headers_mut()
            .insert("connection", "close".parse().unwrap());
    }
    response
}

fn websocket_echo(mut req: Request<Incoming>, key: Vec<u8>) -> Response<TestBody> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key, protocol::Role};
    let user = req
        .headers()
        .get("x-auth-user-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.unwrap();
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            ws.send(Message::text(format!("{user}: {text}")))
                .await
                .unwrap();
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-accept", derive_accept_key(&key))
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

/// Configuration text for a gate in front of `upstream_url`, storing in `store`, with cheap
/// argon2 parameters so tests run fast. `extra` is appended (more routes, for instance).
pub fn config_text(upstream_url: &str, store: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
header_read_timeout = "2s"
body_read_timeout = "1s"
[upstream]
url = "{upstream_url}"
timeout = "1s"
[tokens]
secret = "{SECRET}"
[store]
path = "{store}"
[passwords]
memory_kib = 1024
iterations = 1
parallelism = 1
[[routes]]
path = "/public/**"
access = "public"
[[routes]]
path = "/echo-body/**"
access = "public"
[[routes]]
path = "/admin/**"
access = "deny"
{extra}
"#,
        store = store.display()
    )
}

/// `config` with no grace for a just-rotated refresh token: presenting it again is reuse at once.
pub fn without_refresh_grace(config: String) -> String {
    config.replace("[tokens]\n", "[tokens]\nrefresh_reuse_interval = \"0s\"\n")
}

/// A running authgate.
pub struct Gate {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Gate {
    pub async fn start(config_text: &str) -> Gate {
        let config = authgate::Config::parse(config_text).expect("test config is valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            authgate::run(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("authgate runs");
        });
        wait_ready(addr).await;
        Gate {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts authgate down and waits until it has released the store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Waits until the gate at `addr` answers `/readyz` with 200 (revocations loaded).
pub async fn wait_ready(addr: SocketAddr) {
    for _ in 0..500 {
        if TcpStream::connect(addr).await.is_ok()
            && get(addr, "/readyz", &[]).await.status == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("authgate at {addr} did not become ready in 5s");
}

/// An upstream and a gate in front of it, with a fresh store in a temporary directory.
pub struct Setup {
    pub upstream: Upstream,
    pub gate: Gate,
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub async fn new() -> Setup {
        Setup::with_extra("").await
    }

    pub async fn with_extra(extra: &str) -> Setup {
        Setup::with_config(extra, |config| config).await
    }

    /// A gate whose configuration text is `edit`ed first (see `without_refresh_grace`).
    pub async fn with_config(extra: &str, edit: impl FnOnce(String) -> String) -> Setup {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::start(&edit(config_text(
            &upstream.url(),
            &dir.path().join("authgate.db"),
            extra,
        )))
        .await;
        Setup {
            upstream,
            gate,
            dir,
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("authgate.db")
    }

    pub fn addr(&self) -> SocketAddr {
        self.gate.addr
    }

    /// Registers `username` and logs in; returns (access token, refresh token).
    pub async fn login(&self, username: &str) -> (String, String) {
        Setup::login_at(self.addr(), username).await
    }

    /// Registers `username` (if new) at the gate on `addr` and logs in.
    pub async fn login_at(addr: SocketAddr, username: &str) -> (String, String) {
        let creds = json!({"username": username, "password": "a perfectly fine password"});
        let r = post_json(addr, "/register", &creds, &[]).await;
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
            "{r:?}"
        );
        let r = post_json(addr, "/login", &creds, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let body = r.json();
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        )
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `msg` of an authgate error answer.
    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A fresh HTTP/2 connection to `addr`, with prior knowledge: the sender for its requests.
pub async fn http2_sender(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends one request over a fresh HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "gate.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).unwrap()
}

pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, request("GET", target, headers, Bytes::new())).await
}

pub async fn get_with_token(addr: SocketAddr, target: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    get(addr, target, &[("authorization", &auth)]).await
}

pub async fn post_json(
    addr: SocketAddr,
    target: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Answer {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(addr, request("POST", target, &all, body.to_string())).await
}

pub async fn post_with_token(addr: SocketAddr, target: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    send(
        addr,
        request("POST", target, &[("authorization", &auth)], Bytes::new()),
    )
    .await
}

/// Writes `raw` bytes to authgate and returns what it answered (status line, headers, body), for
/// request targets and framings that a client library would refuse to send.
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    read_to_close(&mut stream).await
}

/// What authgate sends on `stream` until it closes the connection, which must be within 10 s.
pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "authgate did not close the connection in time; got {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Every value of `name` in `headers`, as text.
pub fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Sends a health check on a new connection to authgate, which is at its connection cap: checks
/// that no answer comes within half a second (the client waits its turn), and gives the
/// connection to read the answer from once a place frees (`answer_once_served`).
pub async fn health_check_held_at_the_cap(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut out)).await;
    assert!(
        early.is_err(),
        "served beyond the cap: {:?}",
        String::from_utf8_lossy(&out)
    );
    stream
}

/// The status of the answer on `stream`, which must come within 5 s.
pub async fn answer_once_served(stream: &mut TcpStream) -> u16 {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("served once a place freed")
        .unwrap();
    raw_status(&String::from_utf8_lossy(&out))
}

/// Writes `raw` to authgate from a task of its own while reading the answer, and returns what was
/// read before the connection ended. For answers that come before the request is all sent: a
/// client that only reads once it has written everything may find the connection reset first.
pub async fn send_raw_reading_early(addr: SocketAddr, raw: Vec<u8>) -> String {
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    tokio::spawn(async move { writer.write_all(&raw).await });
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(8), async {
        // A reset after the answer ends the read as the end of the stream would.
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "authgate did not close the connection in time; got {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw answer.
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Signs arbitrary claims with the test secret, for expired and hand-made tokens.
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The decoded payload of a token, without checking it.
pub fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hand-written upstream, for what hyper's server will not do on cue (close or reset a
/// keep-alive connection at a chosen moment): `serve` gets each accepted connection and its
/// number, from 1. Returns its port and a count of the connections it accepted.
pub async fn raw_upstream<F, Fut>(serve: F) -> (u16, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve(stream, number));
        }
    });
    (port, accepted)
}

/// Reads one request head and returns it (the requests given to a raw upstream have no body, or
/// one that is never read); `None` when the connection ends first.
pub async fn read_request_head(stream: &mut TcpStream) -> Option<String> {
    let (mut buf, mut head) = (vec![0u8; 8192], Vec::new());
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// authgate with one worker in front of the app on `port` (a `raw_upstream`), and the directory
/// that holds its store.
pub async fn gate_in_front_of(port: u16) -> (Gate, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = one_worker(config_text(
        &format!("http://127.0.0.1:{port}"),
        &dir.path().join("gate.db"),
        "",
    ));
    (Gate::start(&config).await, dir)
}

/// `config` with tokens taken from cookies as well as headers (the browser flow's setting).
pub fn tokens_in_cookies_too(config: String) -> String {
    config.replace(
        "[tokens]\n",
        "[tokens]\nlocation = [\"headers\", \"cookies\"]\n",
    )
}

/// A test config with one worker, so one upstream pool serves every request.
pub fn one_worker(config: String) -> String {
    config.replace("[server]\n", "[server]\nworkers = 1\n")
}

/// `config` for `logins_racing_a_password_change`: two hashing threads, so that a password change
/// hashes while logins verify, and no login throttle, since the logins after the change fail.
pub fn for_login_race(config: String) -> String {
    let raced = config.replace(
        "[passwords]\n",
        "[login_limits]\nper_user = 0\nper_address = 0\n[passwords]\nmax_concurrent_hashes = 2\n",
    );
    assert_ne!(raced, config, "the config has no [passwords] section");
    raced
}

/// Registers a user at `change_at` and logs them in 24 times, 12 ms apart (at each of `login_at`
/// in turn), while their password is changed at `change_at` once the first few logins are under
/// way. Returns the tokens of every login that succeeded, once the change has answered 200.
pub async fn logins_racing_a_password_change(
    login_at: &[SocketAddr],
    change_at: SocketAddr,
) -> Vec<(String, String)> {
    let old = json!({"username": "racer", "password": "the old password"});
    let r = post_json(change_at, "/register", &old, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = post_json(change_at, "/login", &old, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let changer = r.json()["access_token"].as_str().unwrap().to_string();

    let mut logins = Vec::new();
    let mut change = None;
    for i in 0..24 {
        let addr = login_at[i % login_at.len()];
        let body = old.clone();
        logins.push(tokio::spawn(async move {
            post_json(addr, "/login", &body, &[]).await
        }));
        if i == 6 {
            let auth = format!("Bearer {changer}");
            change = Some(tokio::spawn(async move {
                let body =
                    json!({"old_password": "the old password", "new_password": "the new password"});
                post_json(change_at, "/password", &body, &[("authorization", &auth)]).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    let changed = change.unwrap().await.unwrap();
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    let mut survivors = Vec::new();
    let mut refused = 0;
    for login in logins {
        let r = login.await.unwrap();
        match r.status {
            StatusCode::OK => {
                let body = r.json();
                survivors.push((
                    body["access_token"].as_str().unwrap().to_string(),
                    body["refresh_token"].as_str().unwrap().to_string(),
                ));
            }
            StatusCode::UNAUTHORIZED => refused += 1,
            other => panic!("a login answered {other}: {r:?}"),
        }
    }
    eprintln!(
        "{} logins succeeded, {refused} were refused",
        survivors.len()
    );
    survivors
}

/// The cookies a browser would hold after `answer`: name → value, cleared ones removed.
pub fn jar(answer: &Answer) -> Vec<(String, String)> {
    let mut jar: Vec<(String, String)> = Vec::new();
    for line in values(&answer.headers, "set-cookie") {
        let pair = line.split(';').next().unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        jar.retain(|(n, _)| n != name);
        if !line.contains("Max-Age=0") {
            jar.push((name.to_string(), value.to_string()));
        }
    }
    jar
}

pub fn cookie_header(jar: &[(String, String)]) -> String {
    let pairs: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("; ")
}

pub fn value<'a>(jar: &'a [(String, String)], name: &str) -> &'a str {
    jar.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {jar:?}"))
}

/// The access cookie of `jar`, re-signed as expired a minute ago.
pub fn expired_access(jar: &[(String, String)]) -> String {
    let mut claims = payload(value(jar, "access_token_cookie"));
    claims["iat"] = json!(now() - 1000);
    claims["nbf"] = json!(now() - 1000);
    claims["exp"] = json!(now() - 60);
    sign(&claims)
}

/// The `Cookie` header of `jar` with `access` as its access cookie.
pub fn with_access(jar: &[(String, String)], access: &str) -> String {
    let mut jar = jar.to_vec();
    jar.retain(|(n, _)| n != "access_token_cookie");
    jar.push(("access_token_cookie".into(), access.into()));
    cookie_header(&jar)
}

/// A header name as CGI, WSGI, PHP and friends read it: lower case, any mark read as `-`.
pub fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_lowercase() as char
            } else {
                '-'
            }
        })
        .collect()
}

/// Every value of a header the app would read as `name` (folded), in any spelling.
pub fn header_values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .iter()
        .filter(|(n, _)| fold(n.as_str()) == name)
        .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}
