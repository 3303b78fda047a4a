//! The PostgreSQL backend, for several replicas sharing one database. Every revocation is also
//! announced with NOTIFY in the transaction that writes it, so other replicas hear of it on commit.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::{
    Ending, NewSession, RefreshRotation, Rotation, SessionSummary, StoreError, SummaryRow, User,
    UserChange, UserSessionsEnd, UserSummary, session_summary, summary,
};
use crate::core::revocation::{Revocation, RevocationKind};
use crate::core::roles::{join_roles, split_roles};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The NOTIFY channel revocations are announced on.
const CHANNEL: &str = "authgate_revocations";

/// The store's clock in milliseconds; `clock_timestamp`, not the transaction's start time.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("authgate");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(connect_timeout)
            .connect_lazy_with(options);
        Ok(PgStore { pool })
    }

    /// sqlx holds an advisory lock while migrating, so replicas starting together take turns.
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
             VALUES ($1, $2, $3, $4, $5, $6)",
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
            "SELECT id, username, password_hash, roles FROM users WHERE {column} = $1"
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
             (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > $1) \
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
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
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
            UserChange::Roles(roles) => sqlx::query("UPDATE users SET roles = $2 WHERE id = $1")
                .bind(user_id)
                .bind(join_roles(roles)),
            UserChange::Enable => {
                sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1").bind(user_id)
            }
        };
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// `FOR SHARE` waits for a password change or a disabling that holds the user's row, then
    /// checks what it committed; a change that comes later waits for this insert, and then sees
    /// its session. One statement: the session, and the login recorded on the user.
    pub(crate) async fn create_session(
        &self,
        login: NewSession<'_>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let roles: Option<String> = sqlx::query_scalar(
            "WITH created AS ( \
               INSERT INTO sessions (sid, user_id, refresh_jti, expires_at, created_at) \
               SELECT $1, id, $2, $3, $4 FROM users \
               WHERE id = $5 AND password_hash = $6 AND disabled_at IS NULL FOR SHARE \
               RETURNING user_id) \
             UPDATE users SET last_login_at = $4 FROM created WHERE users.id = created.user_id \
             RETURNING users.roles",
        )
        .bind(login.sid)
        .bind(login.refresh_jti)
        .bind(login.expires_at as i64)
        .bind(login.now as i64)
        .bind(login.user_id)
        .bind(login.verified_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(roles.map(|roles| split_roles(&roles)))
    }

    /// One statement, so the check that the session is live adds no round trip to a refresh;
    /// when it changes nothing, a read tells why.
    pub(crate) async fn rotate_refresh(
        &self,
        rotation: RefreshRotation<'_>,
    ) -> Result<Rotation, StoreError> {
        let rotated: Option<String> = sqlx::query_scalar(
            "UPDATE sessions s SET previous_jti = s.refresh_jti, rotated_at = $1, refresh_jti = $2, \
             expires_at = GREATEST(s.expires_at, $3) FROM users u \
             WHERE u.id = s.user_id AND s.sid = $4 AND s.refresh_jti = $5 AND s.revoked_at IS NULL \
             AND u.disabled_at IS NULL RETURNING u.roles",
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
             COALESCE(s.previous_jti = $1 AND s.rotated_at >= $2, FALSE), u.roles \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.sid = $3",
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
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, bool)> = sqlx::query_as(
            "SELECT refresh_jti, revoked_at IS NULL FROM sessions WHERE sid = $1 FOR UPDATE",
        )
        .bind(sid)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((current, true)) = row else {
            tx.rollback().await?;
            return Ok(Ending::AlreadyEnded);
        };
        let revocation = revoke(&mut tx, sid, now, hold_until).await?;
        tx.commit().await?;
        Ok(Ending::now(revocation, presented_refresh, &current))
    }

    /// Locks the user's row first and the sessions' rows after, the order every transaction that
    /// takes both keeps (a login's `create_session` reads the user's row `FOR SHARE`), so two
    /// password changes of one user cannot deadlock.
    pub(crate) async fn end_user_sessions(
        &self,
        end: UserSessionsEnd<'_>,
    ) -> Result<Option<Vec<Revocation>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(end.user_id)
            .execute(&mut *tx)
            .await?;
        if let Some(asking) = end.asking_sid {
            let live: Option<bool> = sqlx::query_scalar(
                "SELECT revoked_at IS NULL FROM sessions WHERE sid = $1 FOR UPDATE",
            )
            .bind(asking)
            .fetch_optional(&mut *tx)
            .await?;
            if live != Some(true) {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        if let Some(hash) = end.new_password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(end.user_id)
                .execute(&mut *tx)
                .await?;
        }
        if end.disable {
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $1) WHERE id = $2")
                .bind(end.now as i64)
                .bind(end.user_id)
                .execute(&mut *tx)
                .await?;
        }
        let sids: Vec<String> = sqlx::query_scalar(
            "SELECT sid FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             AND NOT (sid = $3 AND $4) FOR UPDATE",
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
        let mut rows = sqlx::query(
            "SELECT kind, key, expires_at FROM revocations WHERE updated_ms >= $1 AND expires_at > $2",
        )
        .bind(since_ms)
        .bind(now as i64)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            if let Some(kind) = RevocationKind::parse(row.get::<&str, _>(0)) {
                sink(Revocation {
                    kind,
                    key: row.get(1),
                    expires_at: row.get::<i64, _>(2).max(0) as u64,
                });
            }
        }
        Ok(as_of_ms)
    }

    pub(crate) async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let revocations = sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(revocations + sessions)
    }

    pub(crate) fn listener(&self) -> RevocationListener {
        RevocationListener {
            pool: self.pool.clone(),
            listener: None,
        }
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Marks the session revoked at `now` and records its revocation, held until `hold_until`, and
/// announces it to the other replicas.
async fn revoke(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sid: &str,
    now: u64,
    hold_until: u64,
) -> Result<Revocation, StoreError> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE sid = $2")
        .bind(now as i64)
        .bind(sid)
        .execute(&mut **tx)
        .await?;
    let r = Revocation {
        kind: RevocationKind::Session,
        key: sid.to_string(),
        expires_at: hold_until,
    };
    sqlx::query(&format!(
        "INSERT INTO revocations (kind, key, expires_at, updated_ms) VALUES ($1, $2, $3, {NOW_MS}) \
         ON CONFLICT (kind, key) DO UPDATE \
         SET expires_at = GREATEST(revocations.expires_at, excluded.expires_at), updated_ms = excluded.updated_ms"
    ))
    .bind(r.kind.as_str())
    .bind(&r.key)
    .bind(r.expires_at as i64)
    .execute(&mut **tx)
    .await?;
    // Delivered to every listening replica when this transaction commits, and never if it does not.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{}:{}:{}", r.kind.as_str(), r.expires_at, r.key))
        .execute(&mut **tx)
        .await?;
    Ok(r)
}

/// What the revocation feed hears.
#[derive(Debug)]
pub(crate) enum ListenerEvent {
    /// Another replica (or this one) revoked something.
    Revoked(Revocation),
    /// The feed (re)connected: anything announced while it was away was missed, so catch up.
    Connected,
}

/// Other replicas' revocations as they commit, reconnecting by itself when the connection drops.
pub(crate) struct RevocationListener {
    pool: PgPool,
    listener: Option<PgListener>,
}

impl RevocationListener {
    /// Waits for the next event; never fails, retrying the connection every second while the
    /// database is away.
    pub(crate) async fn next(&mut self) -> ListenerEvent {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match connect_listener(&self.pool).await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        return ListenerEvent::Connected;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation feed cannot connect; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(revocation) = parse_payload(notification.payload()) {
                        return ListenerEvent::Revoked(revocation);
                    }
                }
                Ok(None) => {
                    tracing::warn!("revocation feed lost its connection; reconnecting");
                    self.listener = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation feed failed; reconnecting");
                    self.listener = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn connect_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// `kind:expires_at:key`, as written by `revoke`.
fn parse_payload(payload: &str) -> Option<Revocation> {
    let mut parts = payload.splitn(3, ':');
    Some(Revocation {
        kind: RevocationKind::parse(parts.next()?)?,
        expires_at: parts.next()?.parse().ok()?,
        key: parts.next()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads_round_trip() {
        let r = parse_payload("session:1700000000:abc:def").unwrap();
        assert_eq!(r.kind, RevocationKind::Session);
        assert_eq!(r.expires_at, 1_700_000_000);
        assert_eq!(r.key, "abc:def");
        assert!(parse_payload("bogus:1:x").is_none());
        assert!(parse_payload("token:notanumber:x").is_none());
        assert!(parse_payload("token:1").is_none());
        assert!(
            parse_payload("token:1700000000:abc").is_none(),
            "older replicas' rotated tokens are not revocations any more"
        );
    }
}
