//! authgate: an authentication sidecar. It stands in front of an HTTP app, answers
//! `/register`, `/login`, `/refresh` and `/logout` itself, and forwards every other request to the
//! app only when the route's rule allows it, telling the app who the user is in identity headers.
//!
//! A request flows one way through these modules:
//! - [`server`] accepts connections and hands each request to [`dispatch`];
//! - [`dispatch`] classifies it ([`routes`] normalises the path and picks the rule);
//! - [`authn`] checks the bearer token ([`token`]) against what is revoked ([`revocation`]);
//! - [`proxy`] rewrites headers and forwards it; or [`endpoints`] answers it, with users and
//!   sessions in the [`store`] and passwords hashed by [`password`] under the rules of [`accounts`].
//!
//! [`config`] turns the TOML file into a validated [`Config`]; [`error`] decides every refusal's
//! status and message in one place.

pub mod accounts;
pub mod authn;
pub mod body;
pub mod config;
pub mod dispatch;
pub mod endpoints;
pub mod error;
pub mod gate;
pub mod password;
pub mod proxy;
pub mod revocation;
pub mod routes;
pub mod server;
pub mod store;
pub mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;

use crate::gate::Gate;
use crate::revocation::RevocationCache;
use crate::store::{Store, StoreError};
use crate::token::unix_now;

/// How often forgotten revocations and sessions are purged from the store.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs authgate on `listener` until `shutdown` completes, then lets in-flight requests finish.
/// Opens the store and loads every unexpired revocation before the first request is accepted.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError> {
    let store = Store::open_sqlite(&config.store_path).await?;
    let revocations = RevocationCache::default();
    let loaded = store.load_revocations(unix_now()).await?;
    let count = loaded.len();
    for revocation in loaded {
        revocations.insert(revocation);
    }
    tracing::info!(revocations = count, "revocations loaded");

    let gate = Arc::new(Gate {
        tokens: token::TokenService::new(&config.tokens),
        passwords: password::Passwords::new(&config.passwords),
        forwarder: proxy::Forwarder::new(&config.upstream, &config.identity),
        revocations,
        store: store.clone(),
        config,
    });

    let purge_store = store.clone();
    let purger = tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_INTERVAL);
        loop {
            every.tick().await;
            if let Err(e) = purge_store.purge_expired(unix_now()).await {
                tracing::warn!(error = %e, "purging expired revocations failed");
            }
        }
    });

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, upstream = %gate.config.upstream.base, "authgate listening");
    }
    server::serve(listener, gate, shutdown).await;
    purger.abort();
    store.close().await;
    Ok(())
}
