//! The load benchmark of BENCHMARKS.md, in one run on one machine:
//! (a) wrk straight to a fast upstream, (b) through nginx as a plain keep-alive reverse proxy
//! (the same request as (c), bearer token included; and once more without it),
//! (c) through authgate on an authenticated route with a valid token, (d) through authgate on a
//! public route; then proxied latency while 64 clients hammer /login, memory, and start-up with one
//! million revocations in the store.
//!
//! Then the second configuration, where nginx serves the app's answer itself and wrk has one
//! thread (`nginx_app`; alone, with as many pairs and seconds per run as wanted: `loadbench
//! nginx-app BINARY [PAIRS [SECONDS]]`), since a result that flips with the harness is not a
//! result. With many pairs it gives each ratio's geometric mean and a 95 % confidence interval;
//! each pair runs on processes started for it (`warmed_up` says why).
//!
//! Run it with `bench/load.sh` (which installs wrk and nginx and makes the profile-guided release
//! build of authgate). The same binary, started as `loadbench upstream`, is the fast upstream, so
//! its CPU is counted apart from the load generator's; started as `loadbench train BINARY`, it is
//! the training run of that build (`bench/pgo.sh`); as `loadbench logouts BINARY before|after`, it
//! measures start-up and memory after a month of logouts; as `loadbench refreshes BINARY
//! [POSTGRES_URL]`, the time a refresh takes (BENCHMARKS.md).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const SECRET: &str = "loadbench-secret-0123456789-abcdefghijklmnopqrstuv";

struct Settings {
    duration: u64,
    connections: u32,
    threads: u32,
    /// How many back-to-back pairs compare nginx and authgate, in either configuration.
    pairs: usize,
    /// The authgate binary measured: by default the one built beside this benchmark.
    authgate: Option<PathBuf>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("upstream"), None, None) => return run_upstream(),
        (Some("logouts"), Some(binary), Some(written)) => {
            let count = args.get(4).map_or(Some(1_000_000), |n| n.parse().ok());
            return logouts(Path::new(binary), written, count.unwrap_or_else(|| usage()));
        }
        (Some("refreshes"), Some(binary), database) => {
            return refreshes(Path::new(binary), database.map(String::as_str));
        }
        (Some("nginx-app"), Some(binary), pairs) => {
            let positive = |arg: Option<&String>, default| {
                let n = arg.map_or(Some(default), |a| a.parse().ok().filter(|&n| n >= 1));
                n.unwrap_or_else(|| usage())
            };
            let (pairs, seconds) = (positive(pairs, 3), positive(args.get(4), 8));
            let dir = tempfile::tempdir().unwrap();
            let (_upstream, upstream_port) = start_upstream();
            let gate_port = free_port();
            let config = write_config(dir.path(), gate_port, upstream_port);
            let gate = start_authgate(Path::new(binary), &config);
            wait_ready(gate_port);
            let token = bench_token(gate_port);
            drop(gate);
            let settings = Settings {
                duration: seconds as u64,
                connections: 32,
                threads: 1,
                pairs,
                authgate: None,
            };
            return nginx_app(Path::new(binary), dir.path(), &token, &settings);
        }
        (Some("train"), Some(binary), seconds) => {
            let seconds = seconds.map_or(Some(8), |s| s.parse().ok());
            return train(Path::new(binary), seconds.unwrap_or_else(|| usage()));
        }
        _ => {}
    }
    let mut settings = Settings {
        duration: 10,
        connections: 32,
        threads: 2,
        pairs: 3,
        authgate: None,
    };
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next();
        let number = value.and_then(|v| v.parse().ok());
        match (flag.as_str(), number) {
            ("--duration", Some(v)) => settings.duration = v,
            ("--connections", Some(v)) => settings.connections = v as u32,
            ("--threads", Some(v)) => settings.threads = v as u32,
            ("--pairs", Some(v)) if v >= 1 => settings.pairs = v as usize,
            ("--authgate", _) if value.is_some() => settings.authgate = value.map(PathBuf::from),
            _ => usage(),
        }
    }
    orchestrate(&settings);
}

fn usage() -> ! {
    eprintln!(
        "usage: loadbench [--duration SECONDS] [--connections N] [--threads N] [--pairs N]\n\
         \x20                [--authgate BINARY]\n\
         \x20      loadbench nginx-app BINARY [PAIRS [SECONDS]]\n\
         \x20      loadbench train BINARY [SECONDS]\n\
         \x20      loadbench logouts BINARY before|after [COUNT]\n\
         \x20      loadbench refreshes BINARY [POSTGRES_URL]\n\
         \x20      loadbench upstream"
    );
    std::process::exit(2);
}

// ---------------------------------------------------------------------------------------------
// The fast upstream: "ok" to everything, and the number of connections it accepted at /__connections.

fn run_upstream() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            connections.fetch_add(1, Ordering::Relaxed);
            let connections = connections.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/__connections" {
                        Bytes::from(connections.load(Ordering::Relaxed).to_string())
                    } else {
                        Bytes::from_static(b"ok\n")
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Processes and /proc.

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process and all its descendants (nginx's workers).
fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
                    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
                    let ppid: u32 = after
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    if ppid == parent && !all.contains(&child) {
                        all.push(child);
                    }
                }
            }
        }
        i += 1;
    }
    all
}

/// (user, system) CPU seconds spent so far by `pids`, threads included.
fn cpu_seconds(pids: &[u32]) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (utime / ticks, stime / ticks)
        })
        .fold((0.0, 0.0), |(u, s), (du, ds)| (u + du, s + ds))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client for set-up calls (register, login, readiness, upstream counters).

fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_code(&status_line);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    let body = rest
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The status code of an HTTP/1.1 status line; 0 when there is none.
fn status_code(status_line: &str) -> u16 {
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn json_field(body: &str, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    v[field].as_str().unwrap_or_default().to_string()
}

fn upstream_connections(port: u16) -> u64 {
    http(port, "GET", "/__connections", &[], "")
        .1
        .trim()
        .parse()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The training run of a profile-guided build (bench/pgo.sh): the traffic a sidecar sees, sent to
// the authgate binary given, so its profile says which code is hot. Mostly authenticated
// requests, then public ones, and in proportion the rest: bodies, refused tokens, login, refresh
// and logout. Every answer's status is checked, so the run doubles as a smoke test of the binary.

fn train(binary: &Path, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, upstream_port) = start_upstream();
    let gate_port = free_port();
    let config = write_config(dir.path(), gate_port, upstream_port);
    let gate = start_authgate(binary, &config);
    wait_ready(gate_port);

    let creds = r#"{"username":"trainer","password":"a perfectly fine password"}"#;
    let json = [("Content-Type", "application/json")];
    assert_eq!(http(gate_port, "POST", "/register", &json, creds).0, 201);
    let (status, body) = http(gate_port, "POST", "/login", &json, creds);
    assert_eq!(status, 200, "login: {body}");
    let token = json_field(&body, "access_token");

    let authenticated = format!(
        "GET /api/items?page=2 HTTP/1.1\r\nHost: app\r\nUser-Agent: trainer\r\nAccept: */*\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let item = format!("{{\"name\":\"{}\"}}", "x".repeat(200));
    let posted = format!(
        "POST /api/items HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{item}",
        item.len()
    );
    let public = "GET /public/logo.svg HTTP/1.1\r\nHost: app\r\nAccept: */*\r\n\r\n".to_string();
    let missing = "GET /api/items HTTP/1.1\r\nHost: app\r\n\r\n".to_string();
    // One character of the signature changed (a whole one, not the last with its padding bits):
    // refused where the signature is verified.
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() - 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let forged = format!(
        "GET /api/items HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {}\r\n\r\n",
        String::from_utf8(tampered).unwrap()
    );
    // Per 64 requests on a connection: 60 authenticated GETs, 2 POSTs with a body, one without
    // a token and one with a forged one.
    let mix: Vec<(&str, u16)> = (0..64)
        .map(|i| match i {
            10 | 40 => (posted.as_str(), 200),
            20 => (missing.as_str(), 401),
            50 => (forged.as_str(), 401),
            _ => (authenticated.as_str(), 200),
        })
        .collect();
    let public_mix = [(public.as_str(), 200)];

    let started = Instant::now();
    let sent = drive(gate_port, &mix, Duration::from_secs(seconds * 3 / 4 + 1))
        + drive(gate_port, &public_mix, Duration::from_secs(seconds / 4 + 1));
    // The session's life: login, refresh, a request, logout, then the revoked token refused.
    for _ in 0..16 {
        let (status, body) = http(gate_port, "POST", "/login", &json, creds);
        assert_eq!(status, 200, "login: {body}");
        let refresh = json_field(&body, "refresh_token");
        let bearer = format!("Bearer {refresh}");
        let (status, body) = http(
            gate_port,
            "POST",
            "/refresh",
            &[("Authorization", &bearer)],
            "",
        );
        assert_eq!(status, 200, "refresh: {body}");
        let access = format!("Bearer {}", json_field(&body, "access_token"));
        let status_of =
            |method, path| http(gate_port, method, path, &[("Authorization", &access)], "").0;
        assert_eq!(status_of("GET", "/api/me"), 200);
        assert_eq!(status_of("POST", "/logout"), 200);
        assert_eq!(status_of("GET", "/api/me"), 401, "a revoked token");
    }
    println!(
        "trained {} with {sent} proxied requests and 16 sessions in {:.1} s",
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    // SIGTERM: an instrumented binary writes its profile as it exits.
    drop(gate);
}

/// Sends `mix` round and round on 8 keep-alive connections for `duration`, checking each status.
fn drive(port: u16, mix: &[(&str, u16)], duration: Duration) -> u64 {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(move || {
                    let deadline = Instant::now() + duration;
                    let mut connection = KeepAlive::new(port);
                    let mut sent = 0u64;
                    while Instant::now() < deadline {
                        for (request, expected) in mix {
                            let status = connection.exchange(request.as_bytes());
                            assert_eq!(status, *expected, "{request}");
                            sent += 1;
                        }
                    }
                    sent
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

/// One HTTP/1.1 keep-alive connection, opened again when the server closes it.
struct KeepAlive {
    port: u16,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    fn new(port: u16) -> Self {
        KeepAlive { port, stream: None }
    }

    /// Writes one request and reads its answer; gives the status.
    fn exchange(&mut self, request: &[u8]) -> u16 {
        let reader = self.stream.get_or_insert_with(|| {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            stream.set_nodelay(true).unwrap();
            BufReader::new(stream)
        });
        reader.get_mut().write_all(request).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = status_code(&line);
        let (mut length, mut close) = (0usize, false);
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let field = line.trim_end();
            if field.is_empty() {
                break;
            }
            let (name, value) = field.split_once(':').unwrap_or((field, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(reader, &mut body).unwrap();
        if close {
            self.stream = None;
        }
        status
    }
}

// ---------------------------------------------------------------------------------------------
// wrk.

#[derive(Default, Clone)]
struct Load {
    requests: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn duration_ms(text: &str) -> f64 {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

fn parse_wrk(output: &str) -> Load {
    let mut load = Load::default();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => load.p50_ms = duration_ms(v),
            ["99%", v] => load.p99_ms = duration_ms(v),
            ["Requests/sec:", v] => load.per_second = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                load.errors += n.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", ..] => {
                load.errors += words
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    load
}

fn wrk(
    settings: &Settings,
    url: &str,
    headers: &[String],
    script: Option<&Path>,
    connections: u32,
) -> Child {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", settings.threads))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", settings.duration))
        .arg("--latency");
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk runs (bench/load.sh installs it)")
}

struct Measured {
    load: Load,
    cpu_ms_per_1000: f64,
    /// The part of it spent in user space; the rest is the kernel's (loopback TCP, mostly).
    user_ms_per_1000: f64,
    new_upstream_per_1000: f64,
    /// The whole machine over the run (`MachineTime`): its busy time and steal, in seconds.
    machine: MachineTime,
}

impl Measured {
    /// The time the hypervisor gave to other guests during the run, as a share of one core.
    fn steal(&self, settings: &Settings) -> f64 {
        self.machine.steal / settings.duration as f64
    }
}

fn measure(
    settings: &Settings,
    url: &str,
    headers: &[String],
    serving: &[u32],
    upstream_port: u16,
) -> Measured {
    // Each process once: `serving` may name a process and its parent (the app's worker beside
    // its master), whose family holds it too. Counted twice until the sixth session of issue 18,
    // the app's worker added its CPU again to both proxies' in the second configuration.
    let mut pids: Vec<u32> = serving.iter().flat_map(|&p| family(p)).collect();
    pids.sort_unstable();
    pids.dedup();
    let cpu_before = cpu_seconds(&pids);
    let conns_before = upstream_connections(upstream_port);
    let machine_before = MachineTime::now();
    let out = wrk(settings, url, headers, None, settings.connections)
        .wait_with_output()
        .unwrap();
    let machine = MachineTime::now().since(machine_before);
    let cpu_after = cpu_seconds(&pids);
    let (user, system) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    // The counter request itself opens one connection.
    let conns = upstream_connections(upstream_port).saturating_sub(conns_before + 1);
    let load = parse_wrk(&String::from_utf8_lossy(&out.stdout));
    assert!(
        load.requests > 0.0,
        "wrk measured nothing at {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Measured {
        cpu_ms_per_1000: (user + system) * 1000.0 / load.requests * 1000.0,
        user_ms_per_1000: user * 1000.0 / load.requests * 1000.0,
        new_upstream_per_1000: conns as f64 / load.requests * 1000.0,
        load,
        machine,
    }
}

// ---------------------------------------------------------------------------------------------

fn start_authgate(binary: &Path, config: &Path) -> Proc {
    let child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the authgate binary starts");
    Proc { child }
}

/// The fast upstream, this binary again as `loadbench upstream`, and the port it listens on.
fn start_upstream() -> (Proc, u16) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("upstream")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc { child }, line.trim().parse().unwrap())
}

/// nginx as a plain reverse proxy (a worker per core, upstream keep-alive 64, HTTP/1.1) and
/// authgate, both in front of the app on `app_port`, with their files in `dir`, both ready.
struct Proxies {
    nginx: Proc,
    gate: Proc,
    nginx_port: u16,
    gate_port: u16,
    config: PathBuf,
}

fn start_proxies(dir: &Path, authgate_bin: &Path, app_port: u16) -> Proxies {
    let nginx_port = free_port();
    let nginx = start_nginx(
        &dir.join("nginx-proxy"),
        "auto",
        &format!(
            "upstream app {{ server 127.0.0.1:{app_port}; keepalive 64; }}\n\
             server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://app; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
    );
    let gate_port = free_port();
    let config = write_config(dir, gate_port, app_port);
    let gate = start_authgate(authgate_bin, &config);
    wait_for_port(nginx_port);
    wait_ready(gate_port);
    Proxies {
        nginx,
        gate,
        nginx_port,
        gate_port,
        config,
    }
}

/// The first configuration's processes, all ready: loadbench's upstream, nginx as a plain
/// reverse proxy with upstream keep-alive, and authgate with its configuration and store in `dir`.
struct First {
    nginx: Proc,
    gate: Proc,
    upstream: Proc,
    upstream_port: u16,
    nginx_port: u16,
    gate_port: u16,
    config: PathBuf,
}

fn start_first(dir: &Path, authgate_bin: &Path) -> First {
    std::fs::create_dir_all(dir).unwrap();
    let (upstream, upstream_port) = start_upstream();
    let Proxies {
        nginx,
        gate,
        nginx_port,
        gate_port,
        config,
    } = start_proxies(dir, authgate_bin, upstream_port);
    First {
        nginx,
        gate,
        upstream,
        upstream_port,
        nginx_port,
        gate_port,
        config,
    }
}

/// Runs wrk for a second at each of `urls`, unmeasured, so that both proxies of a pair start
/// their measured run with connections open and their memory touched.
///
/// Pairs are measured on processes started for them: much of what makes one run faster than the
/// next (where the heap landed, which core a thread settled on) holds for a process's life, so
/// pairs measured on the same processes vary together and their confidence interval would be too
/// narrow.
fn warmed_up(settings: &Settings, urls: &[&str], headers: &[String]) {
    let one_second = Settings {
        duration: 1,
        pairs: 1,
        authgate: None,
        ..*settings
    };
    for url in urls {
        let out = wrk(&one_second, url, headers, None, settings.connections);
        out.wait_with_output().unwrap();
    }
}

/// authgate's configuration for a benchmark: the store in `dir`, no login throttling (one address
/// logs in many times), and `/public/**` open to all. Access tokens last a day: one token is
/// sent throughout, and a run with many pairs outlasts the default quarter of an hour (at 20
/// pairs, the second configuration's last pairs got nothing but 401s).
fn write_config(dir: &Path, gate_port: u16, upstream_port: u16) -> PathBuf {
    let config = dir.join("authgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{gate_port}\"\n[upstream]\nurl = \"http://127.0.0.1:{upstream_port}\"\n\
             [tokens]\nsecret = \"{SECRET}\"\naccess_ttl = \"24h\"\n[store]\npath = \"{}\"\n[login_limits]\nper_user = 0\nper_address = 0\n\
             [[routes]]\npath = \"/public/**\"\naccess = \"public\"\n",
            dir.join("authgate.db").display()
        ),
    )
    .unwrap();
    config
}

fn wait_ready(port: u16) -> Duration {
    let start = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/readyz", &[], "").0 == 200
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "authgate never became ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn orchestrate(settings: &Settings) {
    let me = std::env::current_exe().unwrap();
    let authgate_bin = settings.authgate.clone().unwrap_or_else(|| {
        let release_dir = me.parent().and_then(Path::parent).unwrap();
        release_dir.join("authgate")
    });
    assert!(
        authgate_bin.exists(),
        "{} missing: run bench/load.sh",
        authgate_bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    println!(
        "# authgate load benchmark: wrk -t{} -c{} -d{}s, keep-alive, on {} cores; authgate is {}",
        settings.threads,
        settings.connections,
        settings.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        authgate_bin.display()
    );

    let first = start_first(dir.path(), &authgate_bin);
    let (upstream_port, nginx_port, gate_port) =
        (first.upstream_port, first.nginx_port, first.gate_port);
    let (config, store) = (first.config.clone(), dir.path().join("authgate.db"));
    let creds = r#"{"username":"bench","password":"a perfectly fine password"}"#;
    let token = bench_token(gate_port);
    let auth = vec![format!("Authorization: Bearer {token}")];
    let idle_rss = rss_mib(first.gate.child.id());

    let up = first.upstream.child.id();
    println!(
        "\n| run | requests/s | p50 | p99 | CPU ms / 1000 req | of which user | new upstream conns / 1000 req | steal, % of a core |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, m: &Measured| {
        println!(
            "| {name} | {:.0} | {:.3} ms | {:.3} ms | {:.1} | {:.1} | {:.3} | {:.1} % |{}",
            m.load.per_second,
            m.load.p50_ms,
            m.load.p99_ms,
            m.cpu_ms_per_1000,
            m.user_ms_per_1000,
            m.new_upstream_per_1000,
            m.steal(settings) * 100.0,
            if m.load.errors > 0 {
                format!(" ({} errors)", m.load.errors)
            } else {
                String::new()
            }
        )
    };
    let direct = format!("http://127.0.0.1:{upstream_port}/api/x");
    let via_nginx = format!("http://127.0.0.1:{nginx_port}/api/x");
    let via_gate = format!("http://127.0.0.1:{gate_port}/api/x");
    let gate_public = format!("http://127.0.0.1:{gate_port}/public/x");
    let (nginx_pids, gate_pids) = ([up, first.nginx.child.id()], [up, first.gate.child.id()]);
    let run = |settings: &Settings, url: &str, headers: &[String], pids: &[u32]| {
        measure(settings, url, headers, pids, upstream_port)
    };
    warmed_up(settings, &[&via_nginx, &via_gate], &auth);
    let a = run(settings, &direct, &[], &[up]);
    row("(a) direct to the upstream", &a);
    // nginx gets the same request as authgate, bearer token included: a client sends it whoever
    // is in front of the app, and reading and passing on its 250 bytes costs a proxy too.
    let b = run(settings, &via_nginx, &auth, &nginx_pids);
    row("(b) nginx, plain reverse proxy, same request", &b);
    // And without the token, as earlier rounds measured it.
    let b0 = run(settings, &via_nginx, &[], &nginx_pids);
    row("(b0) nginx, the request without the token", &b0);
    let c = run(settings, &via_gate, &auth, &gate_pids);
    row("(c) authgate, authenticated route, valid token", &c);
    let d = run(settings, &gate_public, &[], &gate_pids);
    row("(d) authgate, public route", &d);
    // The latency authgate adds, without queueing: one connection, one request at a time. Under
    // 32 connections on two shared cores p99 is mostly the wait for a core (the direct run, whose
    // upstream shares them with wrk, has the worst p99 of all), so (c) - (a) says nothing there.
    let one = Settings {
        duration: settings.duration,
        connections: 1,
        threads: 1,
        pairs: 1,
        authgate: None,
    };
    let a1 = run(&one, &direct, &auth, &[up]);
    row("(a1) direct, one connection", &a1);
    let c1 = run(&one, &via_gate, &auth, &gate_pids);
    row("(c1) authgate, authenticated, one connection", &c1);
    // c against b is the target, and one 10 s run swings by ±10 % on two shared cores: more
    // pairs, each measured back to back, and their ratios' median (three pairs by default). Each
    // further pair has processes of its own (see `warmed_up`).
    let (mut speed, mut cpu, mut steal) = (Vec::new(), Vec::new(), Vec::new());
    let mut note = |pair: usize, b: &Measured, c: &Measured| {
        if counts(pair, b, c) {
            speed.push(c.load.per_second / b.load.per_second);
            cpu.push(c.cpu_ms_per_1000 / b.cpu_ms_per_1000);
            steal.push(c.steal(settings) - b.steal(settings));
        }
    };
    note(1, &b, &c);
    for pair in 2..=settings.pairs {
        let fresh = start_first(&dir.path().join(format!("pair-{pair}")), &authgate_bin);
        let up = fresh.upstream.child.id();
        let (nginx_pids, gate_pids) = ([up, fresh.nginx.child.id()], [up, fresh.gate.child.id()]);
        let via_nginx = format!("http://127.0.0.1:{}/api/x", fresh.nginx_port);
        let via_gate = format!("http://127.0.0.1:{}/api/x", fresh.gate_port);
        warmed_up(settings, &[&via_nginx, &via_gate], &auth);
        let (b, c) = in_turn(
            pair,
            || {
                measure(
                    settings,
                    &via_nginx,
                    &auth,
                    &nginx_pids,
                    fresh.upstream_port,
                )
            },
            || measure(settings, &via_gate, &auth, &gate_pids, fresh.upstream_port),
        );
        row(&format!("(b) nginx, pair {pair}"), &b);
        row(&format!("(c) authgate, pair {pair}"), &c);
        note(pair, &b, &c);
    }
    println!(
        "\nratios: c/a requests/s = {:.2}, c/b requests/s = {:.2}, c/b CPU per request = {:.2}",
        c.load.per_second / a.load.per_second,
        c.load.per_second / b.load.per_second,
        c.cpu_ms_per_1000 / b.cpu_ms_per_1000,
    );
    println!("c/b in {} pairs:", speed.len());
    println!("- requests/s: {}", summary(&speed));
    println!("- CPU per request: {}", summary(&cpu));
    println!(
        "{}",
        at_equal_steal(&steal, &[("requests/s", &speed), ("CPU", &cpu)])
    );
    println!(
        "added latency of (c1) over (a1), one connection: p50 {:+.3} ms, p99 {:+.3} ms (under 32 connections: p50 {:+.3} ms, p99 {:+.3} ms)",
        c1.load.p50_ms - a1.load.p50_ms,
        c1.load.p99_ms - a1.load.p99_ms,
        c.load.p50_ms - a.load.p50_ms,
        c.load.p99_ms - a.load.p99_ms,
    );
    println!(
        "against nginx without the token: c/b0 requests/s = {:.2}, c/b0 CPU per request = {:.2}",
        c.load.per_second / b0.load.per_second,
        c.cpu_ms_per_1000 / b0.cpu_ms_per_1000,
    );
    println!(
        "busy RSS of authgate after the runs: {:.1} MiB (idle after start: {idle_rss:.1} MiB)",
        rss_mib(first.gate.child.id())
    );

    // Login isolation: proxied p99 while 64 clients keep hitting /login, against proxied p99
    // measured just before with nothing else running. p99 on two shared cores varies by up to 2x
    // from one run to the next even with no flood, so this is three such pairs and their median.
    let script = dir.path().join("login.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = '{creds}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
    )
    .unwrap();
    let mut ratios = Vec::new();
    println!();
    for pair in 1..=3 {
        let idle = run(settings, &via_gate, &auth, &gate_pids);
        let flood = wrk(
            settings,
            &format!("http://127.0.0.1:{gate_port}/login"),
            &[],
            Some(&script),
            64,
        );
        std::thread::sleep(Duration::from_millis(300));
        let during = run(settings, &via_gate, &auth, &gate_pids);
        let flood_out = flood.wait_with_output().unwrap();
        let flood_load = parse_wrk(&String::from_utf8_lossy(&flood_out.stdout));
        let ratio = during.load.p99_ms / idle.load.p99_ms;
        ratios.push(ratio);
        println!(
            "login flood {pair} (64 clients on /login): proxied p99 {:.3} ms vs {:.3} ms idle just before = {ratio:.2}x; proxied {:.0} req/s vs {:.0} idle; logins answered {:.0}/s, of which non-200 (503 busy) {}",
            during.load.p99_ms,
            idle.load.p99_ms,
            during.load.per_second,
            idle.load.per_second,
            flood_load.per_second,
            flood_load.errors
        );
    }
    println!(
        "login flood: median proxied p99 flood / idle = {:.2}x (all: {})",
        median(&ratios),
        listed(&ratios, "x")
    );
    let First {
        upstream,
        nginx,
        gate,
        ..
    } = first;
    drop(gate);

    // One million revocations in force (a million logouts within the access window, the worst
    // case): start-up to ready, and memory.
    let seeded = seed_revocations(&store, 1_000_000);
    let gate = start_authgate(&authgate_bin, &config);
    let ready = wait_ready(gate_port);
    println!(
        "\nwith {seeded} revoked sessions in the store: start-up to ready {:.2} s, RSS {:.1} MiB",
        ready.as_secs_f64(),
        rss_mib(gate.child.id())
    );
    drop(gate);
    drop(nginx);
    drop(upstream);

    let second = Settings {
        duration: 8,
        connections: 32,
        threads: 1,
        pairs: settings.pairs,
        authgate: None,
    };
    nginx_app(&authgate_bin, dir.path(), &token, &second);
}

/// Registers the benchmark's user at the gate on `port` and logs in: its access token.
fn bench_token(port: u16) -> String {
    let creds = r#"{"username":"bench","password":"a perfectly fine password"}"#;
    let json = [("Content-Type", "application/json")];
    assert_eq!(http(port, "POST", "/register", &json, creds).0, 201);
    let (status, body) = http(port, "POST", "/login", &json, creds);
    assert_eq!(status, 200);
    json_field(&body, "access_token")
}

/// The second configuration: nginx serves a small static answer as the app (one worker, as a
/// small app would have), nginx as a plain reverse proxy in front of it (a worker per core,
/// upstream keep-alive 64, HTTP/1.1, no access log) against authgate on the same request with
/// the same bearer token, wrk with `settings` (`-t1 -c32 -d8s` in a full run), in
/// `settings.pairs` back-to-back pairs, each on processes started for it. CPU per request
/// counts the proxy and the app; the whole machine's counts wrk and the kernel's own threads
/// too (`MachineTime`), whose work a proxy changes as well.
fn nginx_app(authgate_bin: &Path, dir: &Path, token: &str, settings: &Settings) {
    let auth = vec![format!("Authorization: Bearer {token}")];
    println!(
        "\n# second configuration: nginx serves the app's answer (1 worker); wrk -t1 -c32 -d{seconds}s; \
         nginx proxy with a worker per core, keepalive 64",
        seconds = settings.duration
    );
    println!(
        "\n| run | requests/s | p50 | p99 | CPU ms / 1000 req | of which user | of which the app's (user) | the machine's, wrk and softirq included (softirq) | steal, % of a core |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    // The app's share, measured over the same run: a proxy that makes the app work harder (more
    // or longer header fields, more reads) pays for it here too.
    let measure = |url: &str, pids: &[u32], app_pids: &[u32], app_port: u16| {
        let before = cpu_seconds(app_pids);
        let m = measure(settings, url, &auth, pids, app_port);
        let after = cpu_seconds(app_pids);
        let per_1000 = |seconds: f64| seconds * 1e6 / m.load.requests;
        let app = (
            per_1000(after.0 + after.1 - before.0 - before.1),
            per_1000(after.0 - before.0),
        );
        let whole = (per_1000(m.machine.busy), per_1000(m.machine.softirq));
        let steal = m.steal(settings);
        (m, app, whole, steal)
    };
    type Run = (Measured, (f64, f64), (f64, f64), f64);
    let row = |name: &str, (m, app, whole, steal): &Run| {
        println!(
            "| {name} | {:.0} | {:.3} ms | {:.3} ms | {:.1} | {:.1} | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.1} % |{}",
            m.load.per_second,
            m.load.p50_ms,
            m.load.p99_ms,
            m.cpu_ms_per_1000,
            m.user_ms_per_1000,
            app.0,
            app.1,
            whole.0,
            whole.1,
            steal * 100.0,
            if m.load.errors > 0 {
                format!(" ({} errors)", m.load.errors)
            } else {
                String::new()
            }
        )
    };
    let (mut speed, mut cpu, mut own, mut machine, mut steal) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pair in 1..=settings.pairs {
        let fresh = start_second(&dir.join(format!("second-{pair}")), authgate_bin);
        let app_pids = family(fresh.app.child.id());
        let with_app = |pid: u32| [&[pid][..], &app_pids].concat();
        let proxy_pids = with_app(fresh.proxy.child.id());
        let gate_pids = with_app(fresh.gate.child.id());
        let via_nginx = format!("http://127.0.0.1:{}/api/x", fresh.proxy_port);
        let via_gate = format!("http://127.0.0.1:{}/api/x", fresh.gate_port);
        warmed_up(settings, &[&via_nginx, &via_gate], &auth);
        let (b, c) = in_turn(
            pair,
            || measure(&via_nginx, &proxy_pids, &app_pids, fresh.app_port),
            || measure(&via_gate, &gate_pids, &app_pids, fresh.app_port),
        );
        row(&format!("(b) nginx, pair {pair}"), &b);
        row(&format!("(c) authgate, pair {pair}"), &c);
        let ((b, b_app, b_whole, b_steal), (c, c_app, c_whole, c_steal)) = (b, c);
        if !counts(pair, &b, &c) {
            continue;
        }
        steal.push(c_steal - b_steal);
        speed.push(c.load.per_second / b.load.per_second);
        cpu.push(c.cpu_ms_per_1000 / b.cpu_ms_per_1000);
        own.push((c.cpu_ms_per_1000 - c_app.0) / (b.cpu_ms_per_1000 - b_app.0));
        machine.push(c_whole.0 / b_whole.0);
    }
    println!("second configuration, c/b in {} pairs:", speed.len());
    println!("- requests/s: {}", summary(&speed));
    println!("- CPU per request: {}", summary(&cpu));
    println!(
        "- the proxy's own CPU per request (the app's taken out): {}",
        summary(&own)
    );
    println!(
        "- the whole machine's CPU per request (wrk and softirq included): {}",
        summary(&machine)
    );
    println!(
        "{}",
        at_equal_steal(&steal, &[("requests/s", &speed), ("CPU", &cpu)])
    );
}

/// The second configuration's processes, all ready, with their files in `dir`: nginx as the
/// app, nginx as a plain reverse proxy in front of it, and authgate.
struct Second {
    proxy: Proc,
    gate: Proc,
    app: Proc,
    app_port: u16,
    proxy_port: u16,
    gate_port: u16,
}

fn start_second(dir: &Path, authgate_bin: &Path) -> Second {
    std::fs::create_dir_all(dir).unwrap();
    let app_port = free_port();
    let app = start_nginx(
        &dir.join("nginx-app"),
        "1",
        &format!(
            "server {{ listen 127.0.0.1:{app_port}; location / {{ return 200 \"ok\\n\"; }} }}"
        ),
    );
    wait_for_port(app_port);
    let Proxies {
        nginx: proxy,
        gate,
        nginx_port: proxy_port,
        gate_port,
        ..
    } = start_proxies(dir, authgate_bin, app_port);
    Second {
        proxy,
        gate,
        app,
        app_port,
        proxy_port,
        gate_port,
    }
}

/// nginx with `workers` worker processes serving `http_body` (servers and upstreams), its files
/// in `dir`.
fn start_nginx(dir: &Path, workers: &str, http_body: &str) -> Proc {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  {http_body}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    Proc {
        child: Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .spawn()
            .expect("nginx runs (bench/load.sh installs it)"),
    }
}

/// CPU seconds over all of this machine's cores since boot, from /proc/stat: busy (everything
/// but idle, I/O wait and steal), of which softirq, and steal.
///
/// Busy time per request is what the whole run cost: the proxy and the app, and also wrk, whose
/// work a proxy changes too (by how it batches its answers), and whatever the kernel did in
/// threads of its own. Softirq is the loopback's TCP work: a fifth of the machine in the second
/// configuration. (With the kernel's tick-based accounting it is also counted to the process
/// that was running, so it is in the processes' CPU as well; with `IRQ_TIME_ACCOUNTING` it would
/// be in no process's.) Steal is the time the hypervisor gave to other guests: a run that lost
/// time to its neighbours shows there.
#[derive(Clone, Copy, Default)]
struct MachineTime {
    busy: f64,
    softirq: f64,
    steal: f64,
}

impl MachineTime {
    fn now() -> MachineTime {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu = stat.lines().next().unwrap_or_default();
        // user nice system idle iowait irq softirq steal: in USER_HZ ticks.
        let ticks: Vec<f64> = cpu
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse().unwrap_or(0.0))
            .collect();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / 100.0;
        MachineTime {
            busy: tick(0) + tick(1) + tick(2) + tick(5) + tick(6),
            softirq: tick(6),
            steal: tick(7),
        }
    }

    fn since(self, before: MachineTime) -> MachineTime {
        MachineTime {
            busy: self.busy - before.busy,
            softirq: self.softirq - before.softirq,
            steal: self.steal - before.steal,
        }
    }
}

/// The geometric mean of `ratios` and its 95 % confidence interval (Student's t on their
/// logarithms, since a ratio of 0.5 is as far from 1 as one of 2).
fn geometric_mean_interval(ratios: &[f64]) -> (f64, f64, f64) {
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = t975(logs.len() - 1) * (variance / n).sqrt();
    (mean.exp(), (mean - half).exp(), (mean + half).exp())
}

/// Student's t, 97.5th percentile, for `degrees` of freedom (at least 1).
fn t975(degrees: usize) -> f64 {
    // For 1 to 30 degrees of freedom; past 30, 2.05 is a little wide.
    const T975: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T975.get(degrees - 1).copied().unwrap_or(2.05)
}

/// The c/b ratios of `series` as they would be had both runs of every pair lost the same time to
/// the neighbours: each ratio's logarithm fitted by least squares to `steal`, the difference in
/// steal between the pair's runs (authgate's minus nginx's, in cores), and read off where that
/// difference is zero, with its 95 % confidence interval.
///
/// On a machine whose neighbours are busy, one run of a pair can lose a fifth of a core more than
/// the other, and the pair's ratio moves by as much (issue 18, seventh session): the pairs'
/// spread is then mostly the neighbours'. Where every pair's runs lost about the same, a fit
/// would only read noise as a slope, so there is none. (Steal is not wholly outside the
/// proxies' doing: a core left idle is not stolen from. The plain geometric mean stays the
/// headline.)
fn at_equal_steal(steal: &[f64], series: &[(&str, &[f64])]) -> String {
    if steal.len() < 4 {
        return "- at equal steal: too few pairs to tell".into();
    }
    if steal.iter().all(|d| d.abs() < 0.05) {
        return "- steal: each pair's runs lost about as much (within 5 % of a core)".into();
    }
    let fits: Option<Vec<String>> = series
        .iter()
        .map(|(name, ratios)| {
            let fit = fit_to_steal(steal, ratios)?;
            Some(format!(
                "{name} {:.3} [{:.3}, {:.3}] (x{:.3} for each tenth of a core authgate lost more)",
                fit.at_zero, fit.low, fit.high, fit.per_tenth
            ))
        })
        .collect();
    match fits {
        Some(fits) => format!(
            "- at equal steal (log ratio fitted to the pair's difference in steal): {}",
            fits.join("; ")
        ),
        None => "- at equal steal: too few pairs to tell".into(),
    }
}

/// A fit of ratios to steal differences (`at_equal_steal`).
#[derive(Debug)]
struct StealFit {
    /// The ratio where the difference is zero, and its 95 % interval.
    at_zero: f64,
    low: f64,
    high: f64,
    /// What the ratio is multiplied by for each tenth of a core more that authgate's run lost.
    per_tenth: f64,
}

/// Least squares of `ln(ratio) = a + b · steal`; `None` with fewer than four pairs or with every
/// difference the same, when there is no line to fit.
fn fit_to_steal(steal: &[f64], ratios: &[f64]) -> Option<StealFit> {
    let n = steal.len();
    let mean_steal = steal.iter().sum::<f64>() / n as f64;
    let spread: f64 = steal.iter().map(|d| (d - mean_steal).powi(2)).sum();
    if n < 4 || ratios.len() != n || spread == 0.0 {
        return None;
    }
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let mean_log = logs.iter().sum::<f64>() / n as f64;
    let slope = steal
        .iter()
        .zip(&logs)
        .map(|(d, l)| (d - mean_steal) * (l - mean_log))
        .sum::<f64>()
        / spread;
    let at_zero = mean_log - slope * mean_steal;
    let residual: f64 = steal
        .iter()
        .zip(&logs)
        .map(|(d, l)| (l - at_zero - slope * d).powi(2))
        .sum();
    let error = (residual / (n - 2) as f64 * (1.0 / n as f64 + mean_steal.powi(2) / spread)).sqrt();
    let half = t975(n - 2) * error;
    Some(StealFit {
        at_zero: at_zero.exp(),
        low: (at_zero - half).exp(),
        high: (at_zero + half).exp(),
        per_tenth: (slope * 0.1).exp(),
    })
}

/// Whether pair number `pair` counts towards the ratios: a run that had errors (a non-2xx
/// answer, a socket error) measured something other than proxying, and says so on stdout.
fn counts(pair: usize, nginx: &Measured, authgate: &Measured) -> bool {
    let errors = nginx.load.errors + authgate.load.errors;
    if errors > 0 {
        println!("pair {pair} left out of the ratios: {errors} errors");
    }
    errors == 0
}

/// Measures pair number `pair` of nginx and authgate back to back, as (nginx, authgate). Past
/// the first three pairs, every other pair measures authgate first, so that a drift of the
/// machine over the run weighs on both sides alike.
fn in_turn<T>(pair: usize, nginx: impl FnOnce() -> T, authgate: impl FnOnce() -> T) -> (T, T) {
    if pair > 3 && pair % 2 == 0 {
        let c = authgate();
        (nginx(), c)
    } else {
        let b = nginx();
        (b, authgate())
    }
}

/// A list of c/b ratios, one per pair: their median and the pairs', then (past three pairs) the
/// first three pairs' median, the criterion of issue 18; and from two pairs on, their geometric
/// mean with its 95 % confidence interval, which says how much the pairs can tell.
fn summary(ratios: &[f64]) -> String {
    if ratios.is_empty() {
        return "no pair counted".into();
    }
    let mut text = format!("median {:.2} ({})", median(ratios), listed(ratios, ""));
    if ratios.len() > 3 {
        text += &format!(
            "; the first three pairs' median {:.2}",
            median(&ratios[..3])
        );
    }
    if ratios.len() > 1 {
        let (mean, low, high) = geometric_mean_interval(ratios);
        text +=
            &format!("; geometric mean {mean:.3}, 95 % confidence interval {low:.3} to {high:.3}");
    }
    text
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn listed(values: &[f64], unit: &str) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.2}{unit}")).collect();
    shown.join(", ")
}

/// Inserts `count` session revocations straight into the SQLite store, written now and held for
/// the access window: the worst case, as many logouts within one window.
fn seed_revocations(store: &Path, count: u64) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite:{}", store.display()))
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?), \
             ids(h) AS (SELECT lower(hex(randomblob(16))) FROM n) \
             INSERT OR IGNORE INTO revocations (kind, key, expires_at, updated_ms) \
             SELECT 'session', substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' \
             || substr(h, 17, 4) || '-' || substr(h, 21, 12), unixepoch() + 960, \
             CAST(unixepoch('subsec') * 1000 AS INTEGER) FROM ids",
        )
        .bind(count as i64)
        .execute(&mut db)
        .await
        .unwrap();
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM revocations")
            .fetch_one(&mut db)
            .await
            .unwrap();
        total as u64
    })
}

// ---------------------------------------------------------------------------------------------
// A month of logouts.

/// Start-up to ready and resident memory with a store that holds what a month of `count` logouts
/// left in it (defaults: access_ttl 15 min, refresh_ttl 30 days), as `written` says they were
/// stored: `before`, held until the session's refresh token would expire (each session logged in
/// up to a day before its logout), as authgate did until the store decided every refresh; `after`,
/// held for the access window only (access_ttl + 60 s). Rows already expired are left out, as the
/// periodic purge would have deleted them.
fn logouts(binary: &Path, written: &str, count: u64) {
    let hold = match written {
        "before" => "t - (x % 86400) + 2592000",
        "after" => "t + 960",
        _ => usage(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, upstream_port) = start_upstream();
    let gate_port = free_port();
    let config = write_config(dir.path(), gate_port, upstream_port);
    let empty_rss = {
        let gate = start_authgate(binary, &config);
        wait_ready(gate_port);
        rss_mib(gate.child.id())
    };
    let store = dir.path().join("authgate.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = runtime.block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite:{}", store.display()))
            .await
            .unwrap();
        // Logout x happened at t, spread evenly over the 30 days before now.
        sqlx::query(&format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1), \
             logouts(x, t, h) AS (SELECT x, unixepoch() - x * 2592000 / ?1, lower(hex(randomblob(16))) FROM n) \
             INSERT OR IGNORE INTO revocations (kind, key, expires_at, updated_ms) \
             SELECT 'session', substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' \
             || substr(h, 17, 4) || '-' || substr(h, 21, 12), {hold}, t * 1000 FROM logouts \
             WHERE {hold} > unixepoch()"
        ))
        .bind(count as i64)
        .execute(&mut db)
        .await
        .unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM revocations")
            .fetch_one(&mut db)
            .await
            .unwrap();
        rows
    });
    let gate = start_authgate(binary, &config);
    let ready = wait_ready(gate_port);
    println!(
        "{count} logouts over 30 days, stored as {written}: {rows} revocation rows in force; \
         start-up to ready {:.2} s, RSS {:.1} MiB (empty store: {empty_rss:.1} MiB); authgate is {}",
        ready.as_secs_f64(),
        rss_mib(gate.child.id()),
        binary.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Refreshes, one after another.

/// How long a refresh takes, one at a time on a new connection each: 2000 in a row, each with the
/// refresh token the one before returned. On SQLite, or on a fresh database of the PostgreSQL
/// server at `database` (dropped afterwards). The store's part is what changes between builds.
fn refreshes(binary: &Path, database: Option<&str>) {
    const COUNT: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, upstream_port) = start_upstream();
    let gate_port = free_port();
    let config = write_config(dir.path(), gate_port, upstream_port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fresh = database.map(|server| {
        let name = format!("loadbench_{}", std::process::id());
        runtime.block_on(async {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
        });
        let (base, _) = server
            .rsplit_once('/')
            .expect("a URL that names a database");
        let url = format!("{base}/{name}");
        let text = std::fs::read_to_string(&config).unwrap();
        let store = text.lines().find(|l| l.starts_with("path = ")).unwrap();
        std::fs::write(&config, text.replace(store, &format!("url = \"{url}\""))).unwrap();
        (server.to_string(), name)
    });
    {
        let _gate = start_authgate(binary, &config);
        wait_ready(gate_port);
        let credentials = r#"{"username":"refresher","password":"a perfectly fine password"}"#;
        let json = [("Content-Type", "application/json")];
        assert_eq!(
            http(gate_port, "POST", "/register", &json, credentials).0,
            201
        );
        let (status, body) = http(gate_port, "POST", "/login", &json, credentials);
        assert_eq!(status, 200);
        let mut refresh = json_field(&body, "refresh_token");
        let mut took = Vec::with_capacity(COUNT);
        for _ in 0..COUNT {
            let bearer = format!("Bearer {refresh}");
            let start = Instant::now();
            let (status, body) = http(
                gate_port,
                "POST",
                "/refresh",
                &[("Authorization", &bearer)],
                "",
            );
            took.push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{body}");
            refresh = json_field(&body, "refresh_token");
        }
        took.sort_by(f64::total_cmp);
        println!(
            "{COUNT} refreshes on {}: median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms; authgate is {}",
            if fresh.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            took[COUNT / 2],
            took[COUNT * 9 / 10],
            took[COUNT * 99 / 100],
            binary.display()
        );
    }
    if let Some((server, name)) = fresh {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs that lie on a line: the fit finds its ratio at zero and its slope, with no spread.
    #[test]
    fn ratios_on_a_line_give_the_line_back() {
        let steal = [-0.2, -0.1, 0.0, 0.1, 0.25, 0.3];
        let ratios: Vec<f64> = steal
            .iter()
            .map(|d| (1.05f64.ln() - 1.2 * d).exp())
            .collect();
        let fit = fit_to_steal(&steal, &ratios).unwrap();
        assert!((fit.at_zero - 1.05).abs() < 1e-9, "{fit:?}");
        assert!((fit.high - fit.low).abs() < 1e-9, "{fit:?}");
        assert!((fit.per_tenth - (-0.12f64).exp()).abs() < 1e-9, "{fit:?}");
    }

    /// The seventh session's first run (second configuration), fitted by hand in Python:
    /// 1.0457 [1.0192, 1.0728], x0.9050 per tenth of a core.
    #[test]
    fn a_measured_run_gives_what_the_hand_fit_gave() {
        let nginx = [
            22.4, 11.2, 28.1, 22.0, 20.2, 31.2, 8.6, 39.1, 66.0, 29.6, 13.6, 19.7,
        ];
        let authgate = [
            29.3, 30.8, 22.9, 20.5, 14.0, 18.8, 5.9, 17.6, 46.4, 30.6, 4.1, 25.1,
        ];
        let steal: Vec<f64> = nginx
            .iter()
            .zip(authgate)
            .map(|(b, c)| (c - b) / 100.0)
            .collect();
        let ratios = [
            0.94, 0.88, 1.07, 1.06, 1.13, 1.13, 1.10, 1.25, 1.32, 1.05, 1.23, 0.96,
        ];
        let fit = fit_to_steal(&steal, &ratios).unwrap();
        for (got, want) in [
            (fit.at_zero, 1.0457),
            (fit.low, 1.0192),
            (fit.high, 1.0728),
            (fit.per_tenth, 0.9050),
        ] {
            assert!((got - want).abs() < 5e-4, "{got} against {want}: {fit:?}");
        }
    }

    /// Even steal, too few pairs (none at all, when every pair had errors), or every difference
    /// the same: nothing is fitted.
    #[test]
    fn no_fit_without_a_spread_of_steal() {
        let even = at_equal_steal(&[0.01, -0.02, 0.0, 0.04], &[("r", &[1.0, 1.1, 0.9, 1.0])]);
        assert!(even.contains("lost about as much"), "{even}");
        let few = at_equal_steal(&[0.2, -0.2, 0.1], &[("r", &[1.0, 1.1, 0.9])]);
        assert!(few.contains("too few pairs"), "{few}");
        let none = at_equal_steal(&[], &[("r", &[])]);
        assert!(none.contains("too few pairs"), "{none}");
        assert!(fit_to_steal(&[0.1; 5], &[1.0, 1.1, 0.9, 1.0, 1.2]).is_none());
    }

    /// A pair counts only when neither run had an error: an expired token once turned
    /// authgate's runs into fast 401s, and their ratios into 1.6.
    #[test]
    fn a_pair_with_errors_does_not_count() {
        let run = |errors| Measured {
            load: Load {
                requests: 1000.0,
                per_second: 100.0,
                errors,
                ..Load::default()
            },
            cpu_ms_per_1000: 30.0,
            user_ms_per_1000: 8.0,
            new_upstream_per_1000: 0.0,
            machine: MachineTime::default(),
        };
        assert!(counts(1, &run(0), &run(0)));
        assert!(!counts(2, &run(0), &run(452_593)));
        assert!(!counts(3, &run(1), &run(0)));
        assert_eq!(summary(&[]), "no pair counted");
    }

    /// The interval's t: 12.706 for one degree of freedom, 2.228 for ten, 2.05 past thirty.
    #[test]
    fn t_follows_the_table() {
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(10), 2.228);
        assert_eq!(t975(31), 2.05);
    }
}
