//! The embedded SQLite backend: one file, created on first start.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{StoreError, User};
use crate::core::revocation::{Revocation, RevocationKind};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The store's clock in milliseconds, the same expression everywhere it is needed.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

#[derive(Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) fn connect(path: &Path) -> Result<SqliteStore, StoreError> {
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
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        Ok(SqliteStore { pool })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        Ok(MIGRATIONS.run(&self.pool).await?)
    }

    pub(crate) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(crate) async fn create_user(
        &self,
        user: &User,
        username_key: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(username_key)
        .bind(&user.password_hash)
        .bind(now as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn find_user(&self, username_key: &str) -> Result<Option<User>, StoreError> {
        self.find_user_where("username_key", username_key).await
    }

    pub(crate) async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.find_user_where("id", id).await
    }

    /// `column` is one of this file's literals, never input.
    async fn find_user_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT id, username, password_hash FROM users WHERE {column} = ?"
        ))
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| User {
            id: r.get(0),
            username: r.get(1),
            password_hash: r.get(2),
        }))
    }

    /// Writes are serialised in SQLite, so the check and the insert are one with respect to a
    /// password change.
    pub(crate) async fn create_session(
        &self,
        sid: &str,
        user_id: &str,
        verified_hash: &str,
        refresh_jti: &str,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let created = sqlx::query(
            "INSERT INTO sessions (sid, user_id, refresh_jti, expires_at) \
             SELECT ?, id, ?, ? FROM users WHERE id = ? AND password_hash = ?",
        )
        .bind(sid)
        .bind(refresh_jti)
        .bind(expires_at as i64)
        .bind(user_id)
        .bind(verified_hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(created == 1)
    }

    pub(crate) async fn rotate_refresh(
        &self,
        sid: &str,
        old: &Revocation,
        new_jti: &str,
        new_expires_at: u64,
    ) -> Result<bool, StoreError> {
        // IMMEDIATE: the write lock is taken at the start, waiting (busy_timeout) for another
        // writer to finish. A deferred transaction that reads first and writes later fails at
        // once with "database is locked" when another connection wrote in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let updated = sqlx::query(
            "UPDATE sessions SET refresh_jti = ?, expires_at = MAX(expires_at, ?) \
             WHERE sid = ? AND refresh_jti = ?",
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

    pub(crate) async fn revoke_session(
        &self,
        sid: &str,
        at_least: u64,
    ) -> Result<Revocation, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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

    pub(crate) async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep_sid: Option<&str>,
        new_password_hash: Option<&str>,
        now: u64,
    ) -> Result<Vec<Revocation>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(hash) = new_password_hash {
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(hash)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        let sessions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT sid, expires_at FROM sessions WHERE user_id = ? AND expires_at > ? AND sid <> ? \
             AND sid NOT IN (SELECT key FROM revocations WHERE kind = 'session')",
        )
        .bind(user_id)
        .bind(now as i64)
        .bind(keep_sid.unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        let mut revoked = Vec::with_capacity(sessions.len());
        for (sid, expires_at) in sessions {
            let revocation = Revocation {
                kind: RevocationKind::Session,
                key: sid,
                expires_at: expires_at.max(0) as u64,
            };
            insert_revocation(&mut tx, &revocation).await?;
            revoked.push(revocation);
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Rows come back in batches of up to 8192 revocations glued into one string each: sqlx hands
    /// every SQLite row over from its worker thread one by one, which made a million rows take
    /// seconds; SQLite itself reads them in a quarter of one.
    pub(crate) async fn revocations_since(
        &self,
        since_ms: i64,
        now: u64,
        sink: &mut (dyn FnMut(Revocation) + Send),
    ) -> Result<i64, StoreError> {
        use futures_util::TryStreamExt;
        let as_of_ms: i64 = sqlx::query_scalar(&format!("SELECT {NOW_MS}"))
            .fetch_one(&self.pool)
            .await?;
        // Keys are ids without control characters; ASCII record and unit separators split them.
        let mut batches = sqlx::query(
            "SELECT kind, group_concat(key || char(31) || expires_at, char(30)) FROM revocations \
             WHERE updated_ms >= ? AND expires_at > ? GROUP BY kind, rowid / 8192",
        )
        .bind(since_ms)
        .bind(now as i64)
        .fetch(&self.pool);
        while let Some(batch) = batches.try_next().await? {
            let Some(kind) = RevocationKind::parse(batch.get::<&str, _>(0)) else {
                continue;
            };
            for entry in batch.get::<&str, _>(1).split('\u{1e}') {
                if let Some((key, expires_at)) = entry.split_once('\u{1f}') {
                    sink(Revocation {
                        kind,
                        key: key.to_string(),
                        expires_at: expires_at.parse().unwrap_or(0),
                    });
                }
            }
        }
        Ok(as_of_ms)
    }

    pub(crate) async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let revocations = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(revocations + sessions)
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_revocation(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    r: &Revocation,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO revocations (kind, key, expires_at, updated_ms) VALUES (?, ?, ?, {NOW_MS}) \
         ON CONFLICT (kind, key) DO UPDATE \
         SET expires_at = MAX(expires_at, excluded.expires_at), updated_ms = excluded.updated_ms"
    ))
    .bind(r.kind.as_str())
    .bind(&r.key)
    .bind(r.expires_at as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
