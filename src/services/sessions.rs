//! Users and their sessions: register, log in, refresh, log out, log out everywhere, change the
//! password. The rules of the flow, with no HTTP in sight: the edge reads the request, hands over
//! what it said (credentials, a token, verified claims, the client's address), and turns the
//! result or the `AuthError` into an answer.
//!
//! Every revocation is written to the store before it is put in memory, and before the caller
//! can answer: a logout that was acknowledged is durable.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::config::{Config, LoginLimits};
use crate::core::accounts;
use crate::core::revocation::{Revocation, RevocationCache};
use crate::core::throttle::Throttle;
use crate::core::token::{Claims, Subject, TokenError, TokenKind, TokenService, unix_now};
use crate::services::password::Passwords;
use crate::store::{
    Ending, NewSession, RefreshRotation, Rotation, Store, StoreError, User, UserSessionsEnd,
};

/// Why a session operation was refused.
#[derive(Debug)]
pub(crate) enum AuthError {
    /// The registration's username or password breaks the rules: the rule's message.
    Invalid(&'static str),
    UsernameTaken,
    /// Unknown user, wrong password, or a password changed while this one was being checked.
    BadCredentials,
    /// The old password given for a change is wrong.
    WrongPassword,
    /// Throttled; try again after this long.
    Throttled(Duration),
    /// Too many password hashes waiting already.
    Busy,
    /// The token is not one this operation takes.
    Token(TokenError),
    /// Revocations are not loaded yet, so no token can be trusted.
    NotReady,
    Store(StoreError),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Store(e)
    }
}

/// A new session's tokens, or a refreshed pair.
pub(crate) struct TokenPair {
    pub(crate) access: String,
    /// `None` when a refresh within the grace gave an access token only.
    pub(crate) refresh: Option<String>,
    /// The access token's lifetime, in seconds.
    pub(crate) expires_in: u64,
    /// The refresh token's lifetime, in seconds.
    pub(crate) refresh_expires_in: u64,
    /// Both tokens' `csrf` claim, when they carry one.
    pub(crate) csrf: Option<String>,
}

/// What the sessions count, for the edge's metrics: handles onto the metrics' own counters.
#[derive(Clone, Default)]
pub(crate) struct SessionCounters {
    pub(crate) logins_succeeded: Counter,
    pub(crate) logins_failed: Counter,
    pub(crate) registrations: Counter,
    pub(crate) refreshes: Counter,
    pub(crate) revocations: Counter,
}

/// Login throttles; `None` where configured off.
struct LoginThrottle {
    per_user: Option<Throttle>,
    per_address: Option<Throttle>,
}

pub(crate) struct Sessions {
    store: Store,
    tokens: Arc<TokenService>,
    revocations: RevocationCache,
    passwords: Passwords,
    throttle: LoginThrottle,
    counters: SessionCounters,
    /// How long a revocation is held in memory (`TokenConfig::revocation_window`).
    window: Duration,
    /// `tokens.refresh_reuse_interval`.
    refresh_grace: Duration,
}

impl Sessions {
    pub(crate) fn new(
        config: &Config,
        store: Store,
        tokens: Arc<TokenService>,
        revocations: RevocationCache,
        counters: SessionCounters,
    ) -> Sessions {
        let LoginLimits {
            per_user,
            per_address,
            window,
        } = config.login_limits;
        Sessions {
            store,
            tokens,
            revocations,
            passwords: Passwords::new(&config.passwords),
            throttle: LoginThrottle {
                per_user: Throttle::new(per_user, window),
                per_address: Throttle::new(per_address, window),
            },
            counters,
            window: config.tokens.revocation_window(),
            refresh_grace: config.refresh_reuse_interval,
        }
    }

    /// Creates a user, with `roles` (canonical already: `/register` gives none, an administrator
    /// may). The name is checked against the rules of `accounts`, and compared in its
    /// normalised form: `Alice` and `ALICE` are one user.
    pub(crate) async fn register(
        &self,
        username: String,
        password: String,
        roles: Vec<String>,
    ) -> Result<User, AuthError> {
        accounts::validate_username(&username).map_err(AuthError::Invalid)?;
        accounts::validate_password(&password).map_err(AuthError::Invalid)?;
        let key = accounts::username_key(&username);
        // A cheap early answer for a taken name; the unique index still decides under races.
        if self.store.find_user(&key).await?.is_some() {
            return Err(AuthError::UsernameTaken);
        }
        let password_hash = self
            .passwords
            .hash(password)
            .await
            .map_err(|_| AuthError::Busy)?;
        let user = User {
            id: uuid::Uuid::new_v4().to_string(),
            username,
            password_hash,
            roles,
        };
        match self.store.create_user(&user, &key, unix_now()).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(AuthError::UsernameTaken),
            Err(e) => return Err(e.into()),
        }
        self.counters.registrations.inc();
        tracing::info!(user_id = %user.id, "user registered");
        Ok(user)
    }

    /// Counts a login attempt against the client's address, before anything of it is read: every
    /// attempt counts there, whatever comes of it.
    pub(crate) fn admit_login(&self, client: IpAddr) -> Result<(), AuthError> {
        if let Some(throttle) = &self.throttle.per_address {
            let address = client.to_string();
            throttle.check(&address).map_err(AuthError::Throttled)?;
            throttle.charge(&address);
        }
        Ok(())
    }

    /// Logs a user in: a new session and its tokens. Only failures count against the username,
    /// so a user who knows their password is not locked out for long by someone else's guesses;
    /// the attempt is taken from the bucket before the password is checked and given back if it
    /// succeeds, so that logins sent all at once cannot each find the bucket full. An unknown
    /// user costs the same hashing as a wrong password, and gets the same answer.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: String,
    ) -> Result<TokenPair, AuthError> {
        let username_key = accounts::username_key(username);
        // Keyed by name here and by id for a password change: prefixed, so one can never spend
        // the other's.
        let throttle_key = format!("name:{username_key}");
        if let Some(throttle) = &self.throttle.per_user {
            throttle.take(&throttle_key).map_err(AuthError::Throttled)?;
        }
        let result = self.check_and_open(username, &username_key, password).await;
        match &result {
            Ok(_) => {
                self.counters.logins_succeeded.inc();
            }
            Err(AuthError::BadCredentials) => {
                self.counters.logins_failed.inc();
            }
            Err(_) => {}
        }
        self.settle_attempt(
            &throttle_key,
            matches!(result, Err(AuthError::BadCredentials)),
        );
        result
    }

    /// Gives back the attempt taken from `key`'s bucket, unless it failed on the password: only
    /// wrong passwords count against a user.
    fn settle_attempt(&self, key: &str, wrong_password: bool) {
        if let (Some(throttle), false) = (&self.throttle.per_user, wrong_password) {
            throttle.refund(key);
        }
    }

    /// The password check of a login, and its session when it passes.
    async fn check_and_open(
        &self,
        username: &str,
        username_key: &str,
        password: String,
    ) -> Result<TokenPair, AuthError> {
        // Over-long input is simply a failed login: the same answer as any other.
        let plausible = password.len() <= accounts::MAX_PASSWORD_BYTES;
        let user = if plausible && accounts::validate_username(username).is_ok() {
            self.store.find_user(username_key).await?
        } else {
            None
        };
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = if plausible { password } else { String::new() };
        let verified = self
            .passwords
            .verify(password, stored_hash)
            .await
            .map_err(|_| AuthError::Busy)?;
        let session = match (verified, user) {
            (true, Some(user)) => self.create_session(&user).await?,
            _ => None,
        };
        session.ok_or(AuthError::BadCredentials)
    }

    /// A new session for `user`, if their password is still the one the login verified (see
    /// `Store::create_session`); `None` when it changed meanwhile.
    async fn create_session(&self, user: &User) -> Result<Option<TokenPair>, AuthError> {
        let sid = uuid::Uuid::new_v4().to_string();
        let now = unix_now();
        let subject = Subject {
            user_id: &user.id,
            username: &user.username,
            sid: &sid,
            // The refresh token carries none, and the access token the store's, read below.
            roles: &[],
        };
        let (refresh, refresh_claims) = self.issue_refresh(&subject, self.tokens.new_csrf(), now);
        let roles = self
            .store
            .create_session(NewSession {
                sid: &sid,
                user_id: &user.id,
                verified_hash: &user.password_hash,
                refresh_jti: &refresh_claims.jti,
                expires_at: refresh_claims.exp,
                now,
            })
            .await?;
        Ok(roles.map(|roles| {
            let subject = Subject {
                roles: &roles,
                ..subject
            };
            self.pair(&subject, true, refresh, refresh_claims.csrf, now)
        }))
    }

    /// A new refresh token; the access token that goes with it waits for the store's answer,
    /// which has the roles it carries.
    fn issue_refresh(
        &self,
        subject: &Subject<'_>,
        csrf: Option<String>,
        now: u64,
    ) -> (String, Claims) {
        self.tokens
            .issue_with_csrf(subject, TokenKind::Refresh, false, now, csrf)
    }

    /// The pair: an access token for `subject` with the refresh token's CSRF value `csrf` (one
    /// value for the pair, so a form may name either cookie's).
    fn pair(
        &self,
        subject: &Subject<'_>,
        fresh: bool,
        refresh: String,
        csrf: Option<String>,
        now: u64,
    ) -> TokenPair {
        let (access, _) =
            self.tokens
                .issue_with_csrf(subject, TokenKind::Access, fresh, now, csrf.clone());
        TokenPair {
            access,
            refresh: Some(refresh),
            expires_in: self.tokens.access_ttl(),
            refresh_expires_in: self.tokens.refresh_ttl(),
            csrf,
        }
    }

    /// Rotates a refresh token: a new pair, and the old refresh token no longer the session's.
    /// The store decides, whatever this replica's memory says: a session it knows is revoked is
    /// refused on every replica at once. The token rotated last is still good for an access
    /// token within `tokens.refresh_reuse_interval` (a browser's tabs refresh at once); any
    /// other rotated token can only be a stolen copy presented again: the whole session is
    /// revoked.
    pub(crate) async fn refresh(&self, token: &str) -> Result<TokenPair, AuthError> {
        if !self.revocations.is_loaded() {
            return Err(AuthError::NotReady);
        }
        let now = unix_now();
        let claims = self
            .tokens
            .verify_kind(token, TokenKind::Refresh, now)
            .map_err(AuthError::Token)?;
        // Memory can say revoked, saving the store a trip; only the store can say it is not.
        if self.revocations.is_revoked(&claims, now) {
            return Err(AuthError::Token(TokenError::Revoked));
        }
        // The session keeps its CSRF value, so pages and tabs that hold it keep working.
        let csrf = claims.csrf.clone().or_else(|| self.tokens.new_csrf());
        let subject = |roles| Subject {
            user_id: &claims.sub,
            username: &claims.username,
            sid: &claims.sid,
            roles,
        };
        let (refresh, refresh_claims) = self.issue_refresh(&subject(&[]), csrf, now);
        let rotation = self
            .store
            .rotate_refresh(RefreshRotation {
                sid: &claims.sid,
                old_jti: &claims.jti,
                new_jti: &refresh_claims.jti,
                new_expires_at: refresh_claims.exp,
                now,
                grace: self.refresh_grace,
            })
            .await?;
        match rotation {
            Rotation::Rotated { roles } => {
                self.counters.refreshes.inc();
                Ok(self.pair(&subject(&roles), false, refresh, refresh_claims.csrf, now))
            }
            // Another tab won the race a moment ago: an access token, and the refresh token
            // stays the one the winner got.
            Rotation::JustRotated { roles } => {
                self.counters.refreshes.inc();
                let csrf = refresh_claims.csrf;
                let mut pair = self.pair(&subject(&roles), false, refresh, csrf, now);
                pair.refresh = None;
                Ok(pair)
            }
            Rotation::Revoked => Err(AuthError::Token(TokenError::Revoked)),
            Rotation::Reused => {
                self.end_session(&claims, None).await?;
                tracing::warn!(user_id = %claims.sub, "refresh token reused: session revoked");
                Err(AuthError::Token(TokenError::Revoked))
            }
        }
    }

    /// Ends the session of `claims` (an access or a refresh token of it). A session the store
    /// already knows is revoked is `Token has been revoked`, as is a refresh token that is not
    /// the session's current one (it was rotated, so this is a copy: the session ends all the
    /// same).
    pub(crate) async fn logout(&self, claims: &Claims) -> Result<(), AuthError> {
        let presented = (claims.kind == TokenKind::Refresh).then_some(claims.jti.as_str());
        if self.end_session(claims, presented).await? {
            tracing::info!(user_id = %claims.sub, "logged out");
            return Ok(());
        }
        Err(AuthError::Token(TokenError::Revoked))
    }

    /// Ends every session of the user, this one included: "log out everywhere". Returns how many.
    pub(crate) async fn logout_all(&self, claims: &Claims) -> Result<usize, AuthError> {
        let revoked = self.end_user_sessions(claims, false, None).await?;
        tracing::info!(user_id = %claims.sub, sessions = revoked, "logged out everywhere");
        Ok(revoked)
    }

    /// Counts a password change against the user before its body is read: wrong old passwords
    /// are throttled like failed logins.
    pub(crate) fn admit_password_change(&self, claims: &Claims) -> Result<(), AuthError> {
        if let Some(throttle) = &self.throttle.per_user {
            throttle
                .check(&password_throttle_key(claims))
                .map_err(AuthError::Throttled)?;
        }
        Ok(())
    }

    /// Sets a new password, given the old one, and ends every other session of the user; the
    /// session asking keeps working. Returns how many sessions were ended. As for logins, the
    /// attempt is taken from the user's bucket before the old password is checked, and given
    /// back unless it was wrong.
    pub(crate) async fn change_password(
        &self,
        claims: &Claims,
        old_password: String,
        new_password: String,
    ) -> Result<usize, AuthError> {
        accounts::validate_password(&new_password).map_err(AuthError::Invalid)?;
        let throttle_key = password_throttle_key(claims);
        if let Some(throttle) = &self.throttle.per_user {
            throttle.take(&throttle_key).map_err(AuthError::Throttled)?;
        }
        let result = self
            .replace_password(claims, old_password, new_password)
            .await;
        self.settle_attempt(
            &throttle_key,
            matches!(result, Err(AuthError::WrongPassword)),
        );
        result
    }

    async fn replace_password(
        &self,
        claims: &Claims,
        old_password: String,
        new_password: String,
    ) -> Result<usize, AuthError> {
        let user = self.store.find_user_by_id(&claims.sub).await?;
        let stored_hash = user.map(|u| u.password_hash);
        let old_ok = old_password.len() <= accounts::MAX_PASSWORD_BYTES
            && self
                .passwords
                .verify(old_password, stored_hash)
                .await
                .map_err(|_| AuthError::Busy)?;
        if !old_ok {
            return Err(AuthError::WrongPassword);
        }
        let new_hash = self
            .passwords
            .hash(new_password)
            .await
            .map_err(|_| AuthError::Busy)?;
        let revoked = self
            .end_user_sessions(claims, true, Some(&new_hash))
            .await?;
        tracing::info!(user_id = %claims.sub, sessions = revoked, "password changed");
        Ok(revoked)
    }

    /// Revokes the session of `claims`, in the store, then in memory. True when this ended it
    /// for the token presented; false when it was revoked already, or when `presented_refresh`
    /// was not its current refresh token (a reuse, which ends it all the same).
    async fn end_session(
        &self,
        claims: &Claims,
        presented_refresh: Option<&str>,
    ) -> Result<bool, AuthError> {
        let now = unix_now();
        let ending = self
            .store
            .end_session(&claims.sid, presented_refresh, now, self.hold_until(now))
            .await?;
        Ok(match ending {
            Ending::Ended(revocation) => {
                self.remember(revocation);
                true
            }
            Ending::Reused(revocation) => {
                self.remember(revocation);
                tracing::warn!(user_id = %claims.sub, "rotated refresh token reused: session revoked");
                false
            }
            Ending::AlreadyEnded => false,
        })
    }

    /// Sets a user's password without the old one (an administrator's reset) and revokes every
    /// session of theirs. Returns how many.
    pub(crate) async fn reset_password(
        &self,
        username: &str,
        new_password: String,
    ) -> Result<usize, AuthError> {
        accounts::validate_password(&new_password).map_err(AuthError::Invalid)?;
        let user = self.named(username).await?;
        let new_hash = self
            .passwords
            .hash(new_password)
            .await
            .map_err(|_| AuthError::Busy)?;
        let revoked = self
            .end_sessions(&user.id, None, AlongWith::Password(&new_hash))
            .await?;
        Ok(revoked.unwrap_or_default())
    }

    /// Revokes every session of a user (an administrator's logout). Returns how many.
    pub(crate) async fn end_sessions_of(&self, username: &str) -> Result<usize, AuthError> {
        let user = self.named(username).await?;
        Ok(self
            .end_sessions(&user.id, None, AlongWith::Nothing)
            .await?
            .unwrap_or_default())
    }

    /// Disables a user (no login or refresh until enabled again) and revokes every session of
    /// theirs, in one transaction. Returns how many.
    pub(crate) async fn disable(&self, username: &str) -> Result<usize, AuthError> {
        let user = self.named(username).await?;
        Ok(self
            .end_sessions(&user.id, None, AlongWith::Disabling)
            .await?
            .unwrap_or_default())
    }

    /// The user called `username`; `BadCredentials` when there is none.
    pub(crate) async fn named(&self, username: &str) -> Result<User, AuthError> {
        self.store
            .find_user(&accounts::username_key(username))
            .await?
            .ok_or(AuthError::BadCredentials)
    }

    /// Revokes every live session of the user of `claims` (but theirs, with `keep_asking`), in
    /// the store, then in memory; with a new password hash, set in the same transaction. A
    /// session the store knows is revoked cannot ask: `Token has been revoked`.
    async fn end_user_sessions(
        &self,
        claims: &Claims,
        keep_asking: bool,
        new_password_hash: Option<&str>,
    ) -> Result<usize, AuthError> {
        let asking = Some((claims.sid.as_str(), keep_asking));
        let along = new_password_hash.map_or(AlongWith::Nothing, AlongWith::Password);
        self.end_sessions(&claims.sub, asking, along)
            .await?
            .ok_or(AuthError::Token(TokenError::Revoked))
    }

    /// Revokes every live session of `user_id`, in the store, then in memory, and makes the
    /// change `along` names in the same transaction. `asking`: the session that asked and whether
    /// it stays (`None`: an administrator asked). `None` back: the asking session is revoked.
    async fn end_sessions(
        &self,
        user_id: &str,
        asking: Option<(&str, bool)>,
        along: AlongWith<'_>,
    ) -> Result<Option<usize>, AuthError> {
        let now = unix_now();
        let revocations = self
            .store
            .end_user_sessions(UserSessionsEnd {
                user_id,
                asking_sid: asking.map(|(sid, _)| sid),
                keep_asking: asking.is_some_and(|(_, keep)| keep),
                new_password_hash: match along {
                    AlongWith::Password(hash) => Some(hash),
                    _ => None,
                },
                disable: matches!(along, AlongWith::Disabling),
                now,
                hold_until: self.hold_until(now),
            })
            .await?;
        Ok(revocations.map(|revocations| {
            let count = revocations.len();
            for revocation in revocations {
                self.remember(revocation);
            }
            count
        }))
    }

    /// Until when a revocation made at `now` must be held: past the last access token of the
    /// session. Refresh tokens need no entry, since the store checks each one.
    fn hold_until(&self, now: u64) -> u64 {
        now + self.window.as_secs()
    }

    fn remember(&self, revocation: Revocation) {
        self.revocations.insert(revocation);
        self.counters.revocations.inc();
    }
}

/// What changes for a user in the transaction that ends their sessions.
enum AlongWith<'a> {
    Nothing,
    /// The new password's hash.
    Password(&'a str),
    /// The user is disabled.
    Disabling,
}

/// The per-user throttle's key for password changes: by id, where logins count by name.
fn password_throttle_key(claims: &Claims) -> String {
    format!("id:{}", claims.sub)
}

/// The session rules, called directly: a real SQLite store in a temporary directory, no server.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserChange;

    const PASSWORD: &str = "the first password";

    struct Fixture {
        sessions: Sessions,
        tokens: Arc<TokenService>,
        revocations: RevocationCache,
        counters: SessionCounters,
        config: Config,
        store: Store,
        _dir: tempfile::TempDir,
    }

    /// Sessions on a fresh store, with `limits` as the `[login_limits]` section and no grace for
    /// a rotated refresh token.
    async fn fixture(limits: &str) -> Fixture {
        fixture_with(limits, "0s").await
    }

    /// `fixture`, with `grace` as `tokens.refresh_reuse_interval`.
    async fn fixture_with(limits: &str, grace: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&format!(
            r#"
[upstream]
url = "http://127.0.0.1:9"
[tokens]
secret = "sessions-unit-test-secret-0123456789-abcdefghij"
refresh_reuse_interval = "{grace}"
[store]
path = "{}"
[passwords]
memory_kib = 1024
iterations = 1
parallelism = 1
[login_limits]
{limits}
"#,
            dir.path().join("sessions.db").display()
        ))
        .expect("test config is valid");
        let store = Store::connect(&config.store).unwrap();
        store.migrate().await.unwrap();
        let tokens = Arc::new(TokenService::new(&config.tokens));
        let revocations = RevocationCache::default();
        revocations.mark_loaded();
        let counters = SessionCounters::default();
        let sessions = Sessions::new(
            &config,
            store.clone(),
            tokens.clone(),
            revocations.clone(),
            counters.clone(),
        );
        Fixture {
            sessions,
            tokens,
            revocations,
            counters,
            config,
            store,
            _dir: dir,
        }
    }

    impl Fixture {
        /// Another replica on the same store, whose memory has heard of nothing yet.
        fn replica(&self) -> (Sessions, RevocationCache) {
            let revocations = RevocationCache::default();
            revocations.mark_loaded();
            let sessions = Sessions::new(
                &self.config,
                self.store.clone(),
                self.tokens.clone(),
                revocations.clone(),
                SessionCounters::default(),
            );
            (sessions, revocations)
        }

        async fn register(&self, name: &str) -> User {
            self.sessions
                .register(name.into(), PASSWORD.into(), Vec::new())
                .await
                .unwrap()
        }

        async fn login(&self, name: &str) -> TokenPair {
            self.sessions.login(name, PASSWORD.into()).await.unwrap()
        }

        fn refresh<'a>(&self, pair: &'a TokenPair) -> &'a str {
            pair.refresh
                .as_deref()
                .expect("a pair with a refresh token")
        }

        fn claims(&self, token: &str) -> Arc<Claims> {
            self.tokens.verify(token, unix_now()).unwrap()
        }

        /// Whether a request with this token would be let through now.
        fn live(&self, token: &str) -> bool {
            !self.revocations.is_revoked(&self.claims(token), unix_now())
        }
    }

    fn revoked<T>(result: Result<T, AuthError>) -> bool {
        matches!(result, Err(AuthError::Token(TokenError::Revoked)))
    }

    #[tokio::test]
    async fn a_refresh_rotates_and_the_rotated_token_presented_again_ends_the_session() {
        let f = fixture("").await;
        f.register("alice").await;
        let first = f.login("alice").await;
        let second = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        assert_ne!(second.refresh, first.refresh);
        assert!(f.live(&second.access));
        assert_eq!(f.counters.refreshes.get(), 1);

        // The rotated token again: a stolen copy. The whole session goes, the new pair too.
        assert!(revoked(f.sessions.refresh(f.refresh(&first)).await));
        assert!(!f.live(&second.access));
        assert!(revoked(f.sessions.refresh(f.refresh(&second)).await));
        assert_eq!(f.counters.revocations.get(), 1);
    }

    /// Roles are the store's at every login and refresh: a change takes effect at the next
    /// refresh, in the racing tab's access token too.
    #[tokio::test]
    async fn a_refresh_gives_the_roles_the_store_has_now() {
        let f = fixture_with("", "10s").await;
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let user = f
            .sessions
            .register("alice".into(), PASSWORD.into(), roles(&["admin", "ops"]))
            .await
            .unwrap();
        let first = f.login("alice").await;
        assert_eq!(f.claims(&first.access).roles(), roles(&["admin", "ops"]));
        assert!(f.claims(f.refresh(&first)).roles.is_none());

        let changed = f
            .store
            .change_user(&user.id, UserChange::Roles(roles(&["viewer"])))
            .await
            .unwrap();
        assert!(changed);
        assert_eq!(
            f.claims(&first.access).roles(),
            roles(&["admin", "ops"]),
            "an access token keeps what it was signed with"
        );
        let second = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        assert_eq!(f.claims(&second.access).roles(), roles(&["viewer"]));
        f.store
            .change_user(&user.id, UserChange::Roles(Vec::new()))
            .await
            .unwrap();
        let racing = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        assert!(racing.refresh.is_none());
        assert!(f.claims(&racing.access).roles().is_empty());
    }

    /// A login reads the user, then spends a while on the password, then opens the session: a
    /// role taken away in between is not signed into its access token (the security review's
    /// attacker found that it was). The session's opening reads the roles again.
    #[tokio::test]
    async fn a_login_signs_the_roles_the_store_has_when_its_session_opens() {
        let f = fixture("").await;
        let as_read = f
            .sessions
            .register("carol".into(), PASSWORD.into(), vec!["billing".into()])
            .await
            .unwrap();
        f.store
            .change_user(&as_read.id, UserChange::Roles(Vec::new()))
            .await
            .unwrap();
        let pair = f.sessions.create_session(&as_read).await.unwrap().unwrap();
        assert!(f.claims(&pair.access).roles().is_empty());
    }

    /// A disabled user can neither log in (the answer is a failed login's) nor refresh, their
    /// sessions end at once, and enabling them lets them log in again, in new sessions only.
    #[tokio::test]
    async fn a_disabled_user_cannot_log_in_or_refresh_until_enabled() {
        let f = fixture("").await;
        let user = f.register("alice").await;
        let pair = f.login("alice").await;
        assert_eq!(f.sessions.disable("alice").await.unwrap(), 1);
        assert!(!f.live(&pair.access));
        assert!(revoked(f.sessions.refresh(f.refresh(&pair)).await));
        assert!(matches!(
            f.sessions.login("alice", PASSWORD.into()).await,
            Err(AuthError::BadCredentials)
        ));
        assert_eq!(
            f.sessions.disable("alice").await.unwrap(),
            0,
            "again: nothing"
        );
        assert!(
            f.store
                .change_user(&user.id, UserChange::Enable)
                .await
                .unwrap()
        );
        assert!(revoked(f.sessions.refresh(f.refresh(&pair)).await));
        let again = f.login("alice").await;
        assert!(f.sessions.refresh(f.refresh(&again)).await.is_ok());
        assert!(matches!(
            f.sessions.disable("nobody").await,
            Err(AuthError::BadCredentials)
        ));
    }

    /// A browser's tabs refresh at once: within the grace, the token just rotated gives an
    /// access token of the same session, and no second chain of refresh tokens; a token rotated
    /// before that one is still a stolen copy.
    #[tokio::test]
    async fn within_the_grace_the_token_just_rotated_gives_an_access_token_only() {
        let f = fixture_with("", "10s").await;
        f.register("alice").await;
        let first = f.login("alice").await;
        let second = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        let racing = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        assert!(racing.refresh.is_none(), "no second chain");
        assert_eq!(f.claims(&racing.access).sid, f.claims(&second.access).sid);
        assert_eq!(racing.csrf, second.csrf, "the session keeps its CSRF value");
        assert!(f.live(&racing.access) && f.live(&second.access));

        let third = f.sessions.refresh(f.refresh(&second)).await.unwrap();
        assert!(
            revoked(f.sessions.refresh(f.refresh(&first)).await),
            "two rotations back: reuse"
        );
        assert!(!f.live(&third.access), "and the session is gone");
    }

    #[tokio::test]
    async fn refresh_takes_only_a_refresh_token_and_only_once_revocations_are_loaded() {
        let f = fixture("").await;
        f.register("alice").await;
        let pair = f.login("alice").await;
        assert!(matches!(
            f.sessions.refresh(&pair.access).await,
            Err(AuthError::Token(TokenError::RefreshRequired))
        ));
        assert!(matches!(
            f.sessions.refresh("not.a.token").await,
            Err(AuthError::Token(_))
        ));

        let cold = fixture("").await;
        cold.register("bob").await;
        let pair = cold.login("bob").await;
        let unloaded = RevocationCache::default();
        let sessions = Sessions {
            revocations: unloaded,
            ..cold.sessions
        };
        assert!(matches!(
            sessions.refresh(f.refresh(&pair)).await,
            Err(AuthError::NotReady)
        ));
    }

    #[tokio::test]
    async fn logout_ends_one_session_and_logout_all_every_session_of_the_user_only() {
        let f = fixture("").await;
        f.register("alice").await;
        f.register("bob").await;
        let (a1, a2, b) = (
            f.login("alice").await,
            f.login("alice").await,
            f.login("bob").await,
        );

        f.sessions.logout(&f.claims(f.refresh(&a1))).await.unwrap();
        assert!(
            !f.live(&a1.access),
            "the access token of a logged-out session"
        );
        assert!(revoked(f.sessions.refresh(f.refresh(&a1)).await));
        assert!(f.live(&a2.access));

        let a3 = f.login("alice").await;
        assert_eq!(
            f.sessions.logout_all(&f.claims(&a3.access)).await.unwrap(),
            2
        );
        for pair in [&a2, &a3] {
            assert!(!f.live(&pair.access));
        }
        assert!(f.live(&b.access), "another user's session");
    }

    #[tokio::test]
    async fn the_store_refuses_to_refresh_a_session_it_knows_is_revoked_whatever_memory_says() {
        let f = fixture("").await;
        f.register("alice").await;
        let (other, other_memory) = f.replica();
        let (ended, ended_too) = (f.login("alice").await, f.login("alice").await);
        let survivor = f.login("alice").await;

        f.sessions.logout(&f.claims(&ended.access)).await.unwrap();
        assert!(
            !other_memory.is_revoked(&f.claims(&ended.access), unix_now()),
            "the other replica has not heard"
        );
        assert!(revoked(other.refresh(f.refresh(&ended)).await));

        // Logout-all from one session, refresh of another on the replica that has not heard.
        let asking = f.login("alice").await;
        assert_eq!(
            f.sessions
                .logout_all(&f.claims(&asking.access))
                .await
                .unwrap(),
            3
        );
        assert!(revoked(other.refresh(f.refresh(&ended_too)).await));
        assert!(revoked(other.refresh(f.refresh(&survivor)).await));
        assert!(other_memory.is_empty(), "the store decided, not memory");
    }

    #[tokio::test]
    async fn a_session_the_store_knows_is_revoked_cannot_log_out_or_change_anything() {
        let f = fixture("").await;
        f.register("alice").await;
        let (other, _) = f.replica();
        let pair = f.login("alice").await;
        f.sessions.logout(&f.claims(&pair.access)).await.unwrap();
        let claims = f.claims(&pair.access);
        assert!(revoked(other.logout(&claims).await));
        assert!(revoked(other.logout_all(&claims).await));
        assert!(revoked(
            other
                .change_password(&claims, PASSWORD.into(), "the second password".into())
                .await
        ));
        assert!(
            f.sessions.login("alice", PASSWORD.into()).await.is_ok(),
            "the password did not change"
        );
        assert_eq!(
            f.counters.revocations.get(),
            1,
            "one revocation, written once"
        );
    }

    /// Each change ends the other's session, so exactly one can win; the other is refused, and
    /// the password is the winner's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_password_changes_at_once_from_two_sessions_leave_exactly_one_winner() {
        let f = fixture("").await;
        f.register("alice").await;
        let (a, b) = (f.login("alice").await, f.login("alice").await);
        let (claims_a, claims_b) = (f.claims(&a.access), f.claims(&b.access));
        let (result_a, result_b) = tokio::join!(
            f.sessions
                .change_password(&claims_a, PASSWORD.into(), "password of a".into()),
            f.sessions
                .change_password(&claims_b, PASSWORD.into(), "password of b".into()),
        );
        let (winner, loser) = match (&result_a, &result_b) {
            (Ok(1), Err(AuthError::Token(TokenError::Revoked))) => ("password of a", &b),
            (Err(AuthError::Token(TokenError::Revoked)), Ok(1)) => ("password of b", &a),
            other => panic!("not one winner: {other:?}"),
        };
        assert!(!f.live(&loser.access));
        assert!(f.sessions.login("alice", winner.into()).await.is_ok());
    }

    #[tokio::test]
    async fn a_logout_with_a_rotated_refresh_token_ends_the_session_and_is_refused() {
        let f = fixture("").await;
        f.register("alice").await;
        let first = f.login("alice").await;
        let second = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        assert!(revoked(
            f.sessions.logout(&f.claims(f.refresh(&first))).await
        ));
        assert!(!f.live(&second.access), "a stolen copy ends the session");
        assert!(revoked(f.sessions.refresh(f.refresh(&second)).await));
    }

    /// The store checks every refresh token, so memory holds a revocation only as long as one of
    /// the session's access tokens can be presented, and nothing for rotated refresh tokens.
    #[tokio::test]
    async fn memory_holds_a_revocation_for_the_access_window_and_no_rotated_token() {
        let f = fixture("").await;
        f.register("alice").await;
        let first = f.login("alice").await;
        let second = f.sessions.refresh(f.refresh(&first)).await.unwrap();
        assert!(
            f.revocations.is_empty(),
            "a rotation writes nothing to memory"
        );
        let before = unix_now();
        f.sessions.logout(&f.claims(&second.access)).await.unwrap();
        let window = f.config.tokens.revocation_window().as_secs();
        assert_eq!(
            window,
            15 * 60 + 60,
            "access_ttl, no leeway, a minute of clock skew"
        );
        let claims = f.claims(&second.access);
        assert!(f.revocations.is_revoked(&claims, before + window - 1));
        assert!(!f.revocations.is_revoked(&claims, unix_now() + window + 1));
        assert_eq!(f.revocations.len(), 1);
    }

    #[tokio::test]
    async fn a_password_change_ends_every_other_session_and_the_old_password() {
        let f = fixture("").await;
        f.register("alice").await;
        let (mine, other) = (f.login("alice").await, f.login("alice").await);
        let claims = f.claims(&mine.access);
        let ended = f
            .sessions
            .change_password(&claims, PASSWORD.into(), "the second password".into())
            .await
            .unwrap();
        assert_eq!(ended, 1);
        assert!(f.live(&mine.access), "the session that asked keeps working");
        assert!(!f.live(&other.access));
        assert!(matches!(
            f.sessions.login("alice", PASSWORD.into()).await,
            Err(AuthError::BadCredentials)
        ));
        assert!(
            f.sessions
                .login("alice", "the second password".into())
                .await
                .is_ok()
        );
        assert!(matches!(
            f.sessions
                .change_password(&claims, PASSWORD.into(), "a third password".into())
                .await,
            Err(AuthError::WrongPassword)
        ));
        assert!(matches!(
            f.sessions
                .change_password(&claims, "the second password".into(), "short".into())
                .await,
            Err(AuthError::Invalid("Password must be at least 8 bytes"))
        ));
    }

    #[tokio::test]
    async fn failed_logins_are_throttled_per_user_and_every_attempt_per_address() {
        let f = fixture("per_user = 2\nper_address = 3").await;
        f.register("alice").await;
        for _ in 0..2 {
            assert!(matches!(
                f.sessions.login("alice", "wrong password".into()).await,
                Err(AuthError::BadCredentials)
            ));
        }
        // Throttled, the right password included; by name, whatever its case.
        assert!(matches!(
            f.sessions.login("ALICE", PASSWORD.into()).await,
            Err(AuthError::Throttled(_))
        ));
        assert_eq!(f.counters.logins_failed.get(), 2);

        let client: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            f.sessions.admit_login(client).unwrap();
        }
        assert!(matches!(
            f.sessions.admit_login(client),
            Err(AuthError::Throttled(_))
        ));
        assert!(f.sessions.admit_login("192.0.2.8".parse().unwrap()).is_ok());
    }

    /// The second attack on the fixes sent 40 wrong logins at once, and all 40 were checked: the
    /// bucket was read before the hash and charged after. Now no more guesses are checked than
    /// the bucket holds, and the right password sent with them is throttled too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_sent_all_at_once_get_no_more_guesses_than_the_bucket_holds() {
        let f = fixture("per_user = 3").await;
        f.register("alice").await;
        let guesses = (0..20).map(|i| f.sessions.login("alice", format!("wrong guess {i}")));
        let results = futures_util::future::join_all(guesses).await;
        let checked = results
            .iter()
            .filter(|r| matches!(r, Err(AuthError::BadCredentials)))
            .count();
        let throttled = results
            .iter()
            .filter(|r| matches!(r, Err(AuthError::Throttled(_))))
            .count();
        assert_eq!((checked, throttled), (3, 17));
        assert!(matches!(
            f.sessions.login("alice", PASSWORD.into()).await,
            Err(AuthError::Throttled(_))
        ));

        {
            let g = fixture("per_user = 2").await;
            g.register("bob").await;
            let claims = g.claims(&g.login("bob").await.access);
            let changes = (0..10).map(|i| {
                g.sessions.change_password(
                    &claims,
                    format!("wrong old {i}"),
                    "a new password".into(),
                )
            });
            let results = futures_util::future::join_all(changes).await;
            let checked = results
                .iter()
                .filter(|r| matches!(r, Err(AuthError::WrongPassword)))
                .count();
            assert_eq!(checked, 2, "old passwords checked at once");
        }
    }

    /// A successful login gives its attempt back: a user who logs in often is never throttled.
    #[tokio::test]
    async fn successful_logins_do_not_use_up_the_allowance() {
        let f = fixture("per_user = 2").await;
        f.register("alice").await;
        for _ in 0..5 {
            f.login("alice").await;
        }
        assert!(matches!(
            f.sessions.login("alice", "wrong password".into()).await,
            Err(AuthError::BadCredentials)
        ));
    }

    #[tokio::test]
    async fn wrong_old_passwords_are_throttled_like_failed_logins() {
        let f = fixture("per_user = 2").await;
        f.register("alice").await;
        let claims = f.claims(&f.login("alice").await.access);
        for _ in 0..2 {
            f.sessions.admit_password_change(&claims).unwrap();
            assert!(matches!(
                f.sessions
                    .change_password(&claims, "wrong password".into(), "a new password".into())
                    .await,
                Err(AuthError::WrongPassword)
            ));
        }
        assert!(matches!(
            f.sessions.admit_password_change(&claims),
            Err(AuthError::Throttled(_))
        ));
        // Counted by id: the name's allowance for logins is untouched.
        assert!(f.sessions.login("alice", PASSWORD.into()).await.is_ok());
    }

    #[tokio::test]
    async fn registration_applies_the_rules_and_one_name_is_one_user() {
        let f = fixture("").await;
        let user = f.register("Alice").await;
        assert_eq!(user.username, "Alice");
        assert_eq!(f.counters.registrations.get(), 1);
        assert!(matches!(
            f.sessions
                .register("ALICE".into(), PASSWORD.into(), Vec::new())
                .await,
            Err(AuthError::UsernameTaken)
        ));
        assert!(matches!(
            f.sessions
                .register(" bob ".into(), PASSWORD.into(), Vec::new())
                .await,
            Err(AuthError::Invalid(
                "Username must not begin or end with whitespace"
            ))
        ));
        assert!(matches!(
            f.sessions
                .register("bob".into(), "short".into(), Vec::new())
                .await,
            Err(AuthError::Invalid("Password must be at least 8 bytes"))
        ));
        // An unknown user fails exactly as a wrong password does.
        assert!(matches!(
            f.sessions.login("nobody", PASSWORD.into()).await,
            Err(AuthError::BadCredentials)
        ));
    }
}
