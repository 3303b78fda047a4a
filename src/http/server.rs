//! Serving connections: one accept loop hands each connection to a worker thread, and each worker
//! runs a single-threaded runtime with its own pool of upstream connections, so a request and its
//! upstream call never hop between threads (the way nginx runs one event loop per worker).
//! HTTP/1.1 or HTTP/2, header read timeouts, a cap on connections, and a graceful shutdown that
//! lets requests in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use crate::core::forwarded::is_trusted;
use crate::http::dispatch;
use crate::http::gate::Gate;
use crate::http::idle::{self, Activity, InFlight, Stop};
use crate::http::proxy::{Forwarder, Peer};

/// An accepted connection on its way to a worker, with its place under the connection cap.
struct Accepted {
    stream: std::net::TcpStream,
    client: std::net::SocketAddr,
    permit: OwnedSemaphorePermit,
}

pub(crate) async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let mut workers = Vec::new();
    let mut finished = Vec::new();
    for index in 0..gate.config.workers {
        let (to_worker, inbox) = mpsc::unbounded_channel::<Accepted>();
        let (done, worker_finished) = oneshot::channel::<()>();
        let (gate, stopping) = (gate.clone(), stopping.clone());
        std::thread::Builder::new()
            .name(format!("authgate-worker-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime starts");
                runtime.block_on(worker(gate, inbox, stopping));
                let _ = done.send(());
            })
            .expect("a worker thread starts");
        workers.push(to_worker);
        finished.push(worker_finished);
    }

    // At the cap, stop accepting: further clients wait in the kernel's queue, not in our memory.
    let connections = Arc::new(Semaphore::new(gate.config.max_connections));
    tokio::pin!(shutdown);
    let mut next = 0;
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause, then keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let _ = workers[next].send(Accepted {
            stream,
            client,
            permit,
        });
        next = (next + 1) % workers.len();
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop.send(true);
    drop(workers);
    for worker_finished in finished {
        let _ = worker_finished.await;
    }
}

/// One worker: serves the connections it is handed until told to stop, then gives requests in
/// flight up to `shutdown_grace` to finish.
async fn worker(
    gate: Arc<Gate>,
    mut inbox: mpsc::UnboundedReceiver<Accepted>,
    mut stopping: watch::Receiver<bool>,
) {
    let forwarder = Arc::new(Forwarder::new(
        &gate.config.upstream,
        &gate.config.identity,
        &gate.config.tokens.issuer,
    ));
    // tokio wakes its own driver (an eventfd write, then an extra epoll turn) whenever a timer is
    // set earlier than every timer pending when the driver last parked. With none pending, that
    // was every request's header-read or upstream timer: 0.18 write syscalls per request
    // (measured with perf). A timer that is always pending, a second away, keeps them from ever
    // being the earliest. Each tick also closes upstream connections that idled past
    // `pool_idle_timeout` or that the app closed, instead of keeping them until the next checkout.
    let pool = forwarder.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            pool.prune_idle();
        }
    });
    // A connection that opens like an HTTP/1.1 request is served by `http1` alone; one that
    // opens with HTTP/2's preface, or with too little to tell, by `auto`, which reads the first
    // bytes itself and then serves either. (`auto` alone would keep its rewind wrapper on every
    // read of every connection.)
    // Both serve HTTP/1.1 the same way:
    // - the header read timeout is `idle`'s, per connection rather than per request;
    // - small answers go out in one write of one buffer rather than a vectored write;
    // - headers past max_header_bytes are refused in dispatch; this bounds what is read first.
    let max_buf_size = 2 * gate.config.max_header_bytes.max(8192);
    let mut http1 = http1::Builder::new();
    http1
        .header_read_timeout(None)
        .writev(false)
        .max_buf_size(max_buf_size);
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .header_read_timeout(None)
        .writev(false)
        .max_buf_size(max_buf_size);
    auto.http2().timer(TokioTimer::new());
    let (http1, auto) = (Arc::new(http1), Arc::new(auto));
    // Connections end on their own or, at shutdown, once `stop` has asked them to finish.
    let stop = Arc::new(Stop::default());
    let connections = TaskTracker::new();
    let header_read_timeout = gate.config.header_read_timeout;

    loop {
        let accepted = tokio::select! {
            accepted = inbox.recv() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
            _ = stopping.wait_for(|&stop| stop) => break,
        };
        let Ok(stream) = TcpStream::from_std(accepted.stream) else {
            continue;
        };
        let trusted = is_trusted(accepted.client.ip(), &gate.config.trusted_proxies);
        let peer = Arc::new(Peer::new(accepted.client, trusted, accepted.permit));
        let (gate, forwarder) = (gate.clone(), forwarder.clone());
        let activity = Activity::new();
        let watched = activity.clone();
        let service = service_fn(move |request| {
            let in_flight = InFlight::start(&activity);
            dispatch::handle(
                gate.clone(),
                forwarder.clone(),
                request,
                peer.clone(),
                in_flight,
            )
        });
        let stop = stop.clone();
        let (http1, auto) = (http1.clone(), auto.clone());
        connections.spawn(async move {
            // A client that sends nothing gets no longer than one that stops mid-headers.
            let opening = tokio::select! {
                opening = opens_as_http1(&stream) => opening,
                () = tokio::time::sleep(header_read_timeout) => return,
                () = stop.stopped() => return,
            };
            let ended = match opening {
                Ok(true) => {
                    let connection = http1
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    idle::serve(connection, watched, header_read_timeout, stop, |c| {
                        c.graceful_shutdown()
                    })
                    .await
                    .map(|served| served.map_err(|e| e.to_string()))
                }
                Ok(false) => {
                    let connection =
                        auto.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    idle::serve(connection, watched, header_read_timeout, stop, |c| {
                        c.graceful_shutdown()
                    })
                    .await
                    .map(|served| served.map_err(|e| e.to_string()))
                }
                // Closed before sending a byte, or reset.
                Err(_) => return,
            };
            if let Some(Err(e)) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    stop.stop();
    connections.close();
    if tokio::time::timeout(gate.config.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// HTTP/2's connection preface (RFC 9113 §3.4), which a client with prior knowledge opens with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection's first bytes, looked at without taking them, are plainly not HTTP/2's
/// preface; `false` when they are, or are the start of it. `Err` when the client closed first.
async fn opens_as_http1(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0; PREFACE.len()];
    let seen = stream.peek(&mut first).await?;
    if seen == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(first[..seen] != PREFACE[..seen])
}
