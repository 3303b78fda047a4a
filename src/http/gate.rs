//! Everything a request may need, built once at start-up and shared by all connections.

use std::sync::Arc;

use crate::config::Config;
use crate::core::keys;
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
    /// The public keys' JWKS document, when there are any to publish.
    pub(crate) jwks: Option<bytes::Bytes>,
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
        let jwks = config.publishes_keys().then(|| {
            let tokens = &config.tokens;
            let token_keys = tokens.keys.iter().map(|k| (tokens.algorithm, k));
            let assertion_keys = config
                .identity
                .assertion
                .iter()
                .flat_map(|a| a.keys.iter().map(|k| (a.algorithm, k)));
            let all = token_keys
                .chain(assertion_keys)
                .map(|(alg, k)| (alg, k.kid.as_deref(), k.secret.as_slice()));
            bytes::Bytes::from(keys::jwks(all))
        });
        Gate {
            jwks,
            authenticator,
            revocations,
            store,
            sessions,
            metrics,
            config,
        }
    }
}
