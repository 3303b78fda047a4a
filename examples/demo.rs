//! A one-command tour of authgate: `cargo run --release --example demo`.
//!
//! Starts a tiny demo app (the "upstream") that answers every request with the method, path and
//! identity headers it received, then authgate in front of it, configured by
//! `config/authgate.toml` with two changes: a throwaway SQLite store in a temporary directory, and
//! (unless `AUTHGATE_SECRET` is already set) a fresh random signing secret. It prints the curl
//! commands of the whole flow, ready to paste into another terminal, and a URL to open in a
//! browser (cookies go without `Secure`, since the demo serves plain HTTP). Ctrl-C stops both.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::RngCore;
use serde_json::{Map, Value};
use tokio::net::TcpListener;

/// The variable `config/authgate.toml` names in `tokens.secret_env`.
const SECRET_VAR: &str = "AUTHGATE_SECRET";

fn main() -> ExitCode {
    // Set before any other thread exists: `set_var` is only sound while nothing else can be
    // reading the environment, and the runtime and the logger start below.
    let generated_secret = std::env::var_os(SECRET_VAR).is_none();
    if generated_secret {
        let mut bytes = [0u8; 48];
        rand::rng().fill_bytes(&mut bytes);
        let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
        // SAFETY: the process is still single-threaded here.
        unsafe { std::env::set_var(SECRET_VAR, secret) };
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("demo: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(demo(generated_secret))
}

async fn demo(generated_secret: bool) -> ExitCode {
    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/authgate.toml");
    let mut config = match authgate::Config::load(&config_path) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("demo: {} has problems:\n{problems}", config_path.display());
            return ExitCode::FAILURE;
        }
    };

    // A store of its own, removed when the demo ends, so every run starts with no users.
    let store_dir = match tempfile::Builder::new().prefix("authgate-demo-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("demo: cannot create a temporary directory for the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.store = authgate::StoreConfig::Sqlite {
        path: store_dir.path().join("demo.db"),
    };
    // The demo serves plain HTTP on localhost: its cookies go without `Secure`.
    config.cookies.secure = false;

    // The demo app listens where the config's upstream.url points; if that port is taken, on any
    // free port, and authgate is pointed there instead.
    let wanted: Option<SocketAddr> = config
        .upstream
        .base
        .authority()
        .and_then(|a| a.as_str().parse().ok());
    let app_listener = match wanted {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Ok(l),
            Err(e) => {
                eprintln!("demo: {addr} is taken ({e}); the demo app takes a free port instead");
                TcpListener::bind("127.0.0.1:0").await
            }
        },
        None => TcpListener::bind("127.0.0.1:0").await,
    };
    let app_listener = match app_listener {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: the demo app cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app_addr = match app_listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: the demo app has no address: {e}");
            return ExitCode::FAILURE;
        }
    };
    if wanted != Some(app_addr) {
        config.upstream.base = format!("http://{app_addr}")
            .parse::<Uri>()
            .expect("a socket address makes a valid URL");
    }

    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "demo: authgate cannot listen on {} ({e}); stop whatever uses that port, or change server.listen in {}",
                config.listen,
                config_path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let gate_addr = listener.local_addr().unwrap_or(config.listen);

    let identity = Arc::new((
        config.identity.user_id_header.clone(),
        config.identity.username_header.clone(),
    ));
    let app = tokio::spawn(serve_demo_app(app_listener, identity));

    print_banner(
        &config,
        &config_path,
        gate_addr,
        app_addr,
        store_dir.path(),
        generated_secret,
    );

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = authgate::run(listener, config, shutdown).await;
    app.abort();
    drop(store_dir);
    match result {
        Ok(()) => {
            println!("demo: stopped; the demo store is gone.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: authgate stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo app: every request gets a JSON body with what the app received.
async fn serve_demo_app(listener: TcpListener, identity: Arc<(HeaderName, HeaderName)>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "demo app: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let identity = identity.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = echo(&request, &identity);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "demo app: connection ended with an error");
            }
        });
    }
}

/// What the app saw: method, path (and query), and the identity headers, `null` when absent.
fn echo(request: &Request<Incoming>, identity: &(HeaderName, HeaderName)) -> Response<Full<Bytes>> {
    let mut body = Map::new();
    body.insert("app".into(), "demo upstream".into());
    body.insert("method".into(), request.method().as_str().into());
    body.insert("path".into(), request.uri().path().into());
    if let Some(query) = request.uri().query() {
        body.insert("query".into(), query.into());
    }
    for name in [&identity.0, &identity.1] {
        let value = request
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        body.insert(
            name.as_str().into(),
            value.map_or(Value::Null, Value::String),
        );
    }
    let text = Value::Object(body).to_string();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn print_banner(
    config: &authgate::Config,
    config_path: &Path,
    gate_addr: SocketAddr,
    app_addr: SocketAddr,
    store_dir: &Path,
    generated_secret: bool,
) {
    let base = if gate_addr.ip().is_loopback() || gate_addr.ip().is_unspecified() {
        format!("localhost:{}", gate_addr.port())
    } else {
        gate_addr.to_string()
    };
    let prefix = format!("{base}{}", config.auth_prefix);
    let secret = if generated_secret {
        "random, for this run only (set AUTHGATE_SECRET to choose one)"
    } else {
        "from AUTHGATE_SECRET"
    };
    let routes: Vec<String> = config
        .routes
        .rules()
        .iter()
        .map(|r| {
            let methods = r
                .methods
                .as_ref()
                .map_or("any method".to_string(), |m| m.join(", "));
            let roles = match r.roles.is_empty() {
                true => String::new(),
                false => format!(", one of the roles {}", r.roles.join(", ")),
            };
            format!("    {:<12} {:<12} {}{roles}", r.pattern, methods, r.access)
        })
        .collect();
    let creds = r#"-H 'Content-Type: application/json' -d '{"username":"alice","password":"correct horse battery"}'"#;
    let status = r#"-w ' [%{http_code}]\n'"#;
    let extract = "ACCESS=$(printf '%s' \"$TOKENS\" | sed -n 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/p')\n\
REFRESH=$(printf '%s' \"$TOKENS\" | sed -n 's/.*\"refresh_token\":\"\\([^\"]*\\)\".*/\\1/p')";

    println!(
        r#"
================================ authgate demo ================================
  authgate   http://{gate_addr}   ({config})
  demo app   http://{app_addr}   (answers with the method, path and identity headers it got)
  store      {store} (deleted when the demo stops)
  secret     {secret}
  routes (first match decides; no match: a token is needed)
{routes}

Paste these lines into another terminal (any POSIX shell; needs only curl and sed).
Each `echo` line says what the next command shows; [NNN] is the HTTP status.

echo '--- 1. register alice: 201 with her id'
curl -s {status} -X POST {prefix}/register {creds}
echo '--- 2. log in: 200 with an access and a refresh token, kept in $ACCESS and $REFRESH'
TOKENS=$(curl -s -X POST {prefix}/login {creds}); echo "$TOKENS"
{extract}
echo '--- 3. a guarded route with the token: forwarded, the app sees alice in the identity headers'
curl -s {status} {base}/api/hello -H "Authorization: Bearer $ACCESS"
echo '--- 4. a public route without a token: forwarded, no identity; a forged identity header is dropped'
curl -s {status} {base}/public/hello -H 'X-Auth-User-Id: admin'
echo '--- 5. the guarded route without a token: 401 Missing Authorization Header, never forwarded'
curl -s {status} {base}/api/hello
echo '--- 6. refresh: 200 with a new pair; the old refresh token is now revoked'
TOKENS=$(curl -s -X POST {prefix}/refresh -H "Authorization: Bearer $REFRESH"); echo "$TOKENS"
{extract}
echo '--- 7. log out: 200, revokes the whole session, access and refresh tokens alike'
curl -s {status} -X POST {prefix}/logout -H "Authorization: Bearer $ACCESS"
echo '--- 8. the logged-out access token: 401 Token has been revoked'
curl -s {status} {base}/api/hello -H "Authorization: Bearer $ACCESS"
echo '--- 9. the logged-out refresh token: 401 Token has been revoked'
curl -s {status} -X POST {prefix}/refresh -H "Authorization: Bearer $REFRESH"

Or open http://{base}/api/hello in a browser: it is sent to sign in (http://{prefix}/login).
Sign up, sign in, and the app's answer shows the identity headers. http://{prefix}/logout signs out.

Ctrl-C stops the demo. Logs follow.
================================================================================
"#,
        config = config_path.display(),
        store = store_dir.join("demo.db").display(),
        routes = routes.join("\n"),
    );
}
