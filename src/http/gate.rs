//! Everything a request may need, built once at start-up and shared by all connections.

use crate::config::Config;
use crate::core::revocation::RevocationCache;
use crate::core::throttle::Throttle;
use crate::core::token::TokenService;
use crate::http::metrics::Metrics;
use crate::services::password::Passwords;
use crate::store::Store;

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
            store,
            config,
        }
    }

    pub fn revocations_loaded(&self) -> bool {
        self.revocations.is_loaded()
    }
}
