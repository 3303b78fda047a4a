//! Starting authgate: the store, the revocation set kept in step with it, the metrics listener
//! and the server, wired together and stopped in order.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::gate::Gate;
use crate::http::{metrics, server};
use crate::store::{self, Store, StoreError};

/// Why authgate could not start.
#[derive(Debug)]
pub enum StartError {
    /// The store's settings cannot even make a connection pool (a malformed URL, say).
    Store(StoreError),
    MetricsListen {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "{e}"),
            StartError::MetricsListen { addr, error } => {
                write!(
                    f,
                    "cannot listen for metrics on {addr} (metrics.listen): {error}"
                )
            }
        }
    }
}

impl std::error::Error for StartError {}

/// The sockets authgate serves on: the public one, and optionally one for `/metrics`.
pub struct Listeners {
    pub main: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// Runs authgate on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (up to `server.shutdown_grace`). Binds `metrics.listen` itself when configured.
///
/// It serves at once: `/healthz` answers while the store is still out of reach, and `/readyz` and
/// every protected request answer 503 until all unexpired revocations are loaded.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|error| StartError::MetricsListen { addr, error })?,
        ),
        None => None,
    };
    run_with(
        Listeners {
            main: listener,
            metrics,
        },
        config,
        shutdown,
    )
    .await
}

/// `run`, on listeners the caller bound (tests bind the metrics port on 127.0.0.1:0 too).
pub async fn run_with(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let store = Store::connect(&config.store).map_err(StartError::Store)?;
    let gate = Arc::new(Gate::new(config, store.clone()));
    let sync = tokio::spawn(store::sync::run(
        store.clone(),
        gate.revocations.clone(),
        gate.config.catch_up_interval,
        gate.config.tokens.revocation_window(),
    ));

    let (stop_metrics, metrics_stopped) = watch::channel(false);
    if let Some(listener) = listeners.metrics {
        let mut stopped = metrics_stopped.clone();
        tokio::spawn(metrics::serve(listener, gate.clone(), async move {
            let _ = stopped.wait_for(|&s| s).await;
        }));
    }

    if let Ok(addr) = listeners.main.local_addr() {
        tracing::info!(%addr, upstream = %gate.config.upstream.base, "authgate listening");
    }
    server::serve(listeners.main, gate, shutdown).await;
    let _ = stop_metrics.send(true);
    sync.abort();
    store.close().await;
    Ok(())
}
