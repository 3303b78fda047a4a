//! Password hashing with argon2id. Hashing is slow on purpose, so it runs on blocking threads behind
//! a concurrency limit: a burst of logins waits its turn instead of stalling proxied traffic.

use std::sync::Arc;

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
            dummy_hash: dummy_hash.into(),
        }
    }

    /// Hashes `password` into a PHC string (algorithm, parameters and salt included).
    pub async fn hash(&self, password: String) -> String {
        let argon2 = self.argon2.clone();
        self.run_blocking(move || hash_with(&argon2, password.as_bytes()))
            .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no user, so both
    /// cases take the same time. Returns false for the dummy.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let argon2 = self.argon2.clone();
        let is_real = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .run_blocking(move || match PasswordHash::new(&hash) {
                Ok(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            })
            .await;
        ok && is_real
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(work)
            .await
            .expect("password hashing does not panic")
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
        })
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let p = cheap();
        let hash = p.hash("correct horse".into()).await;
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(p.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!p.verify("wrong horse".into(), Some(hash)).await);
        assert!(
            !p.verify("anything".into(), None).await,
            "the dummy never matches"
        );
    }
}
