//! Everything a request may need, built once at start-up and shared by all connections.

use std::sync::Arc;

use crate::config::Config;
use crate::core::revocation::RevocationCache;
use crate::core::token::TokenService;
use crate::http::metrics::Metrics;
use crate::services::authenticator::Authenticator;
use crate::services::sessions::Sessions;
use crate::store::Store;

pub(crate) struct Gate {
    pub(crate) config: Config,
    /// Admits every guarded request's token.
    pub(crate) authenticator: Authenticator,
    /// Kept in step with the store by `store::sync`; counted by the metrics.
    pub(crate) revocations: RevocationCache,
    /// For the readiness probe; the sessions hold their own handle.
    pub(crate) store: Store,
    pub(crate) sessions: Sessions,
    pub(crate) metrics: Metrics,
}

impl Gate {
    pub(crate) fn new(config: Config, store: Store) -> Gate {
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
        let authenticator = Authenticator::new(tokens, revocations.clone(), config.tokens.leeway);
        Gate {
            authenticator,
            revocations,
            store,
            sessions,
            metrics,
            config,
        }
    }
}
