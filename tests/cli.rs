//! The binary's commands: `check` validates a config, `explain` shows what a request would meet,
//! and the gate refuses to start without a strong secret.

use std::process::Command;

fn authgate(args: &[&str], secret: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authgate"));
    cmd.args(args)
        .env_remove("AUTHGATE_CONFIG")
        .env_remove("AUTHGATE_SECRET");
    if let Some(secret) = secret {
        cmd.env("AUTHGATE_SECRET", secret);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/authgate.toml");
const STRONG: &str = "cli-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

#[test]
fn check_accepts_the_example_config() {
    let (ok, out, err) = authgate(&["check", "--config", EXAMPLE], Some(STRONG));
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[upstream]\nurl = \"ftp://x\"\n[tokens]\nsecret = \"weak\"\naccess_ttl = \"often\"\n[[routes]]\npath = \"/a\"\naccess = \"maybe\"\n",
    )
    .unwrap();
    let (ok, _, err) = authgate(&["check", "--config", path.to_str().unwrap()], None);
    assert!(!ok);
    for expected in [
        "upstream.url",
        "too weak",
        "openssl rand",
        "tokens.access_ttl",
        "routes[0]",
    ] {
        assert!(err.contains(expected), "{expected} missing from: {err}");
    }
}

#[test]
fn a_missing_secret_stops_start_up_with_a_fix() {
    let (ok, _, err) = authgate(&["--config", EXAMPLE], None);
    assert!(!ok);
    assert!(err.contains("AUTHGATE_SECRET is not set"), "{err}");
    assert!(err.contains("openssl rand -base64 48"), "{err}");
}

#[test]
fn explain_shows_the_normalised_path_the_rule_and_the_decision() {
    let (ok, out, _) = authgate(
        &[
            "explain",
            "--config",
            EXAMPLE,
            "GET",
            "/public/../api/x?y=1",
        ],
        Some(STRONG),
    );
    assert!(ok);
    assert!(out.contains("normalised path: /api/x"), "{out}");
    assert!(out.contains("routes[2] path = \"/api/**\""), "{out}");
    assert!(
        out.contains("/api/x?y=1 with a valid access token"),
        "{out}"
    );

    let (_, out, _) = authgate(
        &[
            "explain",
            "--config",
            EXAMPLE,
            "GET",
            "/public/%2e%2e/admin/x",
        ],
        Some(STRONG),
    );
    assert!(out.contains("routes[1]") && out.contains("403"), "{out}");

    let (_, out, _) = authgate(
        &["explain", "--config", EXAMPLE, "GET", "/public/..%2fadmin"],
        Some(STRONG),
    );
    assert!(out.contains("decision: 400"), "{out}");

    let (_, out, _) = authgate(
        &[
            "explain",
            "--config",
            EXAMPLE,
            "POST",
            "/reports/q3?_method=DELETE",
        ],
        Some(STRONG),
    );
    assert!(
        out.contains("routes[3] path = \"/reports/**\" (any method) access = authenticated roles = [\"admin\", \"auditor\"]"),
        "{out}"
    );
    assert!(
        out.contains(
            "with a valid access token and a user with the role admin or auditor (otherwise 403)"
        ),
        "{out}"
    );

    let (_, out, _) = authgate(
        &["explain", "--config", EXAMPLE, "post", "/login"],
        Some(STRONG),
    );
    assert!(out.contains("auth endpoint /login"), "{out}");

    let (_, out, _) = authgate(
        &["explain", "--config", EXAMPLE, "GET", "/elsewhere"],
        Some(STRONG),
    );
    assert!(
        out.contains("none matches; the default applies (authenticated)"),
        "{out}"
    );
}

/// The configuration inside the Kubernetes example's ConfigMap is one authgate accepts.
#[test]
fn the_kubernetes_example_config_is_valid() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/configmap.yaml"
    ))
    .unwrap();
    let (_, block) = yaml.split_once("authgate.toml: |\n").unwrap();
    let toml: String = block
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env("AUTHGATE_SECRET", STRONG)
        .env(
            "AUTHGATE_DATABASE_URL",
            "postgres://authgate:pw@postgres.db.svc:5432/authgate",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_metrics_port_in_use_is_named_in_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let text = example
        .replace(
            "# listen = \"127.0.0.1:9090\"",
            &format!("listen = \"{addr}\""),
        )
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "path = \"data/authgate.db\"",
            &format!("path = {:?}", dir.path().join("a.db").display().to_string()),
        );
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = authgate(&["--config", path.to_str().unwrap()], Some(STRONG));
    assert!(!ok);
    assert!(
        err.contains("metrics.listen") || err.contains(&addr.to_string()),
        "{err}"
    );
}

/// `keygen` needs no configuration (there may be none yet), prints a PKCS#8 key that a
/// configuration then accepts for that algorithm, and refuses what it cannot make.
#[test]
fn keygen_prints_a_private_key_a_configuration_accepts() {
    let dir = std::env::temp_dir().join(format!("authgate-keygen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (args, algorithm) in [(&[][..], "EdDSA"), (&["--algorithm", "ES256"][..], "ES256")] {
        let mut argv = vec!["keygen", "--config", "/nonexistent.toml"];
        argv.extend_from_slice(args);
        let (ok, out, err) = authgate(&argv, None);
        assert!(ok, "{err}");
        assert!(out.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{out}");
        assert!(out.ends_with("-----END PRIVATE KEY-----\n"), "{out}");
        let key = dir.join(format!("{algorithm}.pem"));
        std::fs::write(&key, &out).unwrap();
        let config = dir.join(format!("{algorithm}.toml"));
        std::fs::write(
            &config,
            format!(
                "[upstream]\nurl = \"http://127.0.0.1:9\"\n[tokens]\nalgorithm = \"{algorithm}\"\nprivate_key_file = {:?}\n",
                key.display().to_string()
            ),
        )
        .unwrap();
        let (ok, _, err) = authgate(&["check", "--config", config.to_str().unwrap()], None);
        assert!(ok, "{algorithm}: {err}");
    }
    let (ok, _, err) = authgate(&["keygen", "--algorithm", "HS256"], None);
    assert!(!ok);
    assert!(err.contains("use \"EdDSA\""), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A secret file every user of the machine may read is allowed (a Kubernetes secret volume mounts
/// 0644 by default) but named, with the fix: by `check`, and in the log when the gate starts.
/// The secret itself is never printed.
#[cfg(unix)]
#[test]
fn a_secret_file_every_user_may_read_is_warned_about_never_shown() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, STRONG).unwrap();
    let config = dir.path().join("authgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n\
             [tokens]\nsecret_file = {:?}\n[store]\npath = {:?}\n",
            secret.display().to_string(),
            dir.path().join("a.db").display().to_string()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let chmod = |mode| {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    chmod(0o600);
    let (ok, _, err) = authgate(&["check", "--config", config], None);
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "{err}");

    chmod(0o644);
    let (ok, out, err) = authgate(&["check", "--config", config], None);
    assert!(ok, "{err}");
    assert!(out.contains("ok"), "{out}");
    assert!(err.contains("warning: tokens.secret_file:"), "{err}");
    assert!(err.contains("can be read by every user"), "{err}");
    assert!(err.contains("chmod o-rw"), "{err}");
    assert!(!err.contains(STRONG) && !out.contains(STRONG), "{out}{err}");

    // The running gate logs it before it listens.
    let mut gate = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["--config", config])
        .env_remove("AUTHGATE_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = std::io::BufReader::new(gate.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log += &line;
        log.push('\n');
        if line.contains("authgate listening") {
            break;
        }
    }
    gate.kill().unwrap();
    gate.wait().unwrap();
    assert!(log.contains("authgate listening"), "{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("tokens.secret_file:"), "{log}");
    assert!(log.contains("chmod o-rw"), "{log}");
    assert!(!log.contains(STRONG), "{log}");
}
