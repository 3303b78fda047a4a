//! The accept loop: one task per connection, HTTP/1.1 or HTTP/2, with header read timeouts, and a
//! graceful shutdown that lets in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::dispatch;
use crate::gate::Gate;

pub async fn serve(listener: TcpListener, gate: Arc<Gate>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper ignores header_read_timeout.
        .timer(TokioTimer::new())
        .header_read_timeout(gate.config.header_read_timeout)
        // Headers past max_header_bytes are refused in dispatch; this bounds what is read first.
        .max_buf_size(2 * gate.config.max_header_bytes.max(8192));
    builder.http2().timer(TokioTimer::new());

    let gate_grace = gate.config.shutdown_grace;
    let graceful = GracefulShutdown::new();
    // At the cap, stop accepting: further clients wait in the kernel's queue, not in our memory.
    let connections = Arc::new(Semaphore::new(gate.config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, then keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gate = gate.clone();
                let service = service_fn(move |request| dispatch::handle(gate.clone(), request, client));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(gate_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
