//! The store: users, login sessions and revocations, behind one interface so handlers never see
//! SQL. Embedded SQLite is the zero-setup default; PostgreSQL serves several replicas, which learn
//! of each other's revocations through LISTEN/NOTIFY and a periodic catch-up.

mod postgres;
mod sqlite;
pub(crate) mod sync;

use crate::config::StoreConfig;
use crate::core::revocation::Revocation;

pub(crate) use postgres::{ListenerEvent, RevocationListener};

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

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Unavailable(e.into())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) password_hash: String,
}

#[derive(Clone)]
pub(crate) enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Calls the same method on whichever backend this is.
macro_rules! on_backend {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Prepares a connection pool; nothing is contacted yet, so a store that is down does not stop
    /// start-up. `migrate` is the first call that needs the database.
    pub(crate) fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        Ok(match config {
            StoreConfig::Sqlite { path } => Store::Sqlite(sqlite::SqliteStore::connect(path)?),
            StoreConfig::Postgres {
                url,
                max_connections,
                connect_timeout,
            } => Store::Postgres(postgres::PgStore::connect(
                url,
                *max_connections,
                *connect_timeout,
            )?),
        })
    }

    /// Applies migrations; safe when several replicas start at the same moment.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.migrate().await)
    }

    /// Whether the store answers now.
    pub(crate) async fn ping(&self) -> bool {
        on_backend!(self, s => s.ping().await)
    }

    pub(crate) async fn create_user(
        &self,
        user: &User,
        username_key: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.create_user(user, username_key, now).await)
    }

    pub(crate) async fn find_user(&self, username_key: &str) -> Result<Option<User>, StoreError> {
        on_backend!(self, s => s.find_user(username_key).await)
    }

    pub(crate) async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        on_backend!(self, s => s.find_user_by_id(id).await)
    }

    /// Revokes every live session of a user but `keep_sid`, durably and in one transaction, after
    /// setting a new password hash if one is given. Returns the revocations as stored.
    pub(crate) async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep_sid: Option<&str>,
        new_password_hash: Option<&str>,
        now: u64,
    ) -> Result<Vec<Revocation>, StoreError> {
        on_backend!(self, s => s.revoke_user_sessions(user_id, keep_sid, new_password_hash, now).await)
    }

    /// Creates a login session, if the user's password hash is still `verified_hash`, the one
    /// the login was checked against: checked and created in one step, so that no login that
    /// verified a password outlives a change of it (a change revokes the sessions that exist when
    /// it commits). `Ok(false)` when the password has changed since.
    pub(crate) async fn create_session(
        &self,
        sid: &str,
        user_id: &str,
        verified_hash: &str,
        refresh_jti: &str,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.create_session(sid, user_id, verified_hash, refresh_jti, expires_at).await)
    }

    /// Makes `new_jti` the session's refresh token if `old.key` still is, and records `old` as
    /// revoked, in one transaction. `Ok(false)` means `old` was not current: it was reused.
    pub(crate) async fn rotate_refresh(
        &self,
        sid: &str,
        old: &Revocation,
        new_jti: &str,
        new_expires_at: u64,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.rotate_refresh(sid, old, new_jti, new_expires_at).await)
    }

    /// Durably revokes a session until the later of `at_least` and the session's own expiry, and
    /// returns the revocation as stored.
    pub(crate) async fn revoke_session(
        &self,
        sid: &str,
        at_least: u64,
    ) -> Result<Revocation, StoreError> {
        on_backend!(self, s => s.revoke_session(sid, at_least).await)
    }

    /// Hands `sink` every revocation still in force at `now` (unix seconds) and written at or after
    /// `since_ms` on the store's clock (`0`: all of them), streamed rather than collected; returns
    /// the store's clock when the read began, where the next catch-up starts.
    pub(crate) async fn revocations_since(
        &self,
        since_ms: i64,
        now: u64,
        sink: &mut (dyn FnMut(Revocation) + Send),
    ) -> Result<i64, StoreError> {
        on_backend!(self, s => s.revocations_since(since_ms, now, sink).await)
    }

    /// Forgets revocations and sessions that can no longer matter.
    pub(crate) async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        on_backend!(self, s => s.purge_expired(now).await)
    }

    /// A live feed of other replicas' revocations, where the backend has one (PostgreSQL).
    pub(crate) fn listener(&self) -> Option<RevocationListener> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.listener()),
        }
    }

    pub(crate) async fn close(&self) {
        on_backend!(self, s => s.close().await)
    }
}
