//! What is revoked, in memory, so checking a token costs no store query. Each entry lives until the
//! last token it revokes would have expired anyway; entries are never evicted for space, since an
//! evicted entry would bring a revoked token back.

use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use crate::token::{Claims, unix_now};

/// Whether a revocation covers a whole login session or one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    Session,
    Token,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Session => "session",
            RevocationKind::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<RevocationKind> {
        match s {
            "session" => Some(RevocationKind::Session),
            "token" => Some(RevocationKind::Token),
            _ => None,
        }
    }
}

/// A revocation as stored: kind, the session or token id, and when it may be forgotten (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub key: String,
    pub expires_at: u64,
}

/// Expires each entry at the unix time it holds.
struct UntilValue;

impl Expiry<String, u64> for UntilValue {
    fn expire_after_create(
        &self,
        _key: &String,
        expires_at: &u64,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            expires_at.saturating_sub(unix_now()).max(1),
        ))
    }

    fn expire_after_update(
        &self,
        key: &String,
        expires_at: &u64,
        created_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, expires_at, created_at)
    }
}

#[derive(Clone)]
pub struct RevocationCache {
    sessions: Cache<String, u64>,
    tokens: Cache<String, u64>,
}

impl Default for RevocationCache {
    fn default() -> Self {
        let build = || Cache::builder().expire_after(UntilValue).build();
        RevocationCache {
            sessions: build(),
            tokens: build(),
        }
    }
}

impl RevocationCache {
    pub fn insert(&self, revocation: Revocation) {
        if revocation.expires_at <= unix_now() {
            return;
        }
        let cache = match revocation.kind {
            RevocationKind::Session => &self.sessions,
            RevocationKind::Token => &self.tokens,
        };
        // Keep the later expiry if the same key is revoked twice.
        let expires_at = cache
            .get(&revocation.key)
            .map_or(revocation.expires_at, |old| old.max(revocation.expires_at));
        cache.insert(revocation.key, expires_at);
    }

    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.sessions.contains_key(&claims.sid) || self.tokens.contains_key(&claims.jti)
    }

    pub fn is_token_revoked(&self, jti: &str) -> bool {
        self.tokens.contains_key(jti)
    }

    pub fn is_session_revoked(&self, sid: &str) -> bool {
        self.sessions.contains_key(sid)
    }

    /// Entries currently held (approximate while moka applies pending writes).
    pub fn len(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.tokens.run_pending_tasks();
        self.sessions.entry_count() + self.tokens.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_sessions_and_tokens_are_found_and_expired_ones_ignored() {
        let cache = RevocationCache::default();
        let now = unix_now();
        cache.insert(Revocation {
            kind: RevocationKind::Session,
            key: "s1".into(),
            expires_at: now + 60,
        });
        cache.insert(Revocation {
            kind: RevocationKind::Token,
            key: "j1".into(),
            expires_at: now + 60,
        });
        cache.insert(Revocation {
            kind: RevocationKind::Session,
            key: "old".into(),
            expires_at: now - 1,
        });
        assert!(cache.is_session_revoked("s1"));
        assert!(cache.is_token_revoked("j1"));
        assert!(!cache.is_session_revoked("j1"), "kinds do not mix");
        assert!(!cache.is_session_revoked("old"));
        assert_eq!(cache.len(), 2);
    }
}
