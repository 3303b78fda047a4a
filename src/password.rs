//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on blocking threads behind
//! a concurrency limit: a burst of logins waits its turn instead of stalling proxied traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;

#[derive(Clone)]
pub struct Passwords {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Hashes queued or running, and how many may be: past that, callers are turned away at once
    /// rather than queueing without bound.
    in_line: Arc<AtomicUsize>,
    max_in_line: usize,
    /// A hash of a random password, verified against when the user does not exist, so an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub fn new(config: &PasswordConfig) -> Passwords {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .expect("argon2 parameters are validated with the config");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let random: [u8; 32] = rand::random();
        let dummy_hash = hash_with(&argon2, &random);
        Passwords {
            argon2,
            permits: Arc::new(Semaphore::new(config.max_concurrent_hashes.max(1))),
            in_line: Arc::new(AtomicUsize::new(0)),
            max_in_line: config.max_concurrent_hashes.max(1) + config.max_waiting_hashes,
            dummy_hash: dummy_hash.into(),
        }
    }

    /// Hashes `password` into a PHC string (algorithm, parameters and salt included); `Err(Busy)`
    /// when too many hashes are in line already.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        let argon2 = self.argon2.clone();
        self.run_blocking(move || hash_with(&argon2, password.as_bytes()))
            .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no user, so both
    /// cases take the same time. Returns false for the dummy; `Err(Busy)` as for `hash`.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        let argon2 = self.argon2.clone();
        let is_real = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .run_blocking(move || match PasswordHash::new(&hash) {
                Ok(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(ok && is_real)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let place = InLine::join(&self.in_line, self.max_in_line).ok_or(Busy)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let result = tokio::task::spawn_blocking(work)
            .await
            .expect("password hashing does not panic");
        drop(place);
        Ok(result)
    }
}

/// Too many password hashes in line.
#[derive(Debug)]
pub struct Busy;

/// A place in line, given back when dropped (also when the waiting request is cancelled).
struct InLine<'a>(&'a AtomicUsize);

impl<'a> InLine<'a> {
    fn join(count: &'a AtomicUsize, max: usize) -> Option<InLine<'a>> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InLine(count))
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(&PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent_hashes: 2,
            max_waiting_hashes: 4,
        })
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let p = cheap();
        let hash = p.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(
            p.verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong horse".into(), Some(hash)).await.unwrap());
        assert!(
            !p.verify("anything".into(), None).await.unwrap(),
            "the dummy never matches"
        );
    }

    /// An unknown user costs one full argon2id verification with the configured parameters, the
    /// same work as a wrong password, so response time does not tell the two apart.
    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_real_one_costs() {
        let p = cheap();
        let real = p.hash("any password".into()).await.unwrap();
        let params = |h: &str| h.split('$').nth(3).unwrap().to_string();
        assert_eq!(params(&p.dummy_hash), params(&real));
        assert_eq!(params(&real), "m=1024,t=1,p=1");
    }

    #[test]
    fn the_line_has_a_length() {
        let count = AtomicUsize::new(0);
        let a = InLine::join(&count, 2).unwrap();
        let _b = InLine::join(&count, 2).unwrap();
        assert!(InLine::join(&count, 2).is_none(), "full");
        drop(a);
        assert!(InLine::join(&count, 2).is_some(), "a place freed");
    }
}
