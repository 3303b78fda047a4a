//! The store: users, login sessions and revocations. Handlers call these methods and never see SQL.
//! The embedded SQLite database is the zero-setup default.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::revocation::{Revocation, RevocationKind};

#[derive(Debug)]
pub enum StoreError {
    /// The username is taken.
    Conflict,
    /// The database could not be reached or failed.
    Unavailable(sqlx::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("conflict"),
            StoreError::Unavailable(e) => write!(f, "store unavailable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Unavailable(e),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a logout acknowledged with 200 survives a power cut, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        Ok(Store { pool })
    }

    pub async fn create_user(
        &self,
        user: &User,
        username_key: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&user.id)
            .bind(&user.username)
            .bind(username_key)
            .bind(&user.password_hash)
            .bind(now as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn find_user(&self, username_key: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, username, password_hash FROM users WHERE username_key = ?")
                .bind(username_key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| User {
            id: r.get(0),
            username: r.get(1),
            password_hash: r.get(2),
        }))
    }

    pub async fn create_session(
        &self,
        sid: &str,
        user_id: &str,
        refresh_jti: &str,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (sid, user_id, refresh_jti, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(sid)
        .bind(user_id)
        .bind(refresh_jti)
        .bind(expires_at as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes `new_jti` the session's refresh token if `old_jti` still is, and records `old_jti` as
    /// revoked, in one transaction. `Ok(false)` means `old_jti` was not current: it was reused.
    pub async fn rotate_refresh(
        &self,
        sid: &str,
        old: &Revocation,
        new_jti: &str,
        new_expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE sessions SET refresh_jti = ?, expires_at = MAX(expires_at, ?) WHERE sid = ? AND refresh_jti = ?",
        )
        .bind(new_jti)
        .bind(new_expires_at as i64)
        .bind(sid)
        .bind(&old.key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_revocation(&mut tx, old).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Durably revokes a session until the later of `at_least` and the session's own expiry, and
    /// returns the revocation as stored.
    pub async fn revoke_session(&self, sid: &str, at_least: u64) -> Result<Revocation, StoreError> {
        let mut tx = self.pool.begin().await?;
        let session_expiry: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM sessions WHERE sid = ?")
                .bind(sid)
                .fetch_optional(&mut *tx)
                .await?;
        let revocation = Revocation {
            kind: RevocationKind::Session,
            key: sid.to_string(),
            expires_at: at_least.max(session_expiry.unwrap_or(0).max(0) as u64),
        };
        insert_revocation(&mut tx, &revocation).await?;
        tx.commit().await?;
        Ok(revocation)
    }

    /// Every revocation that still matters at `now`.
    pub async fn load_revocations(&self, now: u64) -> Result<Vec<Revocation>, StoreError> {
        let rows =
            sqlx::query("SELECT kind, key, expires_at FROM revocations WHERE expires_at > ?")
                .bind(now as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Revocation {
                    kind: RevocationKind::parse(r.get::<&str, _>(0))?,
                    key: r.get(1),
                    expires_at: r.get::<i64, _>(2) as u64,
                })
            })
            .collect())
    }

    /// Forgets revocations and sessions that can no longer matter.
    pub async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_revocation(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    r: &Revocation,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO revocations (kind, key, expires_at) VALUES (?, ?, ?) \
         ON CONFLICT (kind, key) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
    )
    .bind(r.kind.as_str())
    .bind(&r.key)
    .bind(r.expires_at as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
