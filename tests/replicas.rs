//! Several authgate processes on one PostgreSQL database, as Kubernetes runs them: a logout on one
//! replica is enforced by all within a second, restarts forget nothing, and a store outage never
//! turns into a 200 that was not made durable.
//!
//! These run when `AUTHGATE_TEST_DATABASE_URL` is set (`.ci/run` sets it); otherwise `build.rs`
//! marks them ignored, and `cargo test` lists them as such with the reason.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use support::pg::{FreshDatabase, server_url};
use support::process::Process;
use support::tcp_relay::TcpRelay;
use support::*;

const PASSWORD: &str = "a perfectly fine password";

fn replica_config(dir: &Path, upstream: &Upstream, database_url: &str) -> PathBuf {
    let path = dir.join(format!("authgate-{}.toml", uuid::Uuid::new_v4().simple()));
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "10s"
[upstream]
url = "{upstream}"
timeout = "10s"
[tokens]
secret = "{SECRET}"
[store]
url = "{database_url}"
connect_timeout = "1s"
catch_up_interval = "2s"
[passwords]
memory_kib = 1024
iterations = 1
parallelism = 1
[[routes]]
path = "/public/**"
access = "public"
"#,
        upstream = upstream.url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// What every test here shares: a fresh database, an upstream, and a directory for configs.
struct Cluster {
    db: FreshDatabase,
    upstream: Upstream,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `None` (the test is skipped) without a test database.
    async fn start(test: &str) -> Option<Cluster> {
        let server = server_url(test)?;
        Some(Cluster {
            db: FreshDatabase::create(&server).await,
            upstream: Upstream::start().await,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// A config for replicas that reach the database at `database_url`.
    fn config(&self, database_url: &str) -> PathBuf {
        replica_config(self.dir.path(), &self.upstream, database_url)
    }

    /// `n` replicas on the shared database, each ready.
    async fn replicas(&self, n: usize) -> Vec<Process> {
        let config = self.config(&self.db.url);
        let replicas: Vec<Process> = (0..n).map(|_| Process::start(&config)).collect();
        for r in &replicas {
            wait_ready(r.addr).await;
        }
        replicas
    }

    /// Drops the database; every replica must be stopped first.
    async fn finish(self) {
        self.db.drop_now().await;
    }
}

async fn register(addr: SocketAddr, username: &str) -> StatusCode {
    post_json(
        addr,
        "/register",
        &json!({"username": username, "password": PASSWORD}),
        &[],
    )
    .await
    .status
}

async fn login(addr: SocketAddr, username: &str) -> String {
    let r = post_json(
        addr,
        "/login",
        &json!({"username": username, "password": PASSWORD}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// Polls until `addr` refuses `token` as revoked; returns how long that took.
async fn until_refused(addr: SocketAddr, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = get_with_token(addr, "/api/x", token).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.msg(), "Token has been revoked");
            return start.elapsed();
        }
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(
            start.elapsed() < limit,
            "{addr} still accepted the token after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn a_logout_on_one_replica_is_enforced_by_the_others_within_a_second() {
    let Some(cluster) =
        Cluster::start("a_logout_on_one_replica_is_enforced_by_the_others_within_a_second").await
    else {
        return;
    };
    let replicas = cluster.replicas(3).await;
    let (a, b, c) = (replicas[0].addr, replicas[1].addr, replicas[2].addr);

    assert_eq!(register(a, "alice").await, StatusCode::CREATED);
    let token = login(b, "alice").await;
    let r = get_with_token(c, "/api/x", &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["target"], "/api/x");

    assert_eq!(
        post_with_token(a, "/logout", &token).await.status,
        StatusCode::OK
    );
    let took_c = until_refused(c, &token, Duration::from_secs(1)).await;
    let took_b = until_refused(b, &token, Duration::from_secs(1)).await;
    eprintln!("logout on A reached C in {took_c:?}, B in {took_b:?}");
    assert_eq!(
        get_with_token(a, "/api/x", &token).await.msg(),
        "Token has been revoked"
    );

    drop(replicas);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn fifty_simultaneous_registrations_of_one_name_give_exactly_one_201() {
    let Some(cluster) =
        Cluster::start("fifty_simultaneous_registrations_of_one_name_give_exactly_one_201").await
    else {
        return;
    };
    let replicas = cluster.replicas(3).await;
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let addr = replicas[i % 3].addr;
            // Names that differ only by case are one name.
            let name = if i % 2 == 0 { "Mallory" } else { "mallory" };
            tokio::spawn(async move { register(addr, name).await })
        })
        .collect();
    let mut created = 0;
    let mut conflicts = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, conflicts), (1, 49));
    drop(replicas);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn a_replica_killed_and_restarted_refuses_what_was_revoked_before_and_while_it_was_down() {
    let Some(cluster) = Cluster::start(
        "a_replica_killed_and_restarted_refuses_what_was_revoked_before_and_while_it_was_down",
    )
    .await
    else {
        return;
    };
    let mut replicas = cluster.replicas(2).await;
    let mut c = replicas.pop().unwrap();
    let a = replicas.pop().unwrap();

    assert_eq!(register(a.addr, "bob").await, StatusCode::CREATED);
    let before = login(a.addr, "bob").await;
    let during = login(a.addr, "bob").await;
    let kept = login(a.addr, "bob").await;
    assert_eq!(
        post_with_token(a.addr, "/logout", &before).await.status,
        StatusCode::OK
    );
    until_refused(c.addr, &before, Duration::from_secs(1)).await;

    c.signal("KILL");
    assert!(c.wait(Duration::from_secs(5)).is_some());
    assert_eq!(
        post_with_token(a.addr, "/logout", &during).await.status,
        StatusCode::OK
    );

    let c = Process::start(&c.config);
    wait_ready(c.addr).await;
    for token in [&before, &during] {
        assert_eq!(
            get_with_token(c.addr, "/api/x", token).await.msg(),
            "Token has been revoked"
        );
    }
    assert_eq!(
        get_with_token(c.addr, "/api/x", &kept).await.status,
        StatusCode::OK
    );
    drop((a, c));
    cluster.finish().await;
}

/// Until the store answers, a replica is alive but not ready, and forwards no protected request.
/// When the store drops later, tokens are still checked in memory, logins and logouts answer 503,
/// and everything recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn store_outages_fail_closed_and_recover_by_themselves() {
    let Some(cluster) = Cluster::start("store_outages_fail_closed_and_recover_by_themselves").await
    else {
        return;
    };
    let upstream = &cluster.upstream;

    // A first replica (direct) prepares a user and a token.
    let direct = cluster.replicas(1).await.pop().unwrap();
    assert_eq!(register(direct.addr, "carol").await, StatusCode::CREATED);
    let token = login(direct.addr, "carol").await;

    // A second replica reaches the database through a relay that starts cut.
    let relay = TcpRelay::start(support::pg::address(&cluster.db.url)).await;
    relay.cut();
    let via_relay = support::pg::with_address(&cluster.db.url, relay.addr);
    let gate = Process::start(&cluster.config(&via_relay));
    assert_eq!(
        get(gate.addr, "/healthz", &[]).await.status,
        StatusCode::OK,
        "alive"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get(gate.addr, "/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["revocations_loaded"], false);
    let r = get_with_token(gate.addr, "/api/x", &token).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready: no token is trusted yet"
    );
    assert_eq!(
        get(gate.addr, "/public/x", &[]).await.status,
        StatusCode::OK,
        "public routes need no token"
    );
    let forwarded_protected = upstream
        .seen()
        .iter()
        .filter(|s| s.target == "/api/x")
        .count();
    assert_eq!(forwarded_protected, 0);

    relay.restore();
    wait_ready(gate.addr).await;
    assert_eq!(
        get_with_token(gate.addr, "/api/x", &token).await.status,
        StatusCode::OK
    );

    // The store drops while serving.
    relay.cut();
    assert_eq!(
        get_with_token(gate.addr, "/api/x", &token).await.status,
        StatusCode::OK,
        "checked in memory"
    );
    let r = post_json(
        gate.addr,
        "/login",
        &json!({"username": "carol", "password": PASSWORD}),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable, try again shortly"
        )
    );
    let r = post_with_token(gate.addr, "/logout", &token).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a logout that is not durable is not acknowledged"
    );
    assert_eq!(
        get(gate.addr, "/readyz", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get_with_token(direct.addr, "/api/x", &token).await.status,
        StatusCode::OK,
        "nothing was revoked"
    );

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post_with_token(gate.addr, "/logout", &token).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never came back: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until_refused(direct.addr, &token, Duration::from_secs(1)).await;
    drop((gate, direct));
    cluster.finish().await;
}

/// The login race of `tests/bypasses.rs` on PostgreSQL, across two replicas: logins on both while
/// one changes the password. A session is created only if the hash its login verified is still the
/// user's, checked under a share lock on the user's row; none outlives the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn no_login_on_any_replica_that_verified_the_old_password_outlives_the_change() {
    let Some(cluster) = Cluster::start(
        "no_login_on_any_replica_that_verified_the_old_password_outlives_the_change",
    )
    .await
    else {
        return;
    };
    let config = cluster.config(&cluster.db.url);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, for_login_race(text)).unwrap();
    let (a, b) = (Process::start(&config), Process::start(&config));
    wait_ready(a.addr).await;
    wait_ready(b.addr).await;

    let survivors = logins_racing_a_password_change(&[a.addr, b.addr], a.addr).await;
    for (access, refresh) in &survivors {
        // The replica that changed the password knows at once; the other within a second.
        let r = get_with_token(a.addr, "/api/x", access).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "a login survived: {r:?}"
        );
        let r = post_with_token(a.addr, "/refresh", refresh).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "a login survived: {r:?}"
        );
        until_refused(b.addr, access, Duration::from_secs(1)).await;
    }
    drop((a, b));
    cluster.finish().await;
}

/// The store decides every refresh, whatever a replica's memory says. Replica B hears of
/// revocations late (what PostgreSQL sends on its `LISTEN` connection is held back, and its
/// catch-up is a minute away), yet a session logged out on A cannot be refreshed on B, at once;
/// nor can another session of a user who logged out everywhere on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn a_session_revoked_on_one_replica_is_refused_a_refresh_on_another_that_has_not_heard() {
    let Some(cluster) = Cluster::start(
        "a_session_revoked_on_one_replica_is_refused_a_refresh_on_another_that_has_not_heard",
    )
    .await
    else {
        return;
    };
    let a = cluster.replicas(1).await.pop().unwrap();
    let relay = TcpRelay::start_holding(
        support::pg::address(&cluster.db.url),
        Some((b"LISTEN", b"UNLISTEN")),
    )
    .await;
    // In the clear, so that the relay can see which connection listens.
    let via_relay = support::pg::with_address(&cluster.db.url, relay.addr);
    let separator = if via_relay.contains('?') { '&' } else { '?' };
    let config = cluster.config(&format!("{via_relay}{separator}sslmode=disable"));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        // A minute to catch up, and (on a busy machine) time to open a connection.
        text.replace("catch_up_interval = \"2s\"", "catch_up_interval = \"60s\"")
            .replace("connect_timeout = \"1s\"", "connect_timeout = \"10s\""),
    )
    .unwrap();
    let b = Process::start(&config);
    wait_ready(b.addr).await;
    // Hold back only once B listens: a LISTEN left waiting would hold a pooled connection too.
    let listening = Instant::now();
    while !b.log_text().contains("revocation feed connected") {
        assert!(
            listening.elapsed() < Duration::from_secs(10),
            "B never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.hold();

    let r = post_json(
        b.addr,
        "/register",
        &json!({"username": "dora", "password": PASSWORD}),
        &[],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{r:?}\nB's log:\n{}",
        b.log_text()
    );
    let (access, refresh) = Setup::login_at(b.addr, "dora").await;
    let r = post_with_token(a.addr, "/logout", &access).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::OK, "Successfully logged out")
    );
    assert_eq!(
        get_with_token(b.addr, "/api/x", &access).await.status,
        StatusCode::OK,
        "B has not heard of the logout: the relay holds its notifications back"
    );
    let r = post_with_token(b.addr, "/refresh", &refresh).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Token has been revoked"),
        "a session the store knows is revoked was refreshed on B"
    );

    // Log out everywhere on A with one session; refresh another on B at once.
    let (first, _) = Setup::login_at(b.addr, "dora").await;
    let (_, other_refresh) = Setup::login_at(b.addr, "dora").await;
    let r = post_with_token(a.addr, "/logout-all", &first).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["sessions_revoked"], 2);
    let r = post_with_token(b.addr, "/refresh", &other_refresh).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Token has been revoked"),
        "a session ended by logout-all was refreshed on B"
    );
    // Nor can the revoked session ask B for anything the store decides.
    let r = post_with_token(b.addr, "/logout-all", &first).await;
    assert_eq!(
        (r.status, r.msg().as_str()),
        (StatusCode::UNAUTHORIZED, "Token has been revoked")
    );

    // Once B hears, its memory refuses the access tokens too.
    relay.release();
    until_refused(b.addr, &access, Duration::from_secs(2)).await;
    until_refused(b.addr, &first, Duration::from_secs(2)).await;
    drop((a, b));
    cluster.finish().await;
}

/// Two password changes of one user at once, on two replicas, from two sessions: each would end
/// the other's session. Transactions lock the user's row before any session's, so they take turns
/// rather than deadlock, and the second finds its session ended: one 200, one 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn two_password_changes_at_once_on_two_replicas_leave_exactly_one_winner() {
    let Some(cluster) =
        Cluster::start("two_password_changes_at_once_on_two_replicas_leave_exactly_one_winner")
            .await
    else {
        return;
    };
    // Hashing slow enough that both requests are past their token check before either writes.
    let config = cluster.config(&cluster.db.url);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("memory_kib = 1024", "memory_kib = 16384"),
    )
    .unwrap();
    let replicas = [Process::start(&config), Process::start(&config)];
    for r in &replicas {
        wait_ready(r.addr).await;
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    for round in 0..5 {
        let name = format!("erin{round}");
        assert_eq!(register(a.addr, &name).await, StatusCode::CREATED);
        let (on_a, on_b) = (login(a.addr, &name).await, login(b.addr, &name).await);
        let change = |addr, token: String, new: &'static str| async move {
            let body = json!({"old_password": PASSWORD, "new_password": new});
            let auth = format!("Bearer {token}");
            post_json(
                addr,
                "/password",
                &body,
                &[("authorization", auth.as_str())],
            )
            .await
        };
        let (ra, rb) = tokio::join!(
            change(a.addr, on_a, "the password of a"),
            change(b.addr, on_b, "the password of b"),
        );
        eprintln!(
            "ROUND {round} {:?} {} / {:?} {}",
            ra.status,
            ra.msg(),
            rb.status,
            rb.msg()
        );
        let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 401], "round {round}: {ra:?} {rb:?}");
        let loser = if ra.status == StatusCode::OK {
            &rb
        } else {
            &ra
        };
        assert_eq!(loser.msg(), "Token has been revoked");
    }
    drop(replicas);
    cluster.finish().await;
}

/// A browser's tabs may refresh through different replicas: the token rotated on A a moment ago
/// still gives B an access token of the same session (the grace lives in the store), and no
/// second refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn a_refresh_racing_on_another_replica_falls_within_the_grace() {
    let Some(cluster) =
        Cluster::start("a_refresh_racing_on_another_replica_falls_within_the_grace").await
    else {
        return;
    };
    let replicas = cluster.replicas(2).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    let (_, refresh) = Setup::login_at(a.addr, "fay").await;
    let r = post_with_token(a.addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    let rotated = r.json();
    let r = post_with_token(b.addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.json().get("refresh_token").is_none());
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get_with_token(a.addr, "/api/x", &access).await.status,
        StatusCode::OK
    );
    // The chain goes on from the token A gave.
    let next = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(
        post_with_token(b.addr, "/refresh", next).await.status,
        StatusCode::OK
    );
    drop(replicas);
    cluster.finish().await;
}

/// `authgate users logout` against the shared database: every replica refuses the user's tokens
/// within a second (the revocation is announced like a gate's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn a_logout_from_the_command_line_reaches_every_replica() {
    let Some(cluster) =
        Cluster::start("a_logout_from_the_command_line_reaches_every_replica").await
    else {
        return;
    };
    let replicas = cluster.replicas(2).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    assert_eq!(register(a.addr, "gil").await, StatusCode::CREATED);
    let access = login(b.addr, "gil").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["users", "logout", "gil", "--config"])
        .arg(&a.config)
        .env_remove("AUTHGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 sessions of gil revoked"
    );
    for replica in [a, b] {
        until_refused(replica.addr, &access, Duration::from_secs(1)).await;
    }
    drop(replicas);
    cluster.finish().await;
}

/// `authgate users` on PostgreSQL: roles set from the command line are in the next refresh on
/// any replica, and a user disabled there can no longer log in or refresh anywhere, their live
/// token refused by every replica within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_database,
    ignore = "needs PostgreSQL: set AUTHGATE_TEST_DATABASE_URL"
)]
async fn roles_and_disabling_from_the_command_line_reach_every_replica() {
    let Some(cluster) =
        Cluster::start("roles_and_disabling_from_the_command_line_reach_every_replica").await
    else {
        return;
    };
    let replicas = cluster.replicas(2).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    let users = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("users")
            .args(args)
            .arg("--config")
            .arg(&a.config)
            .env_remove("AUTHGATE_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(register(a.addr, "hal").await, StatusCode::CREATED);
    let r = post_json(
        b.addr,
        "/login",
        &json!({"username": "hal", "password": PASSWORD}),
        &[],
    )
    .await;
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        payload(r.json()["access_token"].as_str().unwrap())["roles"],
        json!([])
    );

    assert_eq!(
        users(&["set-roles", "hal", "ops", "admin"]),
        "roles of hal: admin, ops"
    );
    let r = post_with_token(a.addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(payload(&access)["roles"], json!(["admin", "ops"]));
    let listed: serde_json::Value = serde_json::from_str(&users(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["roles"], json!(["admin", "ops"]));
    assert!(listed[0]["last_login_at"].as_u64().is_some());
    let sessions: serde_json::Value =
        serde_json::from_str(&users(&["sessions", "hal", "--json"])).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert!(sessions[0]["refreshed_at"].as_u64().is_some());

    assert_eq!(
        users(&["disable", "hal"]),
        "hal disabled; 1 sessions revoked"
    );
    for replica in [a, b] {
        until_refused(replica.addr, &access, Duration::from_secs(1)).await;
    }
    let r = post_with_token(b.addr, "/refresh", &refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post_json(
        a.addr,
        "/login",
        &json!({"username": "hal", "password": PASSWORD}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(users(&["enable", "hal"]), "hal enabled");
    login(b.addr, "hal").await;
    drop(replicas);
    cluster.finish().await;
}
