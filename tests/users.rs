//! `authgate users …` on the real binary, against the store a running gate uses: what it does
//! reaches the gate (revocations within `store.catch_up_interval`), and every failure says why and
//! exits non-zero.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use support::process::Process;
use support::*;

const PASSWORD: &str = "a perfectly fine password";

/// `authgate users ARGS --config CONFIG`, with `stdin` written to it: (success, stdout, stderr).
fn users(config: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("users")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("AUTHGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config for a gate process on a SQLite store in `dir`, catching up every second.
fn config_in(dir: &Path, upstream: &Upstream) -> std::path::PathBuf {
    let path = dir.join("authgate.toml");
    let text = config_text(&upstream.url(), &dir.join("authgate.db"), "")
        .replace("[store]\n", "[store]\ncatch_up_interval = \"1s\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

async fn login(addr: std::net::SocketAddr, password: &str) -> Answer {
    post_json(
        addr,
        "/login",
        &json!({"username": "alice", "password": password}),
        &[],
    )
    .await
}

/// Polls until the gate refuses `token` as revoked; fails after `limit`.
async fn refused_within(addr: std::net::SocketAddr, token: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let r = get_with_token(addr, "/api/x", token).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.msg(), "Token has been revoked");
            return;
        }
        assert!(start.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_made_listed_reset_and_logged_out_from_the_command_line_reach_a_running_gate() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), &upstream);
    let gate = Process::start(&config);
    wait_ready(gate.addr).await;

    let (ok, out, err) = users(
        &config,
        &["add", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("added alice ("), "{out}");
    let r = login(gate.addr, PASSWORD).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the running gate signs the new user in: {r:?}"
    );
    let access = r.json()["access_token"].as_str().unwrap().to_string();

    let (ok, out, _) = users(&config, &["list", "--json"], "");
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["username"], "alice");
    assert_eq!(listed[0]["live_sessions"], 1);
    let (ok, out, _) = users(&config, &["list"], "");
    assert!(
        ok && out.contains("alice") && out.contains("SESSIONS"),
        "{out}"
    );

    // Logout from the command line: the running gate refuses the token within its catch-up.
    let (ok, out, err) = users(&config, &["logout", "alice"], "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1 sessions of alice revoked");
    refused_within(gate.addr, &access, Duration::from_secs(5)).await;

    // A reset: the new password works, the old does not, and its sessions end.
    let access = login(gate.addr, PASSWORD).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = users(
        &config,
        &["reset-password", "alice", "--password-stdin"],
        "the second password\r\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "password of alice reset; 1 sessions revoked");
    refused_within(gate.addr, &access, Duration::from_secs(5)).await;
    assert_eq!(
        login(gate.addr, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(gate.addr, "the second password").await.status,
        StatusCode::OK
    );
    drop(gate);
}

/// Roles, disabling and sessions from the command line, against a running gate on SQLite: what
/// `list` and `sessions` show, a role that opens a route at the next refresh, and a disabled
/// user's live token refused within the catch-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_disabling_and_sessions_from_the_command_line_reach_a_running_gate() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    let text = config_text(
        &upstream.url(),
        &dir.path().join("authgate.db"),
        "[[routes]]\npath = \"/reports/**\"\nroles = [\"auditor\"]\n",
    )
    .replace("[store]\n", "[store]\ncatch_up_interval = \"1s\"\n");
    std::fs::write(&config, text).unwrap();
    let gate = Process::start(&config);
    wait_ready(gate.addr).await;

    let (ok, _, err) = users(
        &config,
        &[
            "add",
            "alice",
            "--role",
            "ops",
            "--role",
            "auditor",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "{err}");
    let r = login(gate.addr, PASSWORD).await;
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(payload(&access)["roles"], json!(["auditor", "ops"]));
    let r = get_with_token(gate.addr, "/reports/q3", &access).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let (ok, out, _) = users(&config, &["list", "--json"], "");
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["roles"], json!(["auditor", "ops"]));
    assert_eq!(listed[0]["disabled_at"], json!(null));
    assert!(
        listed[0]["last_login_at"].as_u64().unwrap() >= listed[0]["created_at"].as_u64().unwrap()
    );
    let (ok, out, _) = users(&config, &["list"], "");
    assert!(
        ok && out.contains("auditor,ops") && out.contains("LAST LOGIN"),
        "{out}"
    );

    let (ok, out, _) = users(&config, &["sessions", "alice", "--json"], "");
    assert!(ok);
    let sessions: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["sid"], payload(&access)["sid"]);
    assert_eq!(sessions[0]["refreshed_at"], json!(null));
    let (ok, out, _) = users(&config, &["sessions", "alice"], "");
    assert!(
        ok && out.contains(payload(&access)["sid"].as_str().unwrap()),
        "{out}"
    );

    // Roles taken away: the next refresh carries none, and the route is closed.
    let (ok, out, err) = users(&config, &["set-roles", "alice", "--clear"], "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "alice has no role now");
    let r = post_with_token(gate.addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = get_with_token(gate.addr, "/reports/q3", &access).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.msg(), "Access denied");

    // Disabled: the live token is refused within the catch-up, and neither a refresh nor a
    // login works until the user is enabled again.
    let (ok, out, err) = users(&config, &["disable", "alice"], "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "alice disabled; 1 sessions revoked");
    refused_within(gate.addr, &access, Duration::from_secs(5)).await;
    let r = post_with_token(gate.addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(gate.addr, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (ok, out, _) = users(&config, &["list", "--json"], "");
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(listed[0]["disabled_at"].as_u64().is_some());
    let (ok, out, _) = users(&config, &["enable", "alice"], "");
    assert!(ok);
    assert_eq!(out.trim(), "alice enabled");
    assert_eq!(login(gate.addr, PASSWORD).await.status, StatusCode::OK);
    drop(gate);
}

#[test]
fn every_users_command_says_why_it_failed_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    std::fs::write(
        &config,
        config_text("http://127.0.0.1:9", &dir.path().join("authgate.db"), ""),
    )
    .unwrap();
    let add = |name: &str, password: &str| {
        users(
            &config,
            &["add", name, "--password-stdin"],
            &format!("{password}\n"),
        )
    };
    assert!(add("alice", PASSWORD).0);
    for (outcome, expected) in [
        (add("ALICE", PASSWORD), "\"ALICE\" is taken"),
        (add("bob", "short"), "Password must be at least 8 bytes"),
        (
            add(" bob", PASSWORD),
            "Username must not begin or end with whitespace",
        ),
        (
            users(
                &config,
                &["reset-password", "nobody", "--password-stdin"],
                &format!("{PASSWORD}\n"),
            ),
            "no user is called \"nobody\"",
        ),
        (
            users(&config, &["logout", "nobody"], ""),
            "no user is called \"nobody\"",
        ),
        (
            users(&config, &["set-roles", "nobody", "admin"], ""),
            "no user is called \"nobody\"",
        ),
        (
            users(&config, &["disable", "nobody"], ""),
            "no user is called \"nobody\"",
        ),
        (
            users(&config, &["enable", "nobody"], ""),
            "no user is called \"nobody\"",
        ),
        (
            users(&config, &["sessions", "nobody"], ""),
            "no user is called \"nobody\"",
        ),
        (
            users(&config, &["set-roles", "alice", "Admin"], ""),
            "role \"Admin\" must be 1 to 64 characters",
        ),
        (
            users(
                &config,
                &["add", "dave", "--role", "a,b", "--password-stdin"],
                &format!("{PASSWORD}\n"),
            ),
            "role \"a,b\" must be",
        ),
        (
            users(&config, &["set-roles", "alice"], ""),
            "the following required arguments were not provided",
        ),
        (
            users(&config, &["set-roles", "alice", "admin", "--clear"], ""),
            "cannot be used with",
        ),
    ] {
        let (ok, _, err) = outcome;
        assert!(!ok, "{expected}");
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // A password only ever comes on standard input.
    let (ok, _, err) = users(&config, &["add", "carol"], "");
    assert!(!ok);
    assert!(err.contains("--password-stdin"), "{err}");

    // A store that cannot be reached.
    let unreachable = dir.path().join("pg.toml");
    let text = config_text("http://127.0.0.1:9", &dir.path().join("x.db"), "").replace(
        &format!("path = \"{}\"", dir.path().join("x.db").display()),
        "url = \"postgres://postgres@127.0.0.1:1/none\"\nconnect_timeout = \"1s\"",
    );
    std::fs::write(&unreachable, text).unwrap();
    let (ok, _, err) = users(&unreachable, &["list"], "");
    assert!(!ok);
    assert!(err.contains("the store failed"), "{err}");
}
