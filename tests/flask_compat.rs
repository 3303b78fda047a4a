//! Compatibility with Flask-JWT-Extended: a real Flask app (`tests/flask_app/app.py`) that decodes
//! tokens with Flask-JWT-Extended and authgate's secret, behind authgate, accepts authgate's access
//! token as a bearer header and as authgate's cookies with the CSRF double submit. Runs when
//! `AUTHGATE_TEST_PYTHON` names a Python with `flask` and `flask-jwt-extended` installed
//! (`.ci/run` makes a virtualenv and sets it); otherwise `build.rs` marks the tests ignored.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::*;

const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flask_app/app.py");
const CREDENTIALS: &str = r#"{"username":"ada","password":"a perfectly fine password"}"#;

/// The Flask app on a free port, taking tokens from `location` ("headers" or "cookies"), killed
/// when dropped.
struct Flask {
    child: Child,
    addr: SocketAddr,
}

impl Flask {
    fn start(location: &str) -> Flask {
        let python = std::env::var("AUTHGATE_TEST_PYTHON").expect("set by .ci/run");
        let mut child = Command::new(python)
            .arg(APP)
            .env("JWT_SECRET_KEY", SECRET)
            .env("JWT_TOKEN_LOCATION", location)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Flask app starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the Flask app did not say where it listens (is Flask-JWT-Extended installed?)"
                );
            }
        };
        Flask { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// authgate in front of `app`, with the test secret and tokens taken from headers and cookies.
async fn gate_in_front_of(app: &Flask) -> (Gate, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = tokens_in_cookies_too(config_text(
        &app.url(),
        &dir.path().join("authgate.db"),
        "[cookies]\nsecure = false\n",
    ));
    (Gate::start(&text).await, dir)
}

/// Registers and logs in at `addr` with JSON; the login's answer.
async fn signed_in(addr: SocketAddr) -> Answer {
    let body: serde_json::Value = serde_json::from_str(CREDENTIALS).unwrap();
    let r = post_json(addr, "/register", &body, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = post_json(addr, "/login", &body, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r
}

/// The app's answer when Flask-JWT-Extended has decoded the token of `claims` (ada's).
fn identity_of(claims: &serde_json::Value) -> serde_json::Value {
    json!({
        "identity": claims["sub"],
        "username": "ada",
        "csrf": claims["csrf"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_python,
    ignore = "needs Python with Flask-JWT-Extended: set AUTHGATE_TEST_PYTHON to a python with flask and flask-jwt-extended installed (.ci/run makes one)"
)]
async fn a_flask_jwt_extended_app_accepts_authgates_access_token_as_a_bearer_header() {
    let app = Flask::start("headers");
    let (gate, _dir) = gate_in_front_of(&app).await;
    let login = signed_in(gate.addr).await.json();
    let access = login["access_token"].as_str().unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    let claims = payload(access);
    assert!(
        claims["sub"].is_string(),
        "Flask-JWT-Extended wants a string sub"
    );

    for method in ["GET", "POST"] {
        let auth = format!("Bearer {access}");
        let r = send(
            gate.addr,
            request(method, "/whoami", &[("authorization", &auth)], ""),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {r:?}");
        assert_eq!(r.json(), identity_of(&claims), "{method}");
    }

    // Flask-JWT-Extended reads authgate's `type` claim as its own: straight to the app, bypassing
    // authgate, the refresh token is refused as one.
    let r = get_with_token(app.addr, "/whoami", refresh).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.msg(), "Only non-refresh tokens are allowed");

    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_python,
    ignore = "needs Python with Flask-JWT-Extended: set AUTHGATE_TEST_PYTHON to a python with flask and flask-jwt-extended installed (.ci/run makes one)"
)]
async fn a_flask_jwt_extended_app_accepts_authgates_cookies_and_checks_their_csrf_double_submit() {
    let app = Flask::start("cookies");
    let (gate, _dir) = gate_in_front_of(&app).await;
    let jar = jar(&signed_in(gate.addr).await);
    let cookies = cookie_header(&jar);
    let csrf = value(&jar, "csrf_access_token");
    let claims = payload(value(&jar, "access_token_cookie"));
    assert_eq!(claims["csrf"], csrf);

    let r = get(gate.addr, "/whoami", &[("cookie", &cookies)]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), identity_of(&claims));

    // A POST: Flask-JWT-Extended compares X-CSRF-TOKEN with the token's csrf claim itself.
    let with_csrf = [("cookie", cookies.as_str()), ("x-csrf-token", csrf)];
    let r = send(gate.addr, request("POST", "/whoami", &with_csrf, "")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), identity_of(&claims));

    // That comparison is real: straight to the app, bypassing authgate (which would refuse it
    // first), the same POST with the right header passes and with a wrong one is refused.
    let r = send(app.addr, request("POST", "/whoami", &with_csrf, "")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let wrong = [
        ("cookie", cookies.as_str()),
        ("x-csrf-token", "not-the-token"),
    ];
    let r = send(app.addr, request("POST", "/whoami", &wrong, "")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.msg(), "CSRF double submit tokens do not match");

    gate.stop().await;
}
