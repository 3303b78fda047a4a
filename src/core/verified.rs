//! Tokens that passed full verification, by their exact text, so a client's next request with the
//! same token skips the signature and JSON work. Only verified tokens get in; the caller checks
//! their time claims again on every use, and revocation every time.
//!
//! A fixed table of slots, each holding one token, found by a hash of the token's signature end
//! and confirmed by comparing the whole text. A newer token that lands in a taken slot replaces the
//! one there, which costs that token one more full verification, nothing else. This replaces a
//! moka cache, whose bookkeeping (access order, expiry) was most of a lookup's cost (measured in
//! BENCHMARKS.md); a lookup here is a short hash, one uncontended lock and a compare.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use crate::core::token::Claims;

/// Slots in the table, a power of two. Tokens are a few hundred bytes: at most about a megabyte.
const SLOTS: usize = 4096;
/// Bytes from the end of a token that pick its slot: the signature's, which differ between any
/// two tokens however alike their claims.
const HASHED_TAIL: usize = 16;

pub(crate) struct VerifiedTokens {
    slots: Box<[Mutex<Option<Entry>>]>,
    /// Seeded per process, so where a token lands cannot be worked out from outside.
    hasher: foldhash::fast::RandomState,
}

struct Entry {
    token: Box<str>,
    claims: Arc<Claims>,
}

impl Default for VerifiedTokens {
    fn default() -> VerifiedTokens {
        VerifiedTokens {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl VerifiedTokens {
    /// The claims `token` had when it was verified, if it is remembered.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Claims>> {
        let slot = self.slot(token).lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(entry) if *entry.token == *token => Some(entry.claims.clone()),
            _ => None,
        }
    }

    /// Remembers `token`, verified, with its claims.
    pub(crate) fn insert(&self, token: &str, claims: Arc<Claims>) {
        let entry = Entry {
            token: token.into(),
            claims,
        };
        // The old entry is dropped after the lock is let go.
        let _old = self
            .slot(token)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(entry);
    }

    fn slot(&self, token: &str) -> &Mutex<Option<Entry>> {
        let tail = &token.as_bytes()[token.len().saturating_sub(HASHED_TAIL)..];
        let index = self.hasher.hash_one(tail) as usize & (SLOTS - 1);
        &self.slots[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::token::TokenKind;

    fn claims(sub: &str) -> Arc<Claims> {
        Arc::new(Claims {
            sub: sub.into(),
            username: sub.into(),
            jti: "j".into(),
            sid: "s".into(),
            kind: TokenKind::Access,
            fresh: false,
            csrf: None,
            roles: None,
            iat: 0,
            nbf: 0,
            exp: 1,
            iss: "authgate".into(),
            revocation_key: Default::default(),
            roles_header: Default::default(),
            assertion: Default::default(),
        })
    }

    #[test]
    fn a_remembered_token_gives_back_its_claims_and_nothing_else_does() {
        let cache = VerifiedTokens::default();
        assert!(cache.get("a.b.c").is_none());
        cache.insert("a.b.c", claims("alice"));
        assert_eq!(cache.get("a.b.c").unwrap().sub, "alice");
        // Same slot-picking tail, different token: the whole text decides.
        assert!(cache.get("x.b.c").is_none());
        assert!(cache.get("a.b.").is_none());
        assert!(cache.get("").is_none());
    }

    #[test]
    fn a_token_landing_in_a_taken_slot_replaces_the_one_there() {
        let cache = VerifiedTokens::default();
        // Tokens that share their last 16 bytes always share a slot.
        let tail = "0123456789abcdef";
        let (first, second) = (format!("first.{tail}"), format!("second.{tail}"));
        cache.insert(&first, claims("alice"));
        cache.insert(&second, claims("bob"));
        assert!(cache.get(&first).is_none(), "replaced");
        assert_eq!(cache.get(&second).unwrap().sub, "bob");
    }

    #[test]
    fn many_tokens_are_remembered_at_once() {
        let cache = VerifiedTokens::default();
        let tokens: Vec<String> = (0..1000)
            .map(|i| format!("header.payload.sig{i:08}"))
            .collect();
        for token in &tokens {
            cache.insert(token, claims(token));
        }
        let kept = tokens
            .iter()
            .filter(|t| cache.get(t).is_some_and(|c| c.sub == **t))
            .count();
        // 1000 tokens in 4096 slots: about 890 slots end up taken, whatever the seed.
        assert!(kept > 800, "only {kept} of 1000 remembered");
    }
}
