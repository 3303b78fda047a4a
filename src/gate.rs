//! Everything a request may need, built once at start-up and shared by all connections.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::revocation::RevocationCache;
use crate::store::Store;
use crate::throttle::Throttle;
use crate::token::TokenService;

/// Login throttles; `None` where configured off.
pub struct LoginThrottle {
    pub per_user: Option<Throttle>,
    pub per_address: Option<Throttle>,
}

pub struct Gate {
    pub config: Config,
    pub tokens: TokenService,
    pub revocations: RevocationCache,
    pub store: Store,
    pub passwords: Passwords,
    pub metrics: Metrics,
    pub login_throttle: LoginThrottle,
    /// False until every unexpired revocation is in the cache: until then no token is trusted.
    revocations_loaded: AtomicBool,
}

impl Gate {
    pub fn new(config: Config, store: Store) -> Gate {
        Gate {
            tokens: TokenService::new(&config.tokens),
            passwords: Passwords::new(&config.passwords),
            revocations: RevocationCache::default(),
            metrics: Metrics::default(),
            login_throttle: LoginThrottle {
                per_user: Throttle::new(config.login_limits.per_user, config.login_limits.window),
                per_address: Throttle::new(
                    config.login_limits.per_address,
                    config.login_limits.window,
                ),
            },
            revocations_loaded: AtomicBool::new(false),
            store,
            config,
        }
    }

    pub fn revocations_loaded(&self) -> bool {
        self.revocations_loaded.load(Ordering::Acquire)
    }

    pub fn mark_revocations_loaded(&self) {
        self.revocations_loaded.store(true, Ordering::Release);
    }
}
