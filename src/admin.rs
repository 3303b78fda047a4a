//! `authgate users …`: what an administrator does to the store that a configuration names, with
//! the same rules the endpoints apply. Revocations are written as the gate writes them, so every
//! running replica refuses the tokens within `store.catch_up_interval` (on PostgreSQL at once).

use std::sync::Arc;

use crate::config::Config;
use crate::core::revocation::RevocationCache;
use crate::core::roles::canonical_roles;
use crate::core::token::{TokenService, unix_now};
use crate::services::sessions::{AuthError, SessionCounters, Sessions};
pub use crate::store::{SessionSummary, UserSummary};
use crate::store::{Store, UserChange};

/// Why an administrator's command failed, in words for the command line.
#[derive(Debug)]
pub enum AdminError {
    UnknownUser(String),
    /// The name or password breaks the rules, or the name is taken.
    Refused(String),
    /// The store could not be reached or failed.
    Store(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::UnknownUser(name) => write!(f, "no user is called {name:?}"),
            AdminError::Refused(reason) => f.write_str(reason),
            AdminError::Store(e) => write!(f, "the store failed: {e}"),
        }
    }
}

impl std::error::Error for AdminError {}

/// The store and the sessions service over it, as the gate has them.
struct Admin {
    store: Store,
    sessions: Sessions,
}

impl Admin {
    async fn open(config: &Config) -> Result<Admin, AdminError> {
        let store = Store::connect(&config.store).map_err(|e| AdminError::Store(e.to_string()))?;
        store
            .migrate()
            .await
            .map_err(|e| AdminError::Store(e.to_string()))?;
        let tokens = Arc::new(TokenService::new(&config.tokens));
        let sessions = Sessions::new(
            config,
            store.clone(),
            tokens,
            RevocationCache::default(),
            SessionCounters::default(),
        );
        Ok(Admin { store, sessions })
    }

    async fn close<T>(self, result: Result<T, AdminError>) -> Result<T, AdminError> {
        self.store.close().await;
        result
    }

    async fn user(&self, username: &str) -> Result<crate::store::User, AdminError> {
        self.sessions
            .named(username)
            .await
            .map_err(|e| refused(username, e))
    }

    async fn change(
        &self,
        username: &str,
        user_id: &str,
        change: UserChange,
    ) -> Result<(), AdminError> {
        match self.store.change_user(user_id, change).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdminError::UnknownUser(username.to_string())),
            Err(e) => Err(AdminError::Store(e.to_string())),
        }
    }
}

fn refused(username: &str, e: AuthError) -> AdminError {
    match e {
        AuthError::Invalid(rule) => AdminError::Refused(rule.to_string()),
        AuthError::UsernameTaken => AdminError::Refused(format!("{username:?} is taken")),
        AuthError::BadCredentials => AdminError::UnknownUser(username.to_string()),
        AuthError::Store(e) => AdminError::Store(e.to_string()),
        other => AdminError::Refused(format!("{other:?}")),
    }
}

/// Creates a user with `roles`, under the rules `/register` applies. Returns the new user's id.
pub async fn add_user(
    config: &Config,
    username: &str,
    password: String,
    roles: &[String],
) -> Result<String, AdminError> {
    let roles = canonical_roles(roles).map_err(AdminError::Refused)?;
    let admin = Admin::open(config).await?;
    let result = admin
        .sessions
        .register(username.to_string(), password, roles)
        .await
        .map(|user| user.id)
        .map_err(|e| refused(username, e));
    admin.close(result).await
}

/// Replaces a user's roles (none: `--clear`). Each session gets them at its next refresh.
/// Returns the roles as stored: sorted, each once.
pub async fn set_roles(
    config: &Config,
    username: &str,
    roles: &[String],
) -> Result<Vec<String>, AdminError> {
    let roles = canonical_roles(roles).map_err(AdminError::Refused)?;
    let admin = Admin::open(config).await?;
    let result = async {
        let user = admin.user(username).await?;
        admin
            .change(username, &user.id, UserChange::Roles(roles.clone()))
            .await?;
        Ok(roles)
    }
    .await;
    admin.close(result).await
}

/// Disables a user, who can then neither log in nor refresh, and revokes all their sessions.
/// Returns how many were revoked.
pub async fn disable_user(config: &Config, username: &str) -> Result<usize, AdminError> {
    let admin = Admin::open(config).await?;
    let result = admin
        .sessions
        .disable(username)
        .await
        .map_err(|e| refused(username, e));
    admin.close(result).await
}

/// Lets a disabled user log in again; the sessions the disabling revoked stay revoked.
pub async fn enable_user(config: &Config, username: &str) -> Result<(), AdminError> {
    let admin = Admin::open(config).await?;
    let result = async {
        let user = admin.user(username).await?;
        admin.change(username, &user.id, UserChange::Enable).await
    }
    .await;
    admin.close(result).await
}

/// A user's live sessions, the latest first.
pub async fn user_sessions(
    config: &Config,
    username: &str,
) -> Result<Vec<SessionSummary>, AdminError> {
    let admin = Admin::open(config).await?;
    let result = async {
        let user = admin.user(username).await?;
        admin
            .store
            .user_sessions(&user.id, unix_now())
            .await
            .map_err(|e| AdminError::Store(e.to_string()))
    }
    .await;
    admin.close(result).await
}

/// Every user, by name.
pub async fn list_users(config: &Config) -> Result<Vec<UserSummary>, AdminError> {
    let admin = Admin::open(config).await?;
    let result = admin
        .store
        .list_users(unix_now())
        .await
        .map_err(|e| AdminError::Store(e.to_string()));
    admin.close(result).await
}

/// Sets a user's password and revokes all their sessions. Returns how many were revoked.
pub async fn reset_password(
    config: &Config,
    username: &str,
    password: String,
) -> Result<usize, AdminError> {
    let admin = Admin::open(config).await?;
    let result = admin
        .sessions
        .reset_password(username, password)
        .await
        .map_err(|e| refused(username, e));
    admin.close(result).await
}

/// Revokes all of a user's sessions. Returns how many.
pub async fn end_sessions(config: &Config, username: &str) -> Result<usize, AdminError> {
    let admin = Admin::open(config).await?;
    let result = admin
        .sessions
        .end_sessions_of(username)
        .await
        .map_err(|e| refused(username, e));
    admin.close(result).await
}
