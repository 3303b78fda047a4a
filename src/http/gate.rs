//! Everything a request may need, built once at start-up and shared by all connections.

use std::sync::Arc;

use crate::config::Config;
use crate::core::revocation::RevocationCache;
use crate::core::token::TokenService;
use crate::http::metrics::Metrics;
use crate::services::sessions::Sessions;
use crate::store::Store;

pub struct Gate {
    pub config: Config,
    /// Verifies every request's token; shared with the sessions, which issue them.
    pub tokens: Arc<TokenService>,
    pub revocations: RevocationCache,
    /// For the readiness probe; the sessions hold their own handle.
    pub store: Store,
    pub sessions: Sessions,
    pub metrics: Metrics,
}

impl Gate {
    pub fn new(config: Config, store: Store) -> Gate {
        let tokens = Arc::new(TokenService::new(&config.tokens));
        let revocations = RevocationCache::default();
        let metrics = Metrics::default();
        let sessions = Sessions::new(
            &config,
            store.clone(),
            tokens.clone(),
            revocations.clone(),
            metrics.session_counters(),
        );
        Gate {
            tokens,
            revocations,
            store,
            sessions,
            metrics,
            config,
        }
    }

    pub fn revocations_loaded(&self) -> bool {
        self.revocations.is_loaded()
    }
}
