//! The embedded SQLite backend: one file, created on first start.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Ending, NewSession, RefreshRotation, Rotation, SessionSummary, StoreError, SummaryRow, User,
    UserChange, UserSessionsEnd, UserSummary, session_summary, summary,
};
use crate::core::revocation::{Revocation, RevocationKind};
use crate::core::roles::{join_roles, split_roles};

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
            "INSERT INTO users (id, username, username_key, password_hash, roles, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(username_key)
        .bind(&user.password_hash)
        .bind(join_roles(&user.roles))
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
            "SELECT id, username, password_hash, roles FROM users WHERE {column} = ?"
        ))
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| User {
            id: r.get(0),
            username: r.get(1),
            password_hash: r.get(2),
            roles: split_roles(r.get(3)),
        }))
    }

    pub(crate) async fn list_users(&self, now: u64) -> Result<Vec<UserSummary>, StoreError> {
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.roles, u.disabled_at, u.created_at, u.last_login_at, \
             (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > ?) \
             FROM users u ORDER BY u.username_key",
        )
        .bind(now as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(summary).collect())
    }

    pub(crate) async fn user_sessions(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let rows: Vec<(String, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT sid, created_at, rotated_at, expires_at FROM sessions \
             WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? \
             ORDER BY COALESCE(created_at, 0) DESC, sid",
        )
        .bind(user_id)
        .bind(now as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(session_summary).collect())
    }

    pub(crate) async fn change_user(
        &self,
        user_id: &str,
        change: UserChange,
    ) -> Result<bool, StoreError> {
        let query = match &change {
            UserChange::Roles(roles) => {
                sqlx::query("UPDATE users SET roles = ? WHERE id = ?").bind(join_roles(roles))
            }
            UserChange::Enable => sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = ?"),
        };
        let changed = query
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed == 1)
    }

    /// Writes are serialised in SQLite, so the check and the insert are one with respect to a
    /// password change or a disabling.
    pub(crate) async fn create_session(
        &self,
        login: NewSession<'_>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let created = sqlx::query(
            "INSERT INTO sessions (sid, user_id, refresh_jti, expires_at, created_at) \
             SELECT ?, id, ?, ?, ? FROM users WHERE id = ? AND password_hash = ? AND disabled_at IS NULL",
        )
        .bind(login.sid)
        .bind(login.refresh_jti)
        .bind(login.expires_at as i64)
        .bind(login.now as i64)
        .bind(login.user_id)
        .bind(login.verified_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created != 1 {
            return Ok(None);
        }
        let roles: String =
            sqlx::query_scalar("UPDATE users SET last_login_at = ? WHERE id = ? RETURNING roles")
                .bind(login.now as i64)
                .bind(login.user_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(split_roles(&roles)))
    }

    /// A single statement is a transaction of its own; when it changes nothing, a read tells why.
    pub(crate) async fn rotate_refresh(
        &self,
        rotation: RefreshRotation<'_>,
    ) -> Result<Rotation, StoreError> {
        let rotated: Option<String> = sqlx::query_scalar(
            "UPDATE sessions SET previous_jti = refresh_jti, rotated_at = ?, refresh_jti = ?, \
             expires_at = MAX(expires_at, ?) WHERE sid = ? AND refresh_jti = ? AND revoked_at IS NULL \
             AND (SELECT disabled_at FROM users WHERE id = sessions.user_id) IS NULL \
             RETURNING (SELECT roles FROM users WHERE id = sessions.user_id)",
        )
        .bind(rotation.now as i64)
        .bind(rotation.new_jti)
        .bind(rotation.new_expires_at as i64)
        .bind(rotation.sid)
        .bind(rotation.old_jti)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(roles) = rotated {
            return Ok(Rotation::Rotated {
                roles: split_roles(&roles),
            });
        }
        let grace_since = rotation.now.saturating_sub(rotation.grace.as_secs()) as i64;
        let state: Option<(bool, bool, String)> = sqlx::query_as(
            "SELECT s.revoked_at IS NULL AND u.disabled_at IS NULL, \
             COALESCE(s.previous_jti = ? AND s.rotated_at >= ?, FALSE), u.roles \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.sid = ?",
        )
        .bind(rotation.old_jti)
        .bind(grace_since)
        .bind(rotation.sid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(Rotation::missed(state, rotation.grace))
    }

    pub(crate) async fn end_session(
        &self,
        sid: &str,
        presented_refresh: Option<&str>,
        now: u64,
        hold_until: u64,
    ) -> Result<Ending, StoreError> {
        // IMMEDIATE: the write lock is taken at the start, waiting (busy_timeout) for another
        // writer to finish. A deferred transaction that reads first and writes later fails at
        // once with "database is locked" when another connection wrote in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(String, bool)> =
            sqlx::query_as("SELECT refresh_jti, revoked_at IS NULL FROM sessions WHERE sid = ?")
                .bind(sid)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((current, true)) = row else {
            return Ok(Ending::AlreadyEnded);
        };
        let revocation = revoke(&mut tx, sid, now, hold_until).await?;
        tx.commit().await?;
        Ok(Ending::now(revocation, presented_refresh, &current))
    }

    pub(crate) async fn end_user_sessions(
        &self,
        end: UserSessionsEnd<'_>,
    ) -> Result<Option<Vec<Revocation>>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(asking) = end.asking_sid {
            let live: Option<bool> =
                sqlx::query_scalar("SELECT revoked_at IS NULL FROM sessions WHERE sid = ?")
                    .bind(asking)
                    .fetch_optional(&mut *tx)
                    .await?;
            if live != Some(true) {
                return Ok(None);
            }
        }
        if let Some(hash) = end.new_password_hash {
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(hash)
                .bind(end.user_id)
                .execute(&mut *tx)
                .await?;
        }
        if end.disable {
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?")
                .bind(end.now as i64)
                .bind(end.user_id)
                .execute(&mut *tx)
                .await?;
        }
        let sids: Vec<String> = sqlx::query_scalar(
            "SELECT sid FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? \
             AND NOT (sid = ? AND ?)",
        )
        .bind(end.user_id)
        .bind(end.now as i64)
        .bind(end.asking_sid.unwrap_or(""))
        .bind(end.keep_asking)
        .fetch_all(&mut *tx)
        .await?;
        let mut revoked = Vec::with_capacity(sids.len());
        for sid in sids {
            revoked.push(revoke(&mut tx, &sid, end.now, end.hold_until).await?);
        }
        tx.commit().await?;
        Ok(Some(revoked))
    }

    /// Rows come back in batches of up to 8192 revocations glued into one string each: sqlx hands
    /// every SQLite row over from its worker thread one by one, which made a million rows take
    /// seconds; SQLite itself reads them in a quarter of one.
    pub(crate) async fn revocations_since(
        &self,
        since_ms: i64,
        window: Duration,
        now: u64,
        sink: &mut (dyn FnMut(Revocation) + Send),
    ) -> Result<i64, StoreError> {
        use futures_util::TryStreamExt;
        let as_of_ms: i64 = sqlx::query_scalar(&format!("SELECT {NOW_MS}"))
            .fetch_one(&self.pool)
            .await?;
        let since_ms = since_ms.max(as_of_ms - window.as_millis() as i64);
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

/// Marks the session revoked at `now` and records its revocation, held until `hold_until`.
async fn revoke(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    sid: &str,
    now: u64,
    hold_until: u64,
) -> Result<Revocation, StoreError> {
    sqlx::query("UPDATE sessions SET revoked_at = ? WHERE sid = ?")
        .bind(now as i64)
        .bind(sid)
        .execute(&mut **tx)
        .await?;
    let revocation = Revocation {
        kind: RevocationKind::Session,
        key: sid.to_string(),
        expires_at: hold_until,
    };
    sqlx::query(&format!(
        "INSERT INTO revocations (kind, key, expires_at, updated_ms) VALUES (?, ?, ?, {NOW_MS}) \
         ON CONFLICT (kind, key) DO UPDATE \
         SET expires_at = MAX(expires_at, excluded.expires_at), updated_ms = excluded.updated_ms"
    ))
    .bind(revocation.kind.as_str())
    .bind(&revocation.key)
    .bind(revocation.expires_at as i64)
    .execute(&mut **tx)
    .await?;
    Ok(revocation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation<'a>(sid: &'a str, old_jti: &'a str, new_jti: &'a str) -> RefreshRotation<'a> {
        RefreshRotation {
            sid,
            old_jti,
            new_jti,
            new_expires_at: 1,
            now: crate::core::token::unix_now(),
            grace: Duration::ZERO,
        }
    }

    /// A store as the version before `0002` left it: its schema, a live session, a logged-out
    /// one, and a rotated refresh token revoked on its own.
    async fn store_from_before_0002(dir: &Path) -> SqliteStore {
        let store = SqliteStore::connect(&dir.join("old.db")).unwrap();
        let first = dir.join("first-migration");
        std::fs::create_dir(&first).unwrap();
        let name = "0001_init.sql";
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        std::fs::copy(source.join(name), first.join(name)).unwrap();
        sqlx::migrate::Migrator::new(first.as_path())
            .await
            .unwrap()
            .run(&store.pool)
            .await
            .unwrap();
        let far = crate::core::token::unix_now() as i64 + 86_400;
        for statement in [
            "INSERT INTO users VALUES ('u1', 'alice', 'alice', 'hash', 0)".to_string(),
            format!("INSERT INTO sessions VALUES ('live', 'u1', 'jti-live', {far})"),
            format!("INSERT INTO sessions VALUES ('out', 'u1', 'jti-out', {far})"),
            format!("INSERT INTO revocations VALUES ('session', 'out', {far}, {NOW_MS})"),
            format!("INSERT INTO revocations VALUES ('token', 'jti-old', {far}, {NOW_MS})"),
        ] {
            sqlx::query(&statement).execute(&store.pool).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn sessions_logged_out_before_the_upgrade_stay_unrefreshable_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_from_before_0002(dir.path()).await;
        store.migrate().await.unwrap();
        assert_eq!(
            store
                .rotate_refresh(rotation("out", "jti-out", "new"))
                .await
                .unwrap(),
            Rotation::Revoked
        );
        assert_eq!(
            store
                .rotate_refresh(rotation("live", "jti-live", "new"))
                .await
                .unwrap(),
            Rotation::Rotated { roles: vec![] }
        );
        assert_eq!(
            store
                .rotate_refresh(rotation("live", "jti-live", "newer"))
                .await
                .unwrap(),
            Rotation::Reused
        );
        let alice = store.find_user("alice").await.unwrap().unwrap();
        assert!(
            alice.roles.is_empty(),
            "users from before 0004 have no role"
        );
        let tokens: i64 =
            sqlx::query_scalar("SELECT count(*) FROM revocations WHERE kind = 'token'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(tokens, 0, "rotated tokens need no rows now");
    }

    /// A revocation written longer ago than the access window covers no access token still
    /// valid, whatever its expiry says (rows from before the upgrade were kept for as long as
    /// their session): start-up does not load it.
    #[tokio::test]
    async fn only_revocations_written_within_the_window_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_from_before_0002(dir.path()).await;
        store.migrate().await.unwrap();
        let now = crate::core::token::unix_now();
        let recent = store
            .end_session("live", None, now, now + 960)
            .await
            .unwrap();
        assert!(matches!(recent, Ending::Ended(_)));
        sqlx::query("UPDATE revocations SET updated_ms = updated_ms - 7200000 WHERE key = 'out'")
            .execute(&store.pool)
            .await
            .unwrap();
        let mut loaded = Vec::new();
        let mut sink = |r: Revocation| loaded.push(r.key);
        store
            .revocations_since(0, Duration::from_secs(960), now, &mut sink)
            .await
            .unwrap();
        assert_eq!(loaded, ["live"]);
        let mut everything = Vec::new();
        let mut sink = |r: Revocation| everything.push(r.key);
        store
            .revocations_since(0, Duration::from_secs(3 * 3600), now, &mut sink)
            .await
            .unwrap();
        everything.sort();
        assert_eq!(everything, ["live", "out"]);
    }
}
