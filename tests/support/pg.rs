//! A fresh PostgreSQL database per test, when `AUTHGATE_TEST_DATABASE_URL` names a server.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The server's URL, or `None` (and a note on stderr) when PostgreSQL tests should be skipped.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var("AUTHGATE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping {test}: set AUTHGATE_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it"
            );
            None
        }
    }
}

/// A database of its own for one test, dropped at the end.
pub struct FreshDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl FreshDatabase {
    pub async fn create(server: &str) -> FreshDatabase {
        let name = format!("authgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server)
            .await
            .expect("PostgreSQL is reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(server, &name);
        FreshDatabase {
            server: server.to_string(),
            name,
            url,
        }
    }

    pub async fn drop_now(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.server).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// `server` with its database name replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// `url` pointed at `addr` instead of its own host and port, credentials and database kept.
pub fn with_address(url: &str, addr: std::net::SocketAddr) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let userinfo = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "{}{userinfo}{addr}{}",
        &url[..scheme_end],
        &url[authority_end..]
    )
}

/// The address of the server a `postgres://` URL names (numeric or localhost; default port 5432).
pub fn address(url: &str) -> std::net::SocketAddr {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let host_port = url[scheme_end..authority_end].rsplit('@').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("AUTHGATE_TEST_DATABASE_URL names a numeric host or localhost")
}
