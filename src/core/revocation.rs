//! Which sessions are revoked, in memory, so checking an access token costs no store query. The
//! store decides every refresh, so an entry only has to outlive the session's access tokens: it
//! lives until the last of them would have expired anyway (`TokenConfig::revocation_window` after
//! the revocation), then is swept away. Entries are never evicted for space, since an evicted
//! entry would bring a revoked token back.
//!
//! Why not moka, as first planned: its per-entry bookkeeping (expiry timers, access order) cost
//! about 360 bytes and 1.8 µs per entry, so a million revoked sessions took 850 MiB and five
//! seconds to load. Entries here are a 128-bit key and a 32-bit expiry in sharded hash maps:
//! about 40 bytes each, a read lock per lookup.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::core::token::{Claims, unix_now};
/// What a revocation covers: a whole login session. (Rows of kind `token`, which earlier versions
/// wrote for rotated refresh tokens, are no longer needed: the store checks every refresh token
/// against its session's current one. They are read as no kind, and skipped.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    Session,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Session => "session",
        }
    }

    pub fn parse(s: &str) -> Option<RevocationKind> {
        match s {
            "session" => Some(RevocationKind::Session),
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

/// Ids are UUIDs (authgate makes every `sid` and `jti`), kept as their 128 bits; anything else is
/// reduced to 128 bits with FNV-1a. A collision could only revoke, never admit, and keys come from
/// verified tokens only.
fn key_bits(id: &str) -> u128 {
    if let Ok(uuid) = uuid::Uuid::try_parse(id) {
        return uuid.as_u128();
    }
    id.bytes()
        .fold(0x6c62272e07bb014262b821756295c58d_u128, |hash, byte| {
            (hash ^ u128::from(byte)).wrapping_mul(0x0000000001000000000000000000013B)
        })
}

const SHARDS: usize = 16;

/// One kind of revocation: key → expiry (unix seconds), in shards so lookups rarely contend.
struct RevokedSet {
    shards: [RwLock<HashMap<u128, u32>>; SHARDS],
}

impl Default for RevokedSet {
    fn default() -> Self {
        RevokedSet {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }
}

impl RevokedSet {
    fn shard(&self, key: u128) -> &RwLock<HashMap<u128, u32>> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// Keeps the later expiry when a key is revoked twice.
    fn insert(&self, id: &str, expires_at: u64) {
        let key = key_bits(id);
        let expires_at = u32::try_from(expires_at).unwrap_or(u32::MAX);
        let mut shard = self.shard(key).write().expect("never poisoned");
        let entry = shard.entry(key).or_insert(expires_at);
        *entry = (*entry).max(expires_at);
    }

    fn contains(&self, id: &str, now: u64) -> bool {
        self.contains_key(key_bits(id), now)
    }

    fn contains_key(&self, key: u128, now: u64) -> bool {
        let shard = self.shard(key).read().expect("never poisoned");
        shard
            .get(&key)
            .is_some_and(|&expires_at| u64::from(expires_at) > now)
    }

    fn reserve(&self, additional: usize) {
        for shard in &self.shards {
            shard
                .write()
                .expect("never poisoned")
                .reserve(additional / SHARDS + 1);
        }
    }

    /// Forgets entries whose tokens have all expired; returns how many remain.
    fn sweep(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.write().expect("never poisoned");
                shard.retain(|_, &mut expires_at| u64::from(expires_at) > now);
                if shard.capacity() > 4 * shard.len().max(64) {
                    shard.shrink_to_fit();
                }
                shard.len()
            })
            .sum()
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect("never poisoned").len())
            .sum()
    }
}

#[derive(Clone, Default)]
pub struct RevocationCache {
    sessions: std::sync::Arc<RevokedSet>,
    /// False until every unexpired revocation is in the cache: until then no token is trusted.
    loaded: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RevocationCache {
    /// Whether every revocation in force was loaded: only then can a token be trusted.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn mark_loaded(&self) {
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn insert(&self, revocation: Revocation) {
        if revocation.expires_at <= unix_now() {
            return;
        }
        match revocation.kind {
            RevocationKind::Session => self.sessions.insert(&revocation.key, revocation.expires_at),
        }
    }

    /// Makes room for `additional` more entries at once (before a bulk load).
    pub fn reserve(&self, additional: usize) {
        self.sessions.reserve(additional);
    }

    /// Whether `claims`' session is revoked at `now` (unix seconds): the same clock reading the
    /// token's own times were checked against.
    pub fn is_revoked(&self, claims: &Claims, now: u64) -> bool {
        let session = *claims.revocation_key.get_or_init(|| key_bits(&claims.sid));
        self.sessions.contains_key(session, now)
    }

    pub fn is_session_revoked(&self, sid: &str) -> bool {
        self.sessions.contains(sid, unix_now())
    }

    /// Drops entries that can no longer matter; returns how many remain.
    pub fn sweep(&self) -> usize {
        self.sessions.sweep(unix_now())
    }

    /// Entries held, expired ones not yet swept included.
    pub fn len(&self) -> u64 {
        self.sessions.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_sessions_are_found_and_expired_ones_ignored() {
        let cache = RevocationCache::default();
        let now = unix_now();
        cache.insert(Revocation {
            kind: RevocationKind::Session,
            key: "s1".into(),
            expires_at: now + 60,
        });
        cache.insert(Revocation {
            kind: RevocationKind::Session,
            key: "old".into(),
            expires_at: now - 1,
        });
        assert!(cache.is_session_revoked("s1"));
        assert!(!cache.is_session_revoked("s2"));
        assert!(!cache.is_session_revoked("old"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn rows_of_the_retired_token_kind_are_not_read() {
        assert_eq!(
            RevocationKind::parse("session"),
            Some(RevocationKind::Session)
        );
        assert_eq!(RevocationKind::parse("token"), None);
    }

    #[test]
    fn uuids_keep_their_bits_and_other_ids_still_work() {
        let cache = RevocationCache::default();
        let now = unix_now();
        let sid = "0b9e8d7c-6a5f-4e3d-8c1b-0a9f8e7d6c5b";
        cache.insert(Revocation {
            kind: RevocationKind::Session,
            key: sid.into(),
            expires_at: now + 60,
        });
        assert!(cache.is_session_revoked(sid));
        assert!(
            cache.is_session_revoked(&sid.to_uppercase()),
            "the same UUID, however written"
        );
        assert!(!cache.is_session_revoked("0b9e8d7c-6a5f-4e3d-8c1b-0a9f8e7d6c5c"));
        cache.insert(Revocation {
            kind: RevocationKind::Session,
            key: "not-a-uuid".into(),
            expires_at: now + 60,
        });
        assert!(cache.is_session_revoked("not-a-uuid"));
        assert!(!cache.is_session_revoked("not-a-uuid2"));
    }

    #[test]
    fn entries_expire_and_are_swept() {
        let set = RevokedSet::default();
        let now = unix_now();
        set.insert("a", now + 10);
        set.insert("b", now + 100);
        set.insert("a", now + 5);
        assert!(set.contains("a", now + 9), "the later expiry is kept");
        assert!(
            !set.contains("a", now + 10),
            "gone once its tokens have expired"
        );
        assert_eq!(set.sweep(now + 10), 1);
        assert!(set.contains("b", now + 10));
    }
}
