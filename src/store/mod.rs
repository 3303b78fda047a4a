//! The store: users, login sessions and revocations, behind one interface so handlers never see
//! SQL. Embedded SQLite is the zero-setup default; PostgreSQL serves several replicas, which learn
//! of each other's revocations through LISTEN/NOTIFY and a periodic catch-up.

mod postgres;
mod sqlite;
pub(crate) mod sync;

use std::time::Duration;

use crate::config::StoreConfig;
use crate::core::revocation::Revocation;
use crate::core::roles::split_roles;

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
    /// Sorted, each name once (`roles::canonical_roles`).
    pub(crate) roles: Vec<String>,
}

/// A change an administrator makes to a user, besides ending sessions.
pub(crate) enum UserChange {
    /// Replaces the user's roles (canonical already); sessions keep theirs until they refresh.
    Roles(Vec<String>),
    /// Lets a disabled user log in again. Sessions revoked by the disabling stay revoked.
    Enable,
}

/// How a refresh fared in the store. A refresh that may go on carries the user's roles as the
/// store has them now: a role change takes effect at the next refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// The token presented was the session's current one; the new one has replaced it.
    Rotated { roles: Vec<String> },
    /// The session is revoked, or gone (expired and purged), or its user is disabled.
    Revoked,
    /// The session is live, and the token presented is the one it had until a rotation within
    /// the grace: a browser's tabs refreshing at once. An access token may be issued; the chain
    /// of refresh tokens stays as it is.
    JustRotated { roles: Vec<String> },
    /// The session is live, but the token presented is not its current one, nor one rotated
    /// within the grace: a rotated refresh token presented again.
    Reused,
}

impl Rotation {
    /// Why a rotation changed nothing, from the session's row: whether it is live (and its user
    /// enabled), whether the token presented is the one it rotated within the grace, and the
    /// user's roles; `None`: no row (purged).
    fn missed(row: Option<(bool, bool, String)>, grace: Duration) -> Rotation {
        match row {
            Some((true, true, roles)) if !grace.is_zero() => Rotation::JustRotated {
                roles: split_roles(&roles),
            },
            Some((true, _, _)) => Rotation::Reused,
            Some((false, _, _)) | None => Rotation::Revoked,
        }
    }
}

impl Ending {
    /// A live session ended now: a reuse when the logout came with a refresh token other than
    /// the session's `current` one.
    fn now(revocation: Revocation, presented_refresh: Option<&str>, current: &str) -> Ending {
        match presented_refresh {
            Some(jti) if jti != current => Ending::Reused(revocation),
            _ => Ending::Ended(revocation),
        }
    }
}

/// What `create_session` is asked to do.
pub(crate) struct NewSession<'a> {
    pub(crate) sid: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) verified_hash: &'a str,
    pub(crate) refresh_jti: &'a str,
    pub(crate) expires_at: u64,
    pub(crate) now: u64,
}

/// What `rotate_refresh` is asked to do.
pub(crate) struct RefreshRotation<'a> {
    pub(crate) sid: &'a str,
    pub(crate) old_jti: &'a str,
    pub(crate) new_jti: &'a str,
    pub(crate) new_expires_at: u64,
    pub(crate) now: u64,
    /// `tokens.refresh_reuse_interval`; zero: no grace.
    pub(crate) grace: Duration,
}

/// How a request to end one session fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Revoked now.
    Ended(Revocation),
    /// Revoked now, on a refresh token that was not the session's current one.
    Reused(Revocation),
    /// Revoked already, or gone: nothing was written.
    AlreadyEnded,
}

/// What `end_user_sessions` is asked to do.
pub(crate) struct UserSessionsEnd<'a> {
    pub(crate) user_id: &'a str,
    /// The session that asked, which must be live; `None`: an administrator asked.
    pub(crate) asking_sid: Option<&'a str>,
    /// A password change keeps the session that asked for it; logout-all does not.
    pub(crate) keep_asking: bool,
    pub(crate) new_password_hash: Option<&'a str>,
    /// Disables the user in the same transaction: no login or refresh until enabled again.
    pub(crate) disable: bool,
    pub(crate) now: u64,
    pub(crate) hold_until: u64,
}

/// A user as `authgate users list` shows them. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub roles: Vec<String>,
    /// When the user was disabled; `None`: enabled.
    pub disabled_at: Option<u64>,
    pub created_at: u64,
    /// `None`: never logged in (or not since the upgrade that began recording it).
    pub last_login_at: Option<u64>,
    /// Sessions not revoked and not expired.
    pub live_sessions: u64,
}

/// A `list_users` row, in its columns' order.
type SummaryRow = (String, String, String, Option<i64>, i64, Option<i64>, i64);

fn summary(row: SummaryRow) -> UserSummary {
    let (id, username, roles, disabled_at, created_at, last_login_at, live) = row;
    UserSummary {
        id,
        username,
        roles: split_roles(&roles),
        disabled_at: disabled_at.map(unix),
        created_at: unix(created_at),
        last_login_at: last_login_at.map(unix),
        live_sessions: unix(live),
    }
}

/// A live session as `authgate users sessions` shows it. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub sid: String,
    /// `None` for sessions begun before the upgrade that began recording it.
    pub created_at: Option<u64>,
    /// The last refresh; `None`: never refreshed.
    pub refreshed_at: Option<u64>,
    /// When the refresh token runs out, unless refreshed.
    pub expires_at: u64,
}

/// A `user_sessions` row, in its columns' order.
fn session_summary(
    (sid, created_at, refreshed_at, expires_at): (String, Option<i64>, Option<i64>, i64),
) -> SessionSummary {
    SessionSummary {
        sid,
        created_at: created_at.map(unix),
        refreshed_at: refreshed_at.map(unix),
        expires_at: unix(expires_at),
    }
}

/// A stored time or count, never negative.
fn unix(stored: i64) -> u64 {
    stored.max(0) as u64
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

    /// Every user, by name, with their live sessions at `now`.
    pub(crate) async fn list_users(&self, now: u64) -> Result<Vec<UserSummary>, StoreError> {
        on_backend!(self, s => s.list_users(now).await)
    }

    /// A user's live sessions at `now`, the latest first.
    pub(crate) async fn user_sessions(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        on_backend!(self, s => s.user_sessions(user_id, now).await)
    }

    /// Changes a user's roles, or enables them. `Ok(false)`: no such user.
    pub(crate) async fn change_user(
        &self,
        user_id: &str,
        change: UserChange,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.change_user(user_id, change).await)
    }

    /// For logout-all and a password change asked by session `asking_sid`: in one transaction,
    /// checks that session is live, sets `new_password_hash` if one is given, disables the user
    /// if asked, and revokes every
    /// live session of the user (the asking one too unless `keep_asking`), each held in memory
    /// until `hold_until`. `Ok(None)`: the asking session is revoked, and nothing was written.
    pub(crate) async fn end_user_sessions(
        &self,
        end: UserSessionsEnd<'_>,
    ) -> Result<Option<Vec<Revocation>>, StoreError> {
        on_backend!(self, s => s.end_user_sessions(end).await)
    }
    /// Creates a login session, if the user's password hash is still `verified_hash`, the one
    /// the login was checked against, and the user is not disabled: checked and created in one
    /// step, so that no login that verified a password outlives a change of it (a change revokes
    /// the sessions that exist when it commits). Records the login as the user's last, and
    /// returns the user's roles as they are now, for the access token: a role taken away while
    /// the password was being checked is not signed into it. `Ok(None)` when the password has
    /// changed since, or the user is disabled.
    pub(crate) async fn create_session(
        &self,
        login: NewSession<'_>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        on_backend!(self, s => s.create_session(login).await)
    }

    /// Makes the new refresh token the session's, if the session is live and the old one is its
    /// refresh token now: one statement, so a refresh costs the store one round trip. The old
    /// one is kept as the previous token, for the grace of `rotation.grace`.
    pub(crate) async fn rotate_refresh(
        &self,
        rotation: RefreshRotation<'_>,
    ) -> Result<Rotation, StoreError> {
        on_backend!(self, s => s.rotate_refresh(rotation).await)
    }

    /// Revokes a session at `now`, in its row and as a revocation held in memory until
    /// `hold_until`, in one transaction. With `presented_refresh`, the refresh token the logout
    /// came with: one that is not the session's current one was reused, and the session is
    /// revoked all the same.
    pub(crate) async fn end_session(
        &self,
        sid: &str,
        presented_refresh: Option<&str>,
        now: u64,
        hold_until: u64,
    ) -> Result<Ending, StoreError> {
        on_backend!(self, s => s.end_session(sid, presented_refresh, now, hold_until).await)
    }

    /// Hands `sink` every revocation still in force at `now` (unix seconds) and written at or after
    /// `since_ms` on the store's clock (`0`: all of them) and within the last `window` (older ones
    /// cover no access token still valid, whatever their expiry says: rows written before the
    /// store decided refreshes were held as long as the session), streamed rather than collected.
    /// Returns the store's clock when the read began, where the next catch-up starts.
    pub(crate) async fn revocations_since(
        &self,
        since_ms: i64,
        window: Duration,
        now: u64,
        sink: &mut (dyn FnMut(Revocation) + Send),
    ) -> Result<i64, StoreError> {
        on_backend!(self, s => s.revocations_since(since_ms, window, now, sink).await)
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
